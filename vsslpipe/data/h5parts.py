"""Write a store as shards that appear whole, and present them as one store through an index.

Layout of a store folder (frames or flow)::

    <store>/index.h5        root attributes (schema, settings, versions, store_id, ...),
                            /video_ids (sorted), /_store/{length,shard,shard_files}, and one
                            HDF5 external link /<Class>/<video> -> shards/<file>:/<Class>/<video>
                            (so plain h5py on index.h5 sees every video)
    <store>/shards/*.h5     the videos of one chunk of the sorted id list each
    <store>/failures.csv    video_id, reason

An HDF5 file whose writer is killed usually cannot be reopened, so each chunk's shard is
written under a temporary name in the scratch folder ``<dir>/.<store>.parts/<settings hash>/``
and renamed when complete; it records the chunk's failures too, so a rerun with the same
settings reuses it and knows them. When every chunk is done the index and failures.csv are
written into the scratch folder, which is then renamed onto ``<store>`` (same file system: no
copy, no merge), replacing any old store; scratch folders of other settings are removed.
The scratch lives outside DVC's outputs (DVC deletes outputs before it re-runs a stage).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import h5py
import numpy as np

from ..atomic import atomic_path, is_temporary, remove_stale_temporaries, temp_name, write_text_atomic

INDEX_DATASET = "video_ids"
INDEX_NAME, SHARDS_DIR, FAILURES_NAME = "index.h5", "shards", "failures.csv"
META = "_store"                       # per-video tables, in the index and in each shard
LAYOUT_INDEX, LAYOUT_SHARD = "sharded-index", "shard"
DEFAULT_VIDEOS_PER_SHARD = 100        # ~130 MB frame / ~75 MB flow shards at UCF101 scale
_STR = h5py.string_dtype("utf-8")
# Attributes that describe a store without changing its content (left out of store_id).
_NOT_IDENTITY = ("vsslpipe_version", "store_id", "layout", "videos_per_shard")


def settings_hash(settings: Mapping) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def scratch_root(out: Path) -> Path:
    out = Path(out)
    return out.parent / f".{out.name}.parts"


def scratch_dir(out: Path, settings: Mapping) -> Path:
    """``<dir>/.<out name>.parts/<hash>``: resumable partial work for ``out``."""
    return scratch_root(out) / settings_hash(settings)


@dataclass(frozen=True)
class Chunk:
    """One work unit: consecutive ids of the sorted list; its shard's name names its content."""
    index: int
    ids: tuple[str, ...]

    @property
    def name(self) -> str:
        digest = hashlib.sha1("\n".join(self.ids).encode()).hexdigest()[:12]
        return f"shard-{self.index:05d}-{digest}.h5"


def plan_chunks(video_ids: Iterable[str], videos_per_shard: int) -> list[Chunk]:
    ids = sorted(set(video_ids))
    n = max(1, int(videos_per_shard))
    return [Chunk(k, tuple(ids[s:s + n])) for k, s in enumerate(range(0, len(ids), n))]


def store_target(out: Path) -> Path:
    """Where the store goes: a symlinked ``out`` keeps its link (the store lands where it points,
    and its scratch beside it, on that file system)."""
    out = Path(out)
    return out.resolve() if out.is_symlink() else out


def prepare_scratch(out: Path, scratch: Path) -> None:
    """Create the scratch folder; delete temporaries a killed run left (shards, old stores)."""
    (scratch / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(scratch / SHARDS_DIR)
    remove_stale_temporaries(scratch)
    remove_stale_temporaries(Path(out).parent, prefix=Path(out).name + ".", dirs=True)


def finished_shards(scratch: Path) -> set[str]:
    folder = Path(scratch) / SHARDS_DIR
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.glob("*.h5") if not is_temporary(p)}


def _strings(ds) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]]


class ShardWriter:
    """Writes chunks' shards from per-video results (``add`` / ``fail``, in any order). Each
    shard's groups are written in sorted order (a result that comes early waits in memory), so
    the shard's bytes do not depend on the order work finished in; a shard is renamed into
    place when the last video of its chunk has a result."""

    def __init__(self, scratch: Path, chunks: Sequence[Chunk], root_attrs: Mapping):
        self.folder = Path(scratch) / SHARDS_DIR
        self.attrs = {**root_attrs, "layout": LAYOUT_SHARD}
        self._chunk = {vid: c for c in chunks for vid in c.ids}
        self._open: dict[int, dict] = {}

    def add(self, video_id: str, length: int, fill: Callable[[h5py.Group], None]) -> None:
        """Write one video's group through ``fill``; ``length`` = its frames (or pairs)."""
        self._put(video_id, (int(length), fill))

    def fail(self, video_id: str, reason: str) -> None:
        self._put(video_id, str(reason))

    def _put(self, video_id: str, outcome) -> None:
        chunk = self._chunk[video_id]
        state = self._open.get(chunk.index)
        if state is None:
            tmp = temp_name(self.folder / chunk.name)
            f = h5py.File(tmp, "w")
            f.attrs.update(self.attrs)
            state = self._open[chunk.index] = {"chunk": chunk, "tmp": tmp, "file": f, "next": 0,
                                               "waiting": {}, "ok": {}, "failed": {}}
        done = chunk.ids[:state["next"]]
        if video_id in state["waiting"] or video_id in done:
            raise ValueError(f"{video_id!r}: result given twice")
        state["waiting"][video_id] = outcome
        while state["next"] < len(chunk.ids) and chunk.ids[state["next"]] in state["waiting"]:
            vid = chunk.ids[state["next"]]
            result = state["waiting"].pop(vid)
            if isinstance(result, str):
                state["failed"][vid] = result
            else:
                result[1](state["file"].create_group(vid))
                state["ok"][vid] = result[0]
            state["next"] += 1
        if state["next"] == len(chunk.ids):
            self._finish(state)

    def _finish(self, state: dict) -> None:
        f = state["file"]
        ok, failed = sorted(state["ok"].items()), sorted(state["failed"].items())
        f.create_dataset(INDEX_DATASET, data=[v for v, _ in ok], dtype=_STR)
        f.create_dataset(f"{META}/length", data=np.array([n for _, n in ok], np.int64))
        f.create_dataset(f"{META}/failed_ids", data=[v for v, _ in failed], dtype=_STR)
        f.create_dataset(f"{META}/failed_reasons", data=[r for _, r in failed], dtype=_STR)
        f.close()
        os.replace(state["tmp"], self.folder / state["chunk"].name)
        del self._open[state["chunk"].index]

    def abort(self) -> None:
        """Drop unfinished shards (an error stopped the run; a rerun redoes those chunks)."""
        for state in self._open.values():
            state["file"].close()
            with contextlib.suppress(FileNotFoundError):
                state["tmp"].unlink()
        self._open.clear()


@dataclass
class StoreSummary:
    videos: int
    lengths: dict[str, int]               # video id -> frames (pairs)
    failures: list[tuple[str, str]]       # (video id, reason), sorted
    store_id: str


def finalise(scratch: Path, out: Path, chunks: Sequence[Chunk], root_attrs: Mapping,
             videos_per_shard: int) -> StoreSummary:
    """Index the finished shards of ``chunks`` in ``scratch`` and rename it onto ``out``."""
    scratch, out = Path(scratch), Path(out)
    wanted = {c.name for c in chunks}
    for name in finished_shards(scratch) - wanted:           # other id lists or shard sizes
        (scratch / SHARDS_DIR / name).unlink()
    lengths, shard_of, failures, sizes = {}, {}, [], {}
    for k, chunk in enumerate(chunks):
        path = scratch / SHARDS_DIR / chunk.name
        sizes[chunk.name] = path.stat().st_size
        with h5py.File(path, "r") as f:
            for vid, n in zip(_strings(f[INDEX_DATASET]), f[f"{META}/length"][()]):
                lengths[vid], shard_of[vid] = int(n), k
            failures += zip(_strings(f[f"{META}/failed_ids"]), _strings(f[f"{META}/failed_reasons"]))
    ids = sorted(lengths)
    attrs = dict(root_attrs)
    attrs["store_id"] = content_id(attrs, ids, [lengths[v] for v in ids], sizes)
    attrs.update(layout=LAYOUT_INDEX, videos_per_shard=int(videos_per_shard))
    failures.sort()
    _write_failures(scratch / FAILURES_NAME, failures)
    with atomic_path(scratch / INDEX_NAME) as tmp:
        write_index(tmp, attrs, ids, [lengths[v] for v in ids], [shard_of[v] for v in ids],
                    [c.name for c in chunks])
    swap_into_place(scratch, out)
    remove_other_scratch(out)
    return StoreSummary(len(ids), lengths, failures, attrs["store_id"])


def read_summary(out: Path) -> StoreSummary:
    """The :class:`StoreSummary` of a finished store folder (another rank indexed it)."""
    import pandas as pd

    out = Path(out)
    with h5py.File(out / INDEX_NAME, "r") as f:
        ids, lengths = _strings(f[INDEX_DATASET]), f[f"{META}/length"][()]
        store_id = str(f.attrs["store_id"])
    table = pd.read_csv(out / FAILURES_NAME, dtype=str, keep_default_na=False)
    failures = list(zip(table["video_id"], table["reason"]))
    return StoreSummary(len(ids), dict(zip(ids, map(int, lengths))), failures, store_id)


def content_id(attrs: Mapping, ids: Sequence[str], lengths: Sequence[int],
               shard_sizes: Mapping[str, int]) -> str:
    """A store's content identity: its settings, videos, their lengths and its shards' sizes."""
    settings = {k: str(v) for k, v in attrs.items() if k not in _NOT_IDENTITY}
    blob = json.dumps([settings, list(ids), [int(n) for n in lengths], sorted(shard_sizes.items())])
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def write_index(path: Path, attrs: Mapping, ids: Sequence[str], lengths: Sequence[int],
                shard: Sequence[int], shard_files: Sequence[str]) -> None:
    with h5py.File(path, "w") as f:
        f.attrs.update(attrs)
        f.create_dataset(INDEX_DATASET, data=list(ids), dtype=_STR)
        f.create_dataset(f"{META}/length", data=np.asarray(lengths, np.int64))
        f.create_dataset(f"{META}/shard", data=np.asarray(shard, np.int32))
        f.create_dataset(f"{META}/shard_files", data=list(shard_files), dtype=_STR)
        groups: dict[str, h5py.Group] = {"": f}
        for vid, k in zip(ids, shard):
            parent, _, name = vid.rpartition("/")
            group = groups.get(parent)
            if group is None:
                group = groups[parent] = f.require_group(parent)
            # the low-level call: 3x faster than ``group[name] = h5py.ExternalLink(...)``
            group.id.links.create_external(name.encode(), f"{SHARDS_DIR}/{shard_files[k]}".encode(),
                                           f"/{vid}".encode())


def swap_into_place(folder: Path, out: Path) -> None:
    """Rename ``folder`` onto ``out``; an old ``out`` (folder or single file) is moved aside
    under a temporary name first and deleted after, so ``out`` is never half-written."""
    old = None
    if out.exists() or out.is_symlink():
        old = temp_name(out)
        os.replace(out, old)
    os.replace(folder, out)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()


def remove_other_scratch(out: Path) -> None:
    """Delete what is left under ``out``'s scratch root: other settings' work (no leaked scratch)."""
    root = scratch_root(out)
    if not root.is_dir():
        return
    for entry in root.iterdir():
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
    with contextlib.suppress(OSError):
        root.rmdir()


def _write_failures(path: Path, failures: Sequence[tuple[str, str]]) -> None:
    import pandas as pd

    write_text_atomic(path, pd.DataFrame(list(failures), columns=["video_id", "reason"]).to_csv(index=False))


# --- a single-file store (the layout before shards; readers accept it): small test stores ---

def write_part(scratch: Path, video_id: str, fill: Callable[[h5py.Group], None]) -> Path:
    """Write one video's group through ``fill`` into its own file (for :func:`merge_parts`)."""
    digest = hashlib.sha1(video_id.encode()).hexdigest()[:10]
    target = Path(scratch) / f"{video_id.replace('/', '__')[-80:]}.{digest}.h5"
    with atomic_path(target) as tmp:
        with h5py.File(tmp, "w") as f:
            fill(f.create_group(video_id))
    return target


def merge_parts(parts: Iterable[tuple[str, Path]], out: Path, root_attrs: Mapping) -> int:
    """A single-file store of ``(video_id, part)`` groups (sorted by id), written atomically."""
    items = sorted(parts)
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as dst:
            dst.attrs.update(root_attrs)
            for video_id, part in items:
                parent = video_id.rsplit("/", 1)[0] if "/" in video_id else "/"
                dst.require_group(parent)
                with h5py.File(part, "r") as src:
                    src.copy(src[video_id], dst[parent], name=video_id.rsplit("/", 1)[-1])
            dst.create_dataset(INDEX_DATASET, data=[vid for vid, _ in items], dtype=_STR)
    return len(items)


def bench_finalise(videos: int, folder: Path, videos_per_shard: int = DEFAULT_VIDEOS_PER_SHARD) -> float:
    """Seconds :func:`finalise` takes for a synthetic store of ``videos`` tiny videos (the end of
    a stage does not depend on their size): for bench/bench_stores.py."""
    import time

    ids = [f"C{i % 101:03d}/v_{i:07d}" for i in range(videos)]
    chunks = plan_chunks(ids, videos_per_shard)
    out = Path(folder) / "store"
    scratch = scratch_dir(out, {"bench": videos})
    prepare_scratch(out, scratch)
    writer = ShardWriter(scratch, chunks, {"schema": "bench"})
    for vid in ids:
        writer.add(vid, 1, lambda g: g.create_dataset("frames", data=np.zeros(1, np.uint8)))
    start = time.perf_counter()
    finalise(scratch, out, chunks, {"schema": "bench"}, videos_per_shard)
    seconds = time.perf_counter() - start
    shutil.rmtree(folder, ignore_errors=True)
    return seconds
