"""The HDF5 frame store: one group per video id, JPEG bytes per frame.

Schema (version 1)::

    /                      attrs: schema="vsslpipe-frames", schema_version=1, settings (JSON),
                                  ffmpeg_version, vsslpipe_version
    /video_ids             UTF-8 strings, every video in the store, sorted
    /<Class>/<video>/frames   (num_frames,) variable-length uint8: one JPEG file per frame
                           attrs: num_frames, height, width, fps, source

Readers decode any frame range to ``(T, H, W, 3)`` uint8 RGB. Files are opened lazily, per
process, so a reader made before DataLoader workers start is safe to use inside them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence

import cv2
import h5py
import numpy as np

from ..errors import DataError
from .h5parts import INDEX_DATASET

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


class FrameStore:
    """Read access to a frame store; safe to pickle into DataLoader workers."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: frame store not found (run `vsslpipe extract`)")
        self._file: Optional[h5py.File] = None
        self._pid: Optional[int] = None
        with h5py.File(self.path, "r") as f:
            if f.attrs.get("schema") != SCHEMA:
                raise DataError(f"{self.path}: not a vsslpipe frame store (schema attribute)")
            self.attrs = dict(f.attrs)
            self._ids = [v.decode() if isinstance(v, bytes) else str(v) for v in f[INDEX_DATASET][()]]

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
    def settings(self) -> dict:
        return json.loads(self.attrs.get("settings", "{}"))

    def video_ids(self) -> list[str]:
        return list(self._ids)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.file

    def _frames(self, video_id: str) -> h5py.Dataset:
        try:
            return self.file[video_id]["frames"]
        except KeyError:
            raise DataError(f"{self.path}: no video {video_id!r} in the frame store") from None

    def num_frames(self, video_id: str) -> int:
        return int(self._frames(video_id).shape[0])

    def video_attrs(self, video_id: str) -> dict:
        return dict(self._frames(video_id).attrs)

    def read_jpeg(self, video_id: str, start: int = 0, stop: Optional[int] = None) -> list[np.ndarray]:
        """The stored JPEG bytes of frames [start, stop) — one contiguous read."""
        return list(self._frames(video_id)[start:stop])

    def read(self, video_id: str, start: int = 0, stop: Optional[int] = None,
             step: int = 1) -> np.ndarray:
        """Frames [start:stop:step] as (T, H, W, 3) uint8 RGB.

        The range is read contiguously and subsampled in memory: strided selections in h5py
        are far slower than one contiguous read.
        """
        data = self.read_jpeg(video_id, start, stop)[::step]
        if not data:
            ds = self._frames(video_id)
            return np.zeros((0, ds.attrs["height"], ds.attrs["width"], 3), np.uint8)
        return np.stack([decode_jpeg(buf) for buf in data])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
