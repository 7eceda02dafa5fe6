"""The HDF5 frame store: one group per video id, JPEG bytes per frame; and the store reader.

Schema (version 1), as h5py sees ``<store>/index.h5`` (or an old single-file store)::

    /                      attrs: schema="vsslpipe-frames", schema_version=1, settings (JSON),
                                  ffmpeg_version, vsslpipe_version, store_id, layout
    /video_ids             UTF-8 strings, every video in the store, sorted
    /<Class>/<video>/frames   (num_frames,) variable-length uint8: one JPEG file per frame
                           attrs: num_frames, height, width, fps, source

The folder layout (index, shards, failures.csv) is :mod:`vsslpipe.data.h5parts`'s. Readers
decode any frame range to ``(T, H, W, 3)`` uint8 RGB. They open the shard files themselves, per
process and lazily (a reader made before DataLoader workers start is safe to use inside them):
following the index's external links would reopen the shard at every traversal.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Optional, Sequence

import cv2
import h5py
import numpy as np

from ..errors import DataError
from .h5parts import (FAILURES_NAME, INDEX_DATASET, INDEX_NAME, LAYOUT_INDEX, LAYOUT_SHARD, META,
                      SHARDS_DIR)

SCHEMA = "vsslpipe-frames"
SCHEMA_VERSION = 1
JPEG_DTYPE = h5py.vlen_dtype(np.uint8)


def encode_jpeg(frame_bgr: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.reshape(-1)


def decode_jpeg(data: np.ndarray) -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8 RGB."""
    bgr = cv2.imdecode(np.asarray(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError("corrupt JPEG frame in the frame store")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_video_group(group: h5py.Group, jpegs: Sequence[np.ndarray], height: int, width: int,
                      fps: float, source: str) -> None:
    data = np.empty(len(jpegs), dtype=object)
    data[:] = list(jpegs)
    ds = group.create_dataset("frames", data=data, dtype=JPEG_DTYPE)  # one write, not one per frame
    ds.attrs.update(num_frames=len(jpegs), height=height, width=width, fps=float(fps), source=source)


KINDS = {"vsslpipe-frames": "a vsslpipe frame store (from `vsslpipe extract`)",
         "vsslpipe-flow": "a vsslpipe flow store (from `vsslpipe flow`)"}


def _index_of(path: Path) -> Path:
    return path / INDEX_NAME if path.is_dir() else path


def store_kind(path: str | Path) -> Optional[str]:
    """The schema (``vsslpipe-frames`` / ``vsslpipe-flow``) of the store at ``path`` (a store
    folder, its index.h5 or an old single-file store), or None when it is not one."""
    index = _index_of(Path(path))
    if not index.is_file() or not h5py.is_hdf5(index):
        return None
    try:
        with h5py.File(index, "r") as f:
            schema, layout = f.attrs.get("schema"), f.attrs.get("layout")
    except OSError:
        return None
    schema = schema.decode() if isinstance(schema, bytes) else schema
    return schema if schema in KINDS and layout != LAYOUT_SHARD else None


def is_store(path: str | Path, schema: Optional[str] = None) -> bool:
    kind = store_kind(path)
    return kind is not None and (schema is None or kind == schema)


def store_files(path: str | Path) -> list[Path]:
    """Every file of the store at ``path`` (index, shards, failures.csv; or the single file)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    files = [path / INDEX_NAME] + sorted((path / SHARDS_DIR).glob("*.h5"))
    return files + ([path / FAILURES_NAME] if (path / FAILURES_NAME).is_file() else [])


def store_identity(path: str | Path) -> str:
    """A content identity: a store folder's ``store_id``, a single-file store's md5."""
    index = _index_of(Path(path))
    with h5py.File(index, "r") as f:
        if "store_id" in f.attrs:
            return str(f.attrs["store_id"])
    digest = hashlib.md5()
    with open(index, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _strings(ds) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]]


class StoreReader:
    """Read access to a store folder (index + shards) or an old single-file store; picklable."""

    SCHEMA, KIND, DATASET, MAKE = "", "store", "", ""
    MAX_OPEN = 64                 # shard handles kept open per process (file descriptors)

    def __init__(self, path: str | Path):
        self.path = Path(path)
        index = _index_of(self.path)
        if not index.is_file():
            raise DataError(f"{self.path}: {self.KIND} not found ({self.MAKE})")
        try:
            f = h5py.File(index, "r")
        except OSError:
            raise DataError(f"{self.path}: not a vsslpipe {self.KIND}: {index.name} is not a "
                            "readable HDF5 file (truncated or of another kind)") from None
        with f:
            schema = f.attrs.get("schema")
            schema = schema.decode() if isinstance(schema, bytes) else schema
            if schema != self.SCHEMA:
                what = KINDS.get(schema, "an HDF5 file of another kind (no vsslpipe schema attribute)")
                raise DataError(f"{self.path}: not a vsslpipe {self.KIND}: it is {what}; "
                                f"{self.MAKE} to make one")
            if f.attrs.get("layout") == LAYOUT_SHARD:
                raise DataError(f"{self.path}: one shard of a {self.KIND}, not the store: give the "
                                f"store folder (the one holding {INDEX_NAME})")
            self.attrs = dict(f.attrs)
            self._ids = _strings(f[INDEX_DATASET])
            if self.attrs.get("layout") == LAYOUT_INDEX:
                names = _strings(f[f"{META}/shard_files"])
                self._files = [index.parent / SHARDS_DIR / n for n in names]
                self._shard = f[f"{META}/shard"][()]
                self._length: Optional[np.ndarray] = f[f"{META}/length"][()]
            else:                                   # single file: every video in it
                self._files, self._shard, self._length = [index], None, None
        self._pos = {vid: i for i, vid in enumerate(self._ids)}
        self._open: OrderedDict[int, h5py.File] = OrderedDict()
        self._pid: Optional[int] = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"], state["_pid"] = OrderedDict(), None
        return state

    def _handle(self, k: int) -> h5py.File:
        if self._pid != os.getpid():        # a forked or unpickled copy: never share handles
            self._open, self._pid = OrderedDict(), os.getpid()
        f = self._open.get(k)
        if f is None:
            if len(self._open) >= self.MAX_OPEN:
                self._open.popitem(last=False)[1].close()
            try:
                f = self._open[k] = h5py.File(self._files[k], "r")
            except OSError as exc:
                raise DataError(f"{self.path}: cannot read its shard {self._files[k].name} "
                                f"({exc.__class__.__name__}: the store is damaged; "
                                f"{self.MAKE} again)") from None
        else:
            self._open.move_to_end(k)
        return f

    def _position(self, video_id: str) -> int:
        try:
            return self._pos[video_id]
        except KeyError:
            raise DataError(f"{self.path}: no video {video_id!r} in the {self.KIND}") from None

    def _dataset(self, video_id: str) -> h5py.Dataset:
        i = self._position(video_id)
        f = self._handle(0 if self._shard is None else int(self._shard[i]))
        try:
            return f[video_id][self.DATASET]
        except KeyError:
            raise DataError(f"{self.path}: video {video_id!r} has no {self.DATASET!r} data in "
                            f"{f.filename} (the store is damaged)") from None

    def _length_of(self, video_id: str) -> int:
        if self._length is None:
            return int(self._dataset(video_id).shape[0])
        return int(self._length[self._position(video_id)])

    @property
    def store_id(self) -> str:
        """The content identity (see :func:`store_identity`)."""
        return str(self.attrs["store_id"]) if "store_id" in self.attrs else store_identity(self.path)

    def store_files(self) -> list[Path]:
        return store_files(self.path)

    def video_ids(self) -> list[str]:
        return list(self._ids)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._pos

    def __len__(self) -> int:
        return len(self._ids)

    def video_attrs(self, video_id: str) -> dict:
        return dict(self._dataset(video_id).attrs)

    def min_short_side(self, video_ids: Sequence[str], sample: int = 200) -> int:
        """The smallest short side (px) of ``video_ids``' frames: the extraction's short side
        when it resized every video, else read from (up to ``sample`` of) the videos."""
        short = int(json.loads(self.attrs.get("settings", "{}") or "{}").get("short_side") or 0)
        if short:
            return short
        sizes = [self.video_attrs(v) for v in list(video_ids)[:sample]]
        return min((min(int(a["height"]), int(a["width"])) for a in sizes), default=0)

    def close(self) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()


class FrameStore(StoreReader):
    """Read access to a frame store; safe to pickle into DataLoader workers."""

    SCHEMA, KIND, DATASET, MAKE = SCHEMA, "frame store", "frames", "run `vsslpipe extract`"

    @property
    def settings(self) -> dict:
        return json.loads(self.attrs.get("settings", "{}"))

    def num_frames(self, video_id: str) -> int:
        return self._length_of(video_id)

    def read_jpeg(self, video_id: str, start: int = 0, stop: Optional[int] = None) -> list[np.ndarray]:
        """The stored JPEG bytes of frames [start, stop) — one contiguous read."""
        return list(self._dataset(video_id)[start:stop])

    def read(self, video_id: str, start: int = 0, stop: Optional[int] = None,
             step: int = 1) -> np.ndarray:
        """Frames [start:stop:step] as (T, H, W, 3) uint8 RGB.

        The range is read contiguously and subsampled in memory: strided selections in h5py
        are far slower than one contiguous read.
        """
        data = self.read_jpeg(video_id, start, stop)[::step]
        if not data:
            attrs = self.video_attrs(video_id)
            return np.zeros((0, attrs["height"], attrs["width"], 3), np.uint8)
        return np.stack([decode_jpeg(buf) for buf in data])
