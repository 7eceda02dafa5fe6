"""One pre-training run as ``vsslpipe pretrain`` / ``pretrain-frames`` start it.

The stage reads the settings; this module builds the parts and hands them to the engine:
the method (by name from the registry), the usable training videos (videos extract or flow could
not process, and one-frame videos for flow, are left out and counted: :mod:`vsslpipe.data.usable`),
the checks that must pass before any work (the crop fits the stored frames; a finished run with
other settings is not silently replaced), and the resume scratch. The scratch is keyed by the
settings that change the result and by the *content* identity of the inputs (a store's
``store_id``, the manifest's hash), not their paths or times, so a run restarted from another
checkout of the same project (DVC's temporary experiment folders) still resumes. With
``VSSLPIPE_SCRATCH`` set, scratch lives under that folder (``vsslpipe tables run`` sets it to the
project's, so a table row that failed resumes when run again).
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from ..atomic import write_text_atomic
from ..config import ConfigError, origin_of, to_dict
from ..data.dataset_config import DataConfig
from ..data.h5parts import settings_hash
from ..data.usable import Selection, usable_inputs
from .config import PretrainConfig

# Settings that do not change the result (or are replaced by content identities): left out of
# the resume key and of the comparison with a finished run.
NOT_IN_KEY = ("workers", "threads", "checkpoint_every", "out_dir", "live_dir", "device",
              "prefetch", "frames", "flow", "manifest", "decode")
SCRATCH_ENV = "VSSLPIPE_SCRATCH"
RUN_RECORD = "config.yaml"


def file_identity(path: Path) -> str:
    """A content identity: a store's ``store_id`` when it has one, else the file's md5."""
    path = Path(path)
    if path.is_dir():
        from ..data.framestore import store_identity

        return store_identity(path)
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checkpoints_in(args: Any) -> list[str]:
    """Checkpoint paths named in method arguments (co-training inits, CACL's frame CNN)."""
    if isinstance(args, Mapping):
        return [p for v in args.values() for p in _checkpoints_in(v)]
    if isinstance(args, str) and args.endswith(".pt") and Path(args).is_file():
        return [args]
    return []


def run_settings(cfg: PretrainConfig, inputs: Mapping[str, Path]) -> dict:
    """What decides the result: the settings and the identity of every input."""
    settings = {k: v for k, v in to_dict(cfg).items() if k not in NOT_IN_KEY}
    named = dict(inputs)
    named.update({p: Path(p) for p in _checkpoints_in(cfg.method_args)})
    settings["inputs"] = {name: file_identity(p) for name, p in sorted(named.items())}
    return settings


def scratch_for(out: Path, settings: Mapping) -> Path:
    """``<out parent>/.<out name>.parts/<hash>``, or under ``$VSSLPIPE_SCRATCH``."""
    root = os.environ.get(SCRATCH_ENV)
    parent = Path(root) / "pretrain" if root else Path(out).parent
    return parent / f".{Path(out).name}.parts" / settings_hash(settings)


def first_difference(old: Any, new: Any, prefix: str = "") -> Optional[str]:
    """``"epochs: 60 -> 1"`` for the first differing key of two settings trees (None: equal)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            if key not in old or key not in new:
                return f"{prefix}{key}: {old.get(key, '(unset)')!r} -> {new.get(key, '(unset)')!r}"
            found = first_difference(old[key], new[key], f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if old == new else f"{prefix.rstrip('.')}: {old!r} -> {new!r}"


def guard_finished_run(out: Path, settings: Mapping, force: bool) -> bool:
    """Outside ``dvc repro``, never silently replace a finished run made with other settings.

    Returns True when ``out`` already holds a finished run of exactly these settings (nothing to
    do); raises ConfigError when it holds one of other settings (unless ``force``)."""
    final = Path(out) / "final.pt"
    if force or os.environ.get("DVC_STAGE") or not final.is_file():
        return False
    record = Path(out) / RUN_RECORD
    old = yaml.safe_load(record.read_text()).get("run") if record.is_file() else None
    ways = "write this run elsewhere with --out DIR, or replace it with --force"
    if old is None:
        raise ConfigError(f"{final}: a finished run whose settings are not recorded would be "
                          f"replaced; {ways}")
    difference = first_difference(old, dict(settings))
    if difference is None:
        return True
    raise ConfigError(f"{final}: a finished run with other settings would be replaced "
                      f"({difference}); {ways}")


def check_crop(cfg: PretrainConfig, stores: Mapping[str, Any], selection: Selection) -> None:
    """The training crop must fit the stored frames (a larger one would only upsample)."""
    for modality, store in stores.items():
        short = store.min_short_side(selection.rows["video_id"].tolist())
        if short and cfg.size > short:
            raise ConfigError(f"{origin_of(cfg, 'size')}: a crop of {cfg.size} px is larger than "
                              f"the {modality} frames of {store.path} (short side {short} px); use "
                              f"a size <= {short} or extract with a larger short side")


def remove_other_scratch(scratch: Path) -> None:
    """Finished: drop this run's scratch and any left by runs of other settings of the output.

    Under ``$VSSLPIPE_SCRATCH`` (shared by table rows that may run at the same time with other
    settings of the same experiment) only this run's own scratch goes."""
    target = scratch if os.environ.get(SCRATCH_ENV) else scratch.parent
    shutil.rmtree(target, ignore_errors=True)


def data_summary(selection: Selection) -> dict:
    """The training set in the run's metrics: videos used and skipped, per reason and file."""
    out = {"data/videos_used": len(selection.rows), "data/videos_skipped": selection.num_skipped}
    for reason, info in selection.metrics()["skipped"].items():
        out[f"data/skipped/{reason}"] = info["count"]
        out[f"data/skipped/{reason}_see"] = info["see"]
    return out


def run_experiment(cfg: PretrainConfig, name: str, data: DataConfig, out: Path,
                   force: bool = False, stop_after: Optional[int] = None,
                   log=print) -> tuple[dict, Selection]:
    """Train experiment ``name`` into ``out`` (``final.pt``, ``config.yaml``); returns the
    summary (empty when ``out`` was already up to date) and the selection of training videos."""
    # torch is imported here, not at module level: every `vsslpipe` command imports the stages.
    from ..data.manifest import read_manifest
    from . import dist
    from .engine import Trainer, seeded_method, summarize

    method = seeded_method(cfg)     # seeded: the same settings give the same initial weights
    modalities = method.required_modalities()
    manifest = read_manifest(data.manifest, origin_of(data, "manifest"))
    rows = manifest[manifest["split"] == cfg.split]
    if rows.empty:
        raise ConfigError(f"{origin_of(cfg, 'split')}: the manifest {data.manifest} has no "
                          f"{cfg.split!r} videos")
    stores, selection = usable_inputs(data, rows, modalities)
    selection.check(data.max_failed_fraction, origin_of(data, "max_failed_fraction"))
    check_crop(cfg, stores, selection)
    inputs = {"manifest": data.manifest, **{m: Path(s.path) for m, s in stores.items()}}
    settings = run_settings(cfg, inputs)
    if guard_finished_run(out, settings, force):
        log(f"pretrain {name}: {out / 'final.pt'} is up to date (same settings and inputs); "
            "--force trains again")
        return {}, selection
    scratch = scratch_for(out, settings)
    trainer = Trainer(cfg, name, scratch, method=method, table=selection.rows,
                      stores={m: Path(s.path) for m, s in stores.items()},
                      stop_after_epochs=stop_after)
    summary: dict = {}
    try:
        trainer.run()
        summary = summarize(trainer.history)
        if trainer.epoch >= cfg.epochs:
            trainer.logger.summary({**{f"summary/{k}": v for k, v in summary.items()},
                                    **data_summary(selection)})
            trainer.save_final(out / "final.pt")       # rank 0 writes; every rank waits
            if dist.is_main():
                write_text_atomic(out / RUN_RECORD, yaml.safe_dump(
                    {"config": to_dict(cfg), "run": settings}, sort_keys=False))
                remove_other_scratch(scratch)
    finally:
        trainer.close()
    return summary, selection
