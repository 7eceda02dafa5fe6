"""Commit HDF5 work in units that appear atomically, then merge them into one store.

An HDF5 file whose writer is killed usually cannot be reopened, so a stage writes each unit of
work (one video) as its own small part file under a temporary name and renames it when it is
complete. A rerun finds the finished parts, skips them, and deletes stale temporaries. When every
unit is done the parts are merged, in sorted order, into the stage's single output file (written
under a temporary name as well), so the result does not depend on the order work finished in.

The scratch folder lives beside the output, outside DVC's outputs (DVC deletes outputs before it
re-runs a stage), and its name carries a hash of the settings so a change of settings never
reuses parts made with the old ones.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable, Iterable, Mapping

import h5py
import numpy as np

from ..atomic import atomic_path, is_temporary, remove_stale_temporaries

INDEX_DATASET = "video_ids"


def settings_hash(settings: Mapping) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def scratch_dir(out: Path, settings: Mapping) -> Path:
    """``<dir>/.<out name>.parts/<hash>``: resumable partial work for ``out``."""
    out = Path(out)
    return out.parent / f".{out.name}.parts" / settings_hash(settings)


def part_path(scratch: Path, video_id: str) -> Path:
    """A flat, collision-free file name for one video's part."""
    digest = hashlib.sha1(video_id.encode()).hexdigest()[:10]
    safe = video_id.replace("/", "__")[-80:]
    return scratch / f"{safe}.{digest}.h5"


def prepare_scratch(scratch: Path) -> None:
    scratch.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(scratch)


def finished_parts(scratch: Path) -> set[Path]:
    if not scratch.is_dir():
        return set()
    return {p for p in scratch.glob("*.h5") if not is_temporary(p)}


def write_part(scratch: Path, video_id: str, fill: Callable[[h5py.Group], None]) -> Path:
    """Write one video's group through ``fill`` into a part file that appears atomically."""
    target = part_path(scratch, video_id)
    with atomic_path(target) as tmp:
        with h5py.File(tmp, "w") as f:
            fill(f.create_group(video_id))
    return target


def merge_parts(parts: Iterable[tuple[str, Path]], out: Path, root_attrs: Mapping) -> int:
    """Copy each ``(video_id, part)`` group into ``out`` (sorted by id), atomically; return count."""
    items = sorted(parts)
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as dst:
            for key, value in root_attrs.items():
                dst.attrs[key] = value
            for video_id, part in items:
                parent = video_id.rsplit("/", 1)[0] if "/" in video_id else "/"
                dst.require_group(parent)
                with h5py.File(part, "r") as src:
                    src.copy(src[video_id], dst[parent], name=video_id.rsplit("/", 1)[-1])
            ids = np.array([vid.encode() for vid, _ in items], dtype=object)
            dst.create_dataset(INDEX_DATASET, data=ids, dtype=h5py.string_dtype("utf-8"))
    return len(items)


def remove_scratch(scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
    parent = scratch.parent
    if parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
