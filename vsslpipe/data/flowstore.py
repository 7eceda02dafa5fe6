"""The HDF5 flow store: TV-L1 flow between consecutive frames, quantised to uint8.

Schema (version 1)::

    /                      attrs: schema="vsslpipe-flow", schema_version=1, algorithm,
                                  parameters (JSON: every TV-L1 parameter), bound, backend,
                                  opencv_version, frames_store_settings (JSON)
    /video_ids             UTF-8 strings, every video in the store, sorted
    /<Class>/<video>/flow  (num_frames - 1, H, W, 2) uint8, chunked one pair per chunk,
                           gzip-compressed; channel 0 = x (right), 1 = y (down)
                           attrs: num_pairs, height, width

As for frames, this is what h5py sees through ``<store>/index.h5`` (or in an old single file);
the folder layout is :mod:`vsslpipe.data.h5parts`'s, and the flow stage compresses pairs
(:func:`pack_flow`) apart from the file writes (:func:`write_packed_flow`).

Quantisation (the I3D / CoCLR convention): each component is clipped to [-bound, bound] pixels
and mapped linearly to [0, 255]: ``q = round((f + bound) * 255 / (2 * bound))``. The reader maps
back to float pixels: ``f = q * 2 * bound / 255 - bound`` (error at most bound / 255 px).
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Optional

import h5py
import numpy as np

from .framestore import StoreReader

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


@dataclass
class PackedFlow:
    """One video's quantised flow, compressed pair by pair (``zlib`` = HDF5's gzip filter)."""
    shape: tuple[int, int, int, int]
    chunks: list[bytes]
    raw: list[bool]                # chunk stored uncompressed (compression would grow it)


def pack_flow(flow_uint8: np.ndarray, compression_level: int = 4) -> PackedFlow:
    """Compress each pair apart from any HDF5 call: zlib releases the GIL, so threads (or
    worker processes) compress in parallel while one writer thread does the file writes."""
    if flow_uint8.ndim != 4 or flow_uint8.shape[-1] != 2 or flow_uint8.dtype != np.uint8:
        raise ValueError("flow must be (pairs, H, W, 2) uint8")
    chunks, raw = [], []
    for pair in flow_uint8:
        data = np.ascontiguousarray(pair).tobytes()
        packed = zlib.compress(data, compression_level)
        small = len(packed) < len(data)
        chunks.append(packed if small else data)
        raw.append(not small)
    return PackedFlow(tuple(flow_uint8.shape), chunks, raw)


def write_packed_flow(group: h5py.Group, packed: PackedFlow) -> None:
    """Store a :class:`PackedFlow` as the group's ``flow`` dataset (chunked per pair, gzip)."""
    pairs, h, w, _ = packed.shape
    if pairs == 0:
        ds = group.create_dataset("flow", shape=packed.shape, dtype=np.uint8)
    else:
        ds = group.create_dataset("flow", shape=packed.shape, dtype=np.uint8,
                                  chunks=(1, h, w, 2), compression="gzip")
        for i, (data, raw) in enumerate(zip(packed.chunks, packed.raw)):
            # filter_mask bit 0 set: the (only) gzip filter was skipped for this chunk
            ds.id.write_direct_chunk((i, 0, 0, 0), data, filter_mask=1 if raw else 0)
    ds.attrs.update(num_pairs=pairs, height=h, width=w)


def write_flow_group(group: h5py.Group, flow_uint8: np.ndarray, compression_level: int = 4) -> None:
    """Store one video's quantised flow (pairs, H, W, 2) uint8 in ``group`` (chunked per pair)."""
    write_packed_flow(group, pack_flow(flow_uint8, compression_level))


class FlowStore(StoreReader):
    """Read access to a flow store; safe to pickle into DataLoader workers (opens lazily)."""

    SCHEMA, KIND, DATASET, MAKE = SCHEMA, "flow store", "flow", "run `vsslpipe flow`"

    def __init__(self, path):
        super().__init__(path)
        self.bound = float(self.attrs.get("bound", DEFAULT_BOUND))

    @property
    def parameters(self) -> dict:
        return json.loads(self.attrs.get("parameters", "{}"))

    def num_pairs(self, video_id: str) -> int:
        return self._length_of(video_id)

    def read_uint8(self, video_id: str, start: int = 0, stop: Optional[int] = None,
                   step: int = 1) -> np.ndarray:
        """Quantised flow of pairs [start:stop:step], (n, H, W, 2) uint8 (contiguous read)."""
        return self._dataset(video_id)[start:stop][::step]

    def read(self, video_id: str, start: int = 0, stop: Optional[int] = None,
             step: int = 1) -> np.ndarray:
        """Flow of pairs [start:stop:step] in pixels, (n, H, W, 2) float32."""
        return dequantize_flow(self.read_uint8(video_id, start, stop, step), self.bound)
