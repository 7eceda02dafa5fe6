"""`vsslpipe pretrain-frames`: image MoCo on training frames (CACL's frozen frame CNN)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vsslpipe.train.frame_pretrain import EXPERIMENT, SECTION, load_frame_moco_config, weights_path

from .common import DeviceOpt, ParamsOpt, WorkersOpt, echo, report_user_errors
from .pretrain import run_experiment


@report_user_errors
def main(
    params: ParamsOpt = Path("params.yaml"),
    section: Annotated[str, typer.Option(help="params.yaml section to read (pretrain_frames_paper: the paper's ResNet-50).")] = SECTION,
    arch: Annotated[Optional[str], typer.Option(help="Frame CNN: resnet50 (paper), resnet18, resnet34, tiny2d.")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Override epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Override batch_size (videos per step).")] = None,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Pre-train the frame CNN of CACL's video transformer with image MoCo on training frames.

    Reads params.yaml `pretrain_frames`; writes models/frames_moco/final.pt (what
    `pretrain.defaults.method_args.cacl.transformer.frame_weights` points at) and dvclive curves
    under dvclive/frames_moco/. Resumes after a kill.

    Example: vsslpipe pretrain-frames --arch tiny2d --epochs 10
    """
    from vsslpipe.train import dist

    cfg = load_frame_moco_config(params, {"arch": arch, "epochs": epochs, "batch_size": batch_size,
                                          "workers": workers, "device": device}, section)
    summary = run_experiment(cfg, EXPERIMENT)
    if dist.is_main() and summary:
        echo(f"pretrain-frames: image MoCo on {cfg.backbone_args['arch']}, {summary['epochs']} "
             f"epochs, loss {summary['first_loss']:.3f} -> {summary['final_loss']:.3f} "
             f"-> {weights_path(cfg)} [params: {section}]")
    dist.cleanup()
