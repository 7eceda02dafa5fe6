"""`vsslpipe export`: per-video features of a frozen encoder (or its random-init twin)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from vsslpipe.atomic import write_json_atomic
from vsslpipe.config import check, load_params, load_section, origin_of, to_dict
from vsslpipe.data.dataset_config import DataConfig

from .common import ParamsOpt, device_opt, echo, report_user_errors, shipped, workers_opt
from .pretrain import FlowOpt, FramesOpt, ManifestOpt, MaxFailedOpt


@dataclass(frozen=True)
class ExportConfig:
    protocol: str = "coclr"
    clip_len: Optional[int] = None   # null: the encoder's training clip (checkpoint metadata)
    stride: Optional[int] = None
    size: Optional[int] = None
    batch_size: int = 64
    workers: int = 2
    device: str = "auto"
    threads: int = 1                 # torch threads for the forward pass (0: torch's default)
    seed: int = 0                    # of the random-initialised baseline

    def validate(self) -> None:
        from vsslpipe.eval.protocols import PROTOCOLS

        check(self.protocol in PROTOCOLS, "protocol",
              f"unknown protocol {self.protocol!r}; valid: {', '.join(PROTOCOLS.names())}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.workers >= 0, "workers", f"must be >= 0, got {self.workers}")
        check(self.threads >= 0, "threads", f"must be >= 0 (0: torch's default), got {self.threads}")
        for name in ("clip_len", "stride", "size"):
            value = getattr(self, name)
            check(value is None or value >= 1, name, f"must be >= 1 (or null), got {value}")


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


X = ExportConfig


@report_user_errors
def main(
    checkpoint: Annotated[Path, typer.Option(help="Encoder checkpoint (models/<experiment>/final.pt).")],
    out: Annotated[Path, typer.Option(help="Features file to write (.h5).")],
    name: Annotated[Optional[str], typer.Option(help="Experiment name recorded in the file [default: checkpoint folder].")] = None,
    init: Annotated[Literal["pretrained", "random"], typer.Option(help="pretrained, or random: same architecture, fresh weights (the baseline).")] = "pretrained",
    protocol: Annotated[Optional[str], typer.Option(show_default=False, help=f"Protocol preset: coclr, vcop or tclr. {shipped(X, 'protocol', 'export')}")] = None,
    batch_size: Annotated[Optional[int], typer.Option(show_default=False, help=f"Clips per forward pass. {shipped(X, 'batch_size', 'export')}")] = None,
    seed: Annotated[Optional[int], typer.Option(show_default=False, help=f"Seed of the random-init weights. {shipped(X, 'seed', 'export')}")] = None,
    metrics: Annotated[Optional[Path], typer.Option(help="Metrics JSON [default: beside --out].")] = None,
    frames: FramesOpt = None,
    flow: FlowOpt = None,
    manifest: ManifestOpt = None,
    max_failed_fraction: MaxFailedOpt = None,
    params: ParamsOpt = None,
    workers: Annotated[Optional[int], workers_opt(X, "export")] = None,
    device: Annotated[Optional[str], device_opt(X, "export")] = None,
) -> None:
    """Write train and test video features of an encoder, following a retrieval protocol preset.

    Videos extract or flow could not process (and, for flow, one-frame videos) are left out and
    counted in the metrics. Example: vsslpipe export --checkpoint models/cvrl_rgb/final.pt --out
    results/eval/cvrl_rgb/features.h5
    """
    import torch

    from vsslpipe.data.manifest import read_manifest
    from vsslpipe.data.usable import usable_inputs
    from vsslpipe.eval.export import export_splits, load_encoder
    from vsslpipe.eval.features import write_features
    from vsslpipe.eval.protocols import get_protocol, resolve_clip

    loaded = load_params(params)
    cfg = load_section(ExportConfig, "export", loaded, dict(
        protocol=protocol, batch_size=batch_size, seed=seed, workers=workers, device=device))
    data = load_section(DataConfig, "data", loaded, dict(frames=frames, flow=flow, manifest=manifest,
                                                            max_failed_fraction=max_failed_fraction))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    backbone, meta = load_encoder(checkpoint, init, cfg.seed)
    modality = meta["modality"]
    preset = get_protocol(cfg.protocol)
    clip = resolve_clip(meta.get("clip"), preset, cfg.clip_len, cfg.stride, cfg.size)
    manifest_table = read_manifest(data.manifest, origin_of(data, "manifest"))
    rows = manifest_table[manifest_table["split"].isin(["train", "test"])]
    stores, selection = usable_inputs(data, rows, (modality,))
    selection.check(data.max_failed_fraction, origin_of(data, "max_failed_fraction"))
    start = time.perf_counter()
    splits = export_splits(backbone, modality, stores[modality].path, selection.rows, preset, clip,
                           resolve_device(cfg.device), cfg.batch_size, cfg.workers)
    seconds = time.perf_counter() - start
    class_names = (manifest_table.drop_duplicates("label").sort_values("label")["class_name"].tolist())
    experiment = name or checkpoint.parent.name
    write_features(out, splits, class_names, {
        "experiment": experiment, "checkpoint": str(checkpoint), "init": init,
        "method": meta.get("method") or "", "modality": modality, "backbone": meta["backbone"],
        "dataset": data.name, "protocol": cfg.protocol, "clip": clip,
        "settings": to_dict(cfg), "torch_version": torch.__version__,
        "selection": selection.metrics()})
    n_videos = sum(len(s.ids) for s in splits.values())
    write_json_atomic(metrics or out.with_name(out.stem + "_export.json"), {
        "videos": n_videos, **{f"{k}_videos": len(s.ids) for k, s in splits.items()},
        **selection.metrics(),
        "clips": int(sum(int(s.num_clips.sum()) for s in splits.values())),
        "feature_dim": int(splits["train"].features.shape[1]), "seconds": round(seconds, 2)})
    skipped = f"; {selection.line()}" if selection.line() else ""
    echo(f"export: {experiment} ({init}, {modality}, protocol {cfg.protocol}, clip "
         f"{clip['clip_len']}x{clip['stride']} @ {clip['size']} px): {n_videos} videos -> {out} "
         f"in {seconds:.1f} s{skipped}")
