"""`vsslpipe finetune`: train the whole encoder plus a linear head on labelled clips."""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from vsslpipe.atomic import write_json_atomic
from vsslpipe.config import load_params, load_section, origin_of, to_dict
from vsslpipe.data.dataset_config import DataConfig
from vsslpipe.eval.finetune_config import FinetuneSettings

from .common import ParamsOpt, device_opt, echo, report_user_errors, shipped, workers_opt
from .pretrain import FlowOpt, FramesOpt, ManifestOpt, MaxFailedOpt


@dataclass(frozen=True)
class FinetuneConfig(FinetuneSettings):
    """The training settings plus where to run."""
    workers: int = 1
    device: str = "auto"


@report_user_errors
def main(
    checkpoint: Annotated[Path, typer.Option(help="Encoder checkpoint (models/<experiment>/final.pt).")],
    out: Annotated[Path, typer.Option(help="Metrics JSON to write (top-1, top-5, per-epoch loss).")],
    init: Annotated[Literal["pretrained", "random"], typer.Option(help="pretrained, or random (train from scratch: the baseline).")] = "pretrained",
    epochs: Annotated[Optional[int], typer.Option(show_default=False, help=f"Training epochs. {shipped(FinetuneConfig, 'epochs', 'finetune')}")] = None,
    lr: Annotated[Optional[float], typer.Option(show_default=False, help=f"Adam learning rate. {shipped(FinetuneConfig, 'lr', 'finetune')}")] = None,
    dropout: Annotated[Optional[float], typer.Option(show_default=False, help=f"Dropout before the linear head. {shipped(FinetuneConfig, 'dropout', 'finetune')}")] = None,
    frames: FramesOpt = None,
    flow: FlowOpt = None,
    manifest: ManifestOpt = None,
    max_failed_fraction: MaxFailedOpt = None,
    params: ParamsOpt = None,
    workers: Annotated[Optional[int], workers_opt(FinetuneConfig, "finetune")] = None,
    device: Annotated[Optional[str], device_opt(FinetuneConfig, "finetune")] = None,
) -> None:
    """Fine-tune an encoder with a linear head; test top-1 from clip-averaged predictions.

    Reads the stores of `data` and the export section's protocol and clip settings; videos
    extract or flow could not process are left out and counted.
    Example: vsslpipe finetune --checkpoint models/cvrl_rgb/final.pt --out results/eval/cvrl_rgb/finetune.json
    """
    from vsslpipe.data.manifest import read_manifest
    from vsslpipe.data.usable import usable_inputs
    from vsslpipe.eval.export import load_encoder
    from vsslpipe.eval.finetune import finetune
    from vsslpipe.eval.protocols import get_protocol, resolve_clip

    from .export import ExportConfig, resolve_device

    loaded = load_params(params)
    cfg = load_section(FinetuneConfig, "finetune", loaded, dict(
        epochs=epochs, lr=lr, dropout=dropout, workers=workers, device=device))
    ecfg = load_section(ExportConfig, "export", loaded)
    data = load_section(DataConfig, "data", loaded, dict(frames=frames, flow=flow, manifest=manifest,
                                                            max_failed_fraction=max_failed_fraction))
    backbone, meta = load_encoder(checkpoint, init, ecfg.seed)
    preset = get_protocol(ecfg.protocol)
    clip = resolve_clip(meta.get("clip"), preset, ecfg.clip_len, ecfg.stride, ecfg.size)
    modality = meta["modality"]
    settings = FinetuneSettings(**{f.name: getattr(cfg, f.name) for f in fields(FinetuneSettings)})
    start = time.perf_counter()
    table = read_manifest(data.manifest, origin_of(data, "manifest"))
    stores, selection = usable_inputs(data, table[table["split"].isin(["train", "test"])], (modality,))
    selection.check(data.max_failed_fraction, origin_of(data, "max_failed_fraction"))
    result = finetune(backbone, modality, stores[modality].path, selection.rows, preset, clip,
                      settings, resolve_device(cfg.device), cfg.workers)
    seconds = time.perf_counter() - start
    write_json_atomic(out, {"top1": round(result["top1"], 4), "top5": round(result["top5"], 4),
                            "init": init, "modality": modality, "protocol": ecfg.protocol,
                            "clip": clip, "settings": to_dict(cfg), "history": result["history"],
                            "num_train": result["num_train"], "num_test": result["num_test"],
                            **selection.metrics(),
                            "seconds": round(seconds, 1)})
    echo(f"finetune: {checkpoint} ({init}, {modality}): top-1 {result['top1']:.1f} %, top-5 "
         f"{result['top5']:.1f} % after {cfg.epochs} epochs in {seconds:.0f} s -> {out}")
