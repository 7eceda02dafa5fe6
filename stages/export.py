"""`vsslpipe export`: per-video features of a frozen encoder (or its random-init twin)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from vsslpipe.atomic import write_json_atomic
from vsslpipe.config import ConfigError, load_section, to_dict

from .common import DeviceOpt, ParamsOpt, WorkersOpt, echo, report_user_errors


@dataclass(frozen=True)
class ExportConfig:
    frames: Path = Path("data/frames.h5")
    flow: Path = Path("data/flow.h5")
    manifest: Path = Path("data/manifest.csv")
    dataset: str = "synth"
    protocol: str = "coclr"
    clip_len: Optional[int] = None   # null: the encoder's training clip (checkpoint metadata)
    stride: Optional[int] = None
    size: Optional[int] = None
    batch_size: int = 64
    workers: int = 0
    device: str = "auto"
    threads: int = 0                 # torch threads for the forward pass (0: torch's default)
    seed: int = 0                    # of the random-initialised baseline

    def validate(self) -> None:
        from vsslpipe.eval.protocols import PROTOCOLS

        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol {self.protocol!r} unknown; valid: {', '.join(PROTOCOLS.names())}")
        if self.batch_size < 1 or self.workers < 0:
            raise ConfigError("batch_size >= 1, workers >= 0")
        if self.threads < 0:
            raise ConfigError("threads >= 0 (0: torch's default)")
        if any(v is not None and v < 1 for v in (self.clip_len, self.stride, self.size)):
            raise ConfigError("clip_len, stride and size must be >= 1 (or null)")


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@report_user_errors
def main(
    checkpoint: Annotated[Path, typer.Option(help="Encoder checkpoint (models/<experiment>/final.pt).")],
    out: Annotated[Path, typer.Option(help="Features file to write (.h5).")],
    name: Annotated[Optional[str], typer.Option(help="Experiment name recorded in the file [default: checkpoint folder].")] = None,
    init: Annotated[Literal["pretrained", "random"], typer.Option(help="pretrained, or random: same architecture, fresh weights (the baseline).")] = "pretrained",
    protocol: Annotated[Optional[str], typer.Option(help="Protocol preset: coclr, vcop or tclr.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Clips per forward pass.")] = None,
    metrics: Annotated[Optional[Path], typer.Option(help="Metrics JSON [default: beside --out].")] = None,
    params: ParamsOpt = Path("params.yaml"),
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Write train and test video features of an encoder, following a retrieval protocol preset.

    Example: vsslpipe export --checkpoint models/cvrl_rgb/final.pt --out results/eval/cvrl_rgb/features.h5
    """
    import torch

    from vsslpipe.data.manifest import read_manifest
    from vsslpipe.eval.export import export_splits, load_encoder
    from vsslpipe.eval.features import write_features
    from vsslpipe.eval.protocols import get_protocol, resolve_clip

    cfg = load_section(ExportConfig, "export", params, dict(
        protocol=protocol, batch_size=batch_size, workers=workers, device=device))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    backbone, meta = load_encoder(checkpoint, init, cfg.seed)
    modality = meta["modality"]
    preset = get_protocol(cfg.protocol)
    clip = resolve_clip(meta.get("clip"), preset, cfg.clip_len, cfg.stride, cfg.size)
    manifest = read_manifest(cfg.manifest)
    start = time.perf_counter()
    splits = export_splits(backbone, modality, cfg.frames if modality == "rgb" else cfg.flow,
                           manifest, preset, clip, resolve_device(cfg.device), cfg.batch_size,
                           cfg.workers)
    seconds = time.perf_counter() - start
    class_names = (manifest.drop_duplicates("label").sort_values("label")["class_name"].tolist())
    experiment = name or checkpoint.parent.name
    write_features(out, splits, class_names, {
        "experiment": experiment, "checkpoint": str(checkpoint), "init": init,
        "method": meta.get("method") or "", "modality": modality, "backbone": meta["backbone"],
        "dataset": cfg.dataset, "protocol": cfg.protocol, "clip": clip,
        "settings": to_dict(cfg), "torch_version": torch.__version__})
    n_videos = sum(len(s.ids) for s in splits.values())
    write_json_atomic(metrics or out.with_name(out.stem + "_export.json"), {
        "videos": n_videos, "clips": int(sum(int(s.num_clips.sum()) for s in splits.values())),
        "feature_dim": int(splits["train"].features.shape[1]), "seconds": round(seconds, 2)})
    echo(f"export: {experiment} ({init}, {modality}, protocol {cfg.protocol}, clip "
         f"{clip['clip_len']}x{clip['stride']} @ {clip['size']} px): {n_videos} videos -> {out} "
         f"in {seconds:.1f} s")
