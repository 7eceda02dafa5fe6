"""`vsslpipe pretrain`: self-supervised pre-training of a video encoder (one experiment a run)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml

from vsslpipe.atomic import write_text_atomic
from vsslpipe.config import ConfigError, to_dict
from vsslpipe.data.h5parts import remove_scratch, scratch_dir
from vsslpipe.train.config import PretrainConfig, experiment_names, load_experiment

from .common import DeviceOpt, ParamsOpt, WorkersOpt, echo, report_user_errors

# Settings that do not change the result; left out of the resume key.
_NOT_IN_KEY = ("workers", "threads", "checkpoint_every", "out_dir", "live_dir", "device")


def _fingerprint(path: Path) -> list:
    st = os.stat(path) if Path(path).exists() else None
    return [str(path), st.st_size if st else None, st.st_mtime_ns if st else None]


def run_experiment(cfg: PretrainConfig, name: str, stop_after: Optional[int] = None) -> dict:
    # torch is imported here, not at module level: every `vsslpipe` command imports this module.
    from vsslpipe.train import dist
    from vsslpipe.train.engine import Trainer, summarize

    out = cfg.out_dir / name
    settings = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_IN_KEY}
    stores = [cfg.frames if cfg.modality == "rgb" else cfg.flow, cfg.manifest]
    settings["inputs"] = [_fingerprint(p) for p in stores]
    scratch = scratch_dir(out, settings)
    trainer = Trainer(cfg, name, scratch, stop_after_epochs=stop_after)
    try:
        trainer.run()
        summary = summarize(trainer.history)
        if trainer.epoch >= cfg.epochs:
            trainer.logger.summary({f"summary/{k}": v for k, v in summary.items()})
            trainer.save_final(out / "final.pt")       # rank 0 writes; every rank waits
            if dist.is_main():
                write_text_atomic(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
                remove_scratch(scratch)
    finally:
        trainer.close()
    return summary


@report_user_errors
def main(
    experiment: Annotated[Optional[str], typer.Option(
        "--experiment", "-e", help="Name under pretrain.experiments (without it: the list).")] = None,
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Override epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Override batch_size.")] = None,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    stop_after: Annotated[Optional[int], typer.Option(
        min=1, hidden=True, help="Stop after N epochs of this run (resume tests).")] = None,
) -> None:
    """Pre-train an encoder with a self-supervised method, e.g. `vsslpipe pretrain -e cvrl_rgb`.

    Resumes from the last checkpoint after a kill; writes models/<experiment>/final.pt and
    dvclive curves under dvclive/<experiment>/. Multi-GPU: `torchrun --nproc_per_node=N
    $(which vsslpipe) pretrain -e <experiment>`.
    """
    from vsslpipe.train import dist

    if not experiment:
        # Not "run them all": the list mixes demo and paper-scale experiments, and co-training
        # needs its initialisations first (dvc.yaml runs them in order).
        raise ConfigError(f"choose an experiment with -e; {params} defines: "
                          f"{', '.join(experiment_names(params))}")
    names = [experiment]
    overrides = {"epochs": epochs, "batch_size": batch_size, "workers": workers, "device": device}
    for name in names:
        cfg = load_experiment(params, name, overrides)
        summary = run_experiment(cfg, name, stop_after)
        if dist.is_main() and summary:
            echo(f"pretrain {name}: {cfg.method}/{cfg.modality}/{cfg.backbone} "
                 f"{summary['epochs']} epochs, loss {summary['first_loss']:.3f} -> "
                 f"{summary['final_loss']:.3f}, {summary['clips_per_s']:.0f} clips/s "
                 f"-> {cfg.out_dir / name / 'final.pt'}")
    dist.cleanup()
