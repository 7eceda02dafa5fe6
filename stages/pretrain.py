"""`vsslpipe pretrain`: self-supervised pre-training of a video encoder (one experiment a run)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vsslpipe.config import ConfigError, load_params, load_section
from vsslpipe.data.dataset_config import DataConfig
from vsslpipe.train.config import PretrainConfig, experiment_names, load_experiment

from .common import ParamsOpt, device_opt, echo, report_user_errors, shipped, workers_opt

P, D = PretrainConfig, DataConfig
FramesOpt = Annotated[Optional[Path], typer.Option(show_default=False, help=f"Frame store. {shipped(D, 'frames', 'data')}")]
FlowOpt = Annotated[Optional[Path], typer.Option(show_default=False, help=f"Flow store. {shipped(D, 'flow', 'data')}")]
ManifestOpt = Annotated[Optional[Path], typer.Option(show_default=False, help=f"Manifest CSV. {shipped(D, 'manifest', 'data')}")]
MaxFailedOpt = Annotated[Optional[float], typer.Option(show_default=False, help=f"Stop when more of the videos than this fraction must be skipped (failed or unusable). {shipped(D, 'max_failed_fraction', 'data')}")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace a finished run in the output folder even if its settings differ.")]


def load_data(loaded, frames, flow, manifest, max_failed_fraction=None) -> DataConfig:
    return load_section(DataConfig, "data", loaded, dict(
        frames=frames, flow=flow, manifest=manifest, max_failed_fraction=max_failed_fraction))


def with_inputs(cfg: PretrainConfig, data: DataConfig) -> PretrainConfig:
    """The experiment's config with the input paths of ``data`` (kept in the checkpoint)."""
    for key in ("frames", "flow", "manifest"):
        object.__setattr__(cfg, key, getattr(data, key))
    return cfg


@report_user_errors
def main(
    experiment: Annotated[Optional[str], typer.Option(
        "--experiment", "-e", help="Name under pretrain.experiments (without it: the list).")] = None,
    params: ParamsOpt = None,
    frames: FramesOpt = None,
    flow: FlowOpt = None,
    manifest: ManifestOpt = None,
    out: Annotated[Optional[Path], typer.Option(show_default=False, help="Output folder of this run (final.pt, config.yaml) [default: <pretrain out_dir>/<experiment>].")] = None,
    epochs: Annotated[Optional[int], typer.Option(show_default=False, help=f"Override epochs. {shipped(P, 'epochs', 'pretrain.defaults')}")] = None,
    batch_size: Annotated[Optional[int], typer.Option(show_default=False, help=f"Override batch_size. {shipped(P, 'batch_size', 'pretrain.defaults')}")] = None,
    workers: Annotated[Optional[int], workers_opt(P, "pretrain.defaults")] = None,
    device: Annotated[Optional[str], device_opt(P, "pretrain.defaults")] = None,
    max_failed_fraction: MaxFailedOpt = None,
    force: ForceOpt = False,
    stop_after: Annotated[Optional[int], typer.Option(
        min=1, hidden=True, help="Stop after N epochs of this run (resume tests).")] = None,
) -> None:
    """Pre-train an encoder with a self-supervised method, e.g. `vsslpipe pretrain -e cvrl_rgb`.

    Resumes from the last checkpoint after a kill; writes <out>/final.pt and dvclive curves under
    dvclive/<experiment>/. Videos extract or flow could not process are left out and counted.
    A finished run with other settings in the output folder is never replaced silently (use
    --out or --force). Multi-GPU: `torchrun --nproc_per_node=N $(which vsslpipe) pretrain -e NAME`.
    """
    from vsslpipe.train import dist
    from vsslpipe.train.experiment import run_experiment

    loaded = load_params(params)
    if not experiment:
        # Not "run them all": the list mixes demo and paper-scale experiments, and co-training
        # needs its initialisations first (dvc.yaml runs them in order).
        raise ConfigError(f"choose an experiment with -e; {loaded.label('pretrain')} defines: "
                          f"{', '.join(experiment_names(loaded))}")
    cfg = load_experiment(loaded, experiment, {"epochs": epochs, "batch_size": batch_size,
                                               "workers": workers, "device": device})
    data = load_data(loaded, frames, flow, manifest, max_failed_fraction)
    cfg = with_inputs(cfg, data)
    target = out or cfg.out_dir / experiment
    summary, selection = run_experiment(cfg, experiment, data, target, force, stop_after, log=echo)
    if dist.is_main() and summary:
        skipped = f"; {selection.line('training videos')}" if selection.line() else ""
        echo(f"pretrain {experiment}: {cfg.method}/{cfg.modality}/{cfg.backbone} "
             f"{summary['epochs']} epochs on {len(selection.rows)} videos, loss "
             f"{summary['first_loss']:.3f} -> {summary['final_loss']:.3f}, "
             f"{summary['clips_per_s']:.3g} clips/s -> {target / 'final.pt'}{skipped}")
    dist.cleanup()
