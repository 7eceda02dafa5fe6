"""`vsslpipe pretrain-frames`: image MoCo on training frames (CACL's frozen frame CNN)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vsslpipe.config import config_origin, load_params
from vsslpipe.train.config import check_method_args
from vsslpipe.train.frame_pretrain import EXPERIMENT, SECTION, load_frame_moco_config, weights_path

from .common import ParamsOpt, device_opt, echo, report_user_errors
from .pretrain import FramesOpt, ForceOpt, ManifestOpt, MaxFailedOpt, P, load_data, with_inputs


@report_user_errors
def main(
    params: ParamsOpt = None,
    section: Annotated[str, typer.Option(help="Params section to read (pretrain_frames_paper: the paper's ResNet-50).")] = SECTION,
    frames: FramesOpt = None,
    manifest: ManifestOpt = None,
    max_failed_fraction: MaxFailedOpt = None,
    out: Annotated[Optional[Path], typer.Option(show_default=False, help="Output folder (final.pt) [default: <out_dir>/frames_moco].")] = None,
    arch: Annotated[Optional[str], typer.Option(show_default=False, help="Frame CNN: resnet50 (paper), resnet18, resnet34, tiny2d [default: from the section].")] = None,
    epochs: Annotated[Optional[int], typer.Option(show_default=False, help="Override epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(show_default=False, help="Override batch_size (videos per step).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", show_default=False, help="Loader worker processes [default: from the section].")] = None,
    device: Annotated[Optional[str], device_opt(P, "pretrain.defaults")] = None,
    force: ForceOpt = False,
) -> None:
    """Pre-train the frame CNN of CACL's video transformer with image MoCo on training frames.

    Reads params `pretrain_frames`; writes models/frames_moco/final.pt (what
    `pretrain.defaults.method_args.cacl.transformer.frame_weights` points at) and dvclive curves
    under dvclive/frames_moco/. Resumes after a kill.

    Example: vsslpipe pretrain-frames --arch tiny2d --epochs 10
    """
    from vsslpipe.train import dist
    from vsslpipe.train.experiment import run_experiment

    loaded = load_params(params)
    cfg = load_frame_moco_config(loaded, {"arch": arch, "epochs": epochs, "batch_size": batch_size,
                                          "workers": workers, "device": device}, section)
    check_method_args(cfg, config_origin(cfg))
    data = load_data(loaded, frames, None, manifest, max_failed_fraction)
    cfg = with_inputs(cfg, data)
    target = out or weights_path(cfg).parent
    summary, selection = run_experiment(cfg, EXPERIMENT, data, target, force, log=echo)
    if dist.is_main() and summary:
        echo(f"pretrain-frames: image MoCo on {cfg.backbone_args['arch']}, {summary['epochs']} "
             f"epochs on {len(selection.rows)} videos, loss {summary['first_loss']:.3f} -> "
             f"{summary['final_loss']:.3f} -> {target / 'final.pt'} [params: {section}]")
    dist.cleanup()
