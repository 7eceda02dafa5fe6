"""Split the videos across N independent jobs (``--shard K/N``) and merge their stores.

A shard takes every N-th video of the sorted id list, starting at the K-th, so shards are
deterministic, disjoint, cover every video and are balanced to within one video. The merge
copies every shard's groups into one store (sorted ids, atomic write) and refuses shards made
with different settings, so the merged store equals the store of one unsharded run.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from ..atomic import atomic_path
from ..data.flowstore import SCHEMA
from ..data.h5parts import INDEX_DATASET
from ..errors import ConfigError, DataError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
# Attributes that may differ between shards of one run (everything else must match).
_PER_SHARD_ATTRS = {"shard"}


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' (1 <= K <= N) -> (K, N)."""
    m = _SHARD.match(text or "")
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ConfigError(f"--shard must look like K/N with 1 <= K <= N, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def select_shard(video_ids: Sequence[str], k: int, n: int) -> list[str]:
    """The K-th of N deterministic, disjoint parts of ``video_ids`` (round robin over sorted ids)."""
    return [vid for i, vid in enumerate(sorted(video_ids)) if i % n == k - 1]


def shard_out_path(out: Path, k: int, n: int) -> Path:
    """Default output of shard K/N: ``flow.h5`` -> ``flow.shard-03-of-16.h5``."""
    width = len(str(n))
    return out.with_name(f"{out.stem}.shard-{k:0{width}d}-of-{n}{out.suffix}")


def _check_attrs(path: Path, attrs: dict, reference: dict, ref_path: Path) -> None:
    for key in set(attrs) | set(reference):
        if key in _PER_SHARD_ATTRS:
            continue
        a, b = attrs.get(key), reference.get(key)
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            same = np.array_equal(a, b)
        else:
            same = a == b
        if not same:
            raise DataError(f"{path}: attribute {key!r} = {a!r} differs from {ref_path} ({b!r}); "
                            "shards must be computed with the same settings and versions")


def merge_shards(shards: Sequence[Path], out: Path) -> int:
    """Merge flow-store shards into ``out`` (atomically); returns the number of videos."""
    if not shards:
        raise ConfigError("merge: no shard files given")
    reference, ref_path, sources = None, None, {}
    for path in map(Path, shards):
        if not path.is_file():
            raise DataError(f"{path}: shard not found")
        with h5py.File(path, "r") as f:
            if f.attrs.get("schema") != SCHEMA:
                raise DataError(f"{path}: not a vsslpipe flow store")
            attrs = dict(f.attrs)
            if reference is None:
                reference, ref_path = attrs, path
            _check_attrs(path, attrs, reference, ref_path)
            for vid in f[INDEX_DATASET].asstr()[()]:
                if vid in sources:
                    raise DataError(f"{path}: video {vid!r} is also in {sources[vid]}")
                sources[vid] = path
    items = sorted(sources.items())
    files = {path: h5py.File(path, "r") for path in set(sources.values())}
    try:
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as dst:
            for key, value in reference.items():
                if key not in _PER_SHARD_ATTRS:
                    dst.attrs[key] = value
            for vid, path in items:
                parent = vid.rsplit("/", 1)[0] if "/" in vid else "/"
                dst.require_group(parent)
                files[path].copy(files[path][vid], dst[parent], name=vid.rsplit("/", 1)[-1])
            ids = np.array([v.encode() for v, _ in items], dtype=object)
            dst.create_dataset(INDEX_DATASET, data=ids, dtype=h5py.string_dtype("utf-8"))
    finally:
        for f in files.values():
            f.close()
    return len(items)
