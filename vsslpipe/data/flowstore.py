"""The HDF5 flow store: TV-L1 flow between consecutive frames, quantised to uint8.

Schema (version 1)::

    /                      attrs: schema="vsslpipe-flow", schema_version=1, algorithm,
                                  parameters (JSON: every TV-L1 parameter), bound, backend,
                                  opencv_version, frames_store_settings (JSON)
    /video_ids             UTF-8 strings, every video in the store, sorted
    /<Class>/<video>/flow  (num_frames - 1, H, W, 2) uint8, chunked one pair per chunk,
                           gzip-compressed; channel 0 = x (right), 1 = y (down)
                           attrs: num_pairs, height, width

Quantisation (the I3D / CoCLR convention): each component is clipped to [-bound, bound] pixels
and mapped linearly to [0, 255]: ``q = round((f + bound) * 255 / (2 * bound))``. The reader maps
back to float pixels: ``f = q * 2 * bound / 255 - bound`` (error at most bound / 255 px).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import h5py
import numpy as np

from ..errors import DataError
from .h5parts import INDEX_DATASET

SCHEMA = "vsslpipe-flow"
SCHEMA_VERSION = 1
DEFAULT_BOUND = 20.0


def quantize_flow(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Float flow in pixels (..., 2) -> uint8 with [-bound, bound] mapped linearly to [0, 255]."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    return np.rint(scaled).astype(np.uint8)


def dequantize_flow(q: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """uint8 flow -> float32 pixels (the inverse of :func:`quantize_flow` up to rounding)."""
    return (q.astype(np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound))


def write_flow_group(group: h5py.Group, flow_uint8: np.ndarray, compression_level: int = 4) -> None:
    """Store one video's quantised flow (pairs, H, W, 2) uint8 in ``group`` (chunked per pair)."""
    pairs, h, w, c = flow_uint8.shape
    if c != 2 or flow_uint8.dtype != np.uint8:
        raise ValueError("flow must be (pairs, H, W, 2) uint8")
    ds = group.create_dataset("flow", data=flow_uint8, chunks=(1, h, w, 2) if pairs else None,
                              compression="gzip" if pairs else None,
                              compression_opts=compression_level if pairs else None)
    ds.attrs.update(num_pairs=pairs, height=h, width=w)


class FlowStore:
    """Read access to a flow store; safe to pickle into DataLoader workers (opens lazily)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: flow store not found (run `vsslpipe flow`)")
        self._file: Optional[h5py.File] = None
        self._pid: Optional[int] = None
        with h5py.File(self.path, "r") as f:
            if f.attrs.get("schema") != SCHEMA:
                raise DataError(f"{self.path}: not a vsslpipe flow store (schema attribute)")
            self.attrs = dict(f.attrs)
            self._ids = [v.decode() if isinstance(v, bytes) else str(v) for v in f[INDEX_DATASET][()]]
        self.bound = float(self.attrs.get("bound", DEFAULT_BOUND))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, None
        return state

    @property
    def file(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    @property
    def parameters(self) -> dict:
        return json.loads(self.attrs.get("parameters", "{}"))

    def video_ids(self) -> list[str]:
        return list(self._ids)

    def _flow(self, video_id: str) -> h5py.Dataset:
        try:
            return self.file[video_id]["flow"]
        except KeyError:
            raise DataError(f"{self.path}: no video {video_id!r} in the flow store") from None

    def num_pairs(self, video_id: str) -> int:
        return int(self._flow(video_id).shape[0])

    def read_uint8(self, video_id: str, start: int = 0, stop: Optional[int] = None,
                   step: int = 1) -> np.ndarray:
        """Quantised flow of pairs [start:stop:step], (n, H, W, 2) uint8 (contiguous read)."""
        return self._flow(video_id)[start:stop][::step]

    def read(self, video_id: str, start: int = 0, stop: Optional[int] = None,
             step: int = 1) -> np.ndarray:
        """Flow of pairs [start:stop:step] in pixels, (n, H, W, 2) float32."""
        return dequantize_flow(self.read_uint8(video_id, start, stop, step), self.bound)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
