"""`vsslpipe finetune`: train the whole encoder plus a linear head on labelled clips."""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from vsslpipe.atomic import write_json_atomic
from vsslpipe.config import load_section, to_dict
from vsslpipe.eval.finetune_config import FinetuneSettings

from .common import DeviceOpt, ParamsOpt, WorkersOpt, echo, report_user_errors


@dataclass(frozen=True)
class FinetuneConfig(FinetuneSettings):
    """The training settings plus where to run."""
    workers: int = 0
    device: str = "auto"


@report_user_errors
def main(
    checkpoint: Annotated[Path, typer.Option(help="Encoder checkpoint (models/<experiment>/final.pt).")],
    out: Annotated[Path, typer.Option(help="Metrics JSON to write (top-1, top-5, per-epoch loss).")],
    init: Annotated[Literal["pretrained", "random"], typer.Option(help="pretrained, or random (train from scratch: the baseline).")] = "pretrained",
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate.")] = None,
    dropout: Annotated[Optional[float], typer.Option(help="Dropout before the linear head.")] = None,
    params: ParamsOpt = Path("params.yaml"),
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Fine-tune an encoder with a linear head; test top-1 from clip-averaged predictions.

    Uses the export section's frames/flow/manifest/protocol/clip settings.
    Example: vsslpipe finetune --checkpoint models/cvrl_rgb/final.pt --out results/eval/cvrl_rgb/finetune.json
    """
    from vsslpipe.data.manifest import read_manifest
    from vsslpipe.eval.export import load_encoder
    from vsslpipe.eval.finetune import finetune
    from vsslpipe.eval.protocols import get_protocol, resolve_clip

    from .export import ExportConfig, resolve_device

    cfg = load_section(FinetuneConfig, "finetune", params, dict(
        epochs=epochs, lr=lr, dropout=dropout, workers=workers, device=device))
    ecfg = load_section(ExportConfig, "export", params)
    backbone, meta = load_encoder(checkpoint, init, ecfg.seed)
    preset = get_protocol(ecfg.protocol)
    clip = resolve_clip(meta.get("clip"), preset, ecfg.clip_len, ecfg.stride, ecfg.size)
    modality = meta["modality"]
    settings = FinetuneSettings(**{f.name: getattr(cfg, f.name) for f in fields(FinetuneSettings)})
    start = time.perf_counter()
    result = finetune(backbone, modality, ecfg.frames if modality == "rgb" else ecfg.flow,
                      read_manifest(ecfg.manifest), preset, clip, settings,
                      resolve_device(cfg.device), cfg.workers)
    seconds = time.perf_counter() - start
    write_json_atomic(out, {"top1": round(result["top1"], 4), "top5": round(result["top5"], 4),
                            "init": init, "modality": modality, "protocol": ecfg.protocol,
                            "clip": clip, "settings": to_dict(cfg), "history": result["history"],
                            "num_train": result["num_train"], "num_test": result["num_test"],
                            "seconds": round(seconds, 1)})
    echo(f"finetune: {checkpoint} ({init}, {modality}): top-1 {result['top1']:.1f} %, top-5 "
         f"{result['top5']:.1f} % after {cfg.epochs} epochs in {seconds:.0f} s -> {out}")
