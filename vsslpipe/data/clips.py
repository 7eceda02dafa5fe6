"""Training clip datasets over the frame store (RGB) and the flow store (flow).

:class:`ClipDataset` is a map-style dataset over the training videos of the manifest. Its index
is ``(epoch, i)`` — yielded by :class:`EpochSampler` — so each sample's randomness comes from
``numpy.random.default_rng((seed, epoch, i))``: the same sample whatever worker draws it, and a
resumed run sees exactly the clips an uninterrupted one would (persistent workers included).
What a sample holds is the method's sampler's business (:mod:`vsslpipe.methods.base`): training
views cut in the worker (:mod:`vsslpipe.data.views`), so videos of any frame size share a batch;
the dataset adds ``index`` (position in the training set) and ``label``, and gives the sampler the
sample's epoch (``video.epoch``: co-training's phase decides which views it needs). With
``decode="gpu"`` RGB views travel as JPEG bytes and crop boxes, decoded in the training process.

HDF5 files are opened lazily inside each worker (the stores reopen per process).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterator, Optional

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DataError
from .flowstore import FlowStore
from .framestore import FrameStore, decode_jpeg
from .views import collate

DECODE = ("cpu", "gpu")


class _Video:
    """The :class:`~vsslpipe.methods.base.VideoSource` a sampler gets."""

    __slots__ = ("video_id", "index", "label", "group", "num_frames", "epoch", "_stores",
                 "_default", "_decode", "_sizes")

    def __init__(self, video_id, index, label, group, num_frames, stores, default, epoch=0,
                 decode="cpu", sizes=None):
        self.video_id, self.index, self.label, self.group = video_id, index, label, group
        self.num_frames, self._stores, self._default = num_frames, stores, default
        self.epoch, self._decode = epoch, decode
        self._sizes = {} if sizes is None else sizes

    def _store(self, modality: Optional[str]):
        modality = modality or self._default
        store = self._stores.get(modality)
        if store is None:
            raise DataError(f"modality {modality!r} was not requested (required_modalities)")
        return modality, store

    def read(self, start: int, stop: int, step: int = 1, modality: Optional[str] = None) -> np.ndarray:
        modality, store = self._store(modality)
        if modality == "flow":
            return store.read_uint8(self.video_id, start, stop, step)
        return store.read(self.video_id, start, stop, step)

    def jpeg_views(self, modality: Optional[str] = None) -> bool:
        """Whether views of ``modality`` travel as JPEG bytes + boxes (``decode: gpu``, RGB)."""
        return self._decode == "gpu" and (modality or self._default) == "rgb"

    def read_jpeg(self, start: int, stop: int, modality: Optional[str] = None) -> list:
        _, store = self._store(modality)
        return store.read_jpeg(self.video_id, start, stop)

    def read_scattered(self, indices, modality: Optional[str] = None) -> np.ndarray:
        """Frames at ``indices`` spread over the video (image MoCo's random frames): RGB reads
        the span's JPEG bytes in one HDF5 call (a call costs far more than the bytes) and
        decodes only the frames asked for; flow reads pair by pair (one chunk each)."""
        modality, store = self._store(modality)
        unique = sorted({int(i) for i in indices})
        if modality == "flow":
            got = {i: store.read_uint8(self.video_id, i, i + 1)[0] for i in unique}
        else:
            data = store.read_jpeg(self.video_id, unique[0], unique[-1] + 1)
            got = {i: decode_jpeg(data[i - unique[0]]) for i in unique}
        return np.stack([got[int(i)] for i in indices])

    def frame_size(self, modality: Optional[str] = None) -> tuple[int, int]:
        """``(height, width)`` of the stored frames, without decoding one (cached per worker:
        reading the attributes costs as much as reading a window's bytes)."""
        modality, store = self._store(modality)
        key = (modality, self.video_id)
        if key not in self._sizes:
            attrs = store.video_attrs(self.video_id)
            self._sizes[key] = int(attrs["height"]), int(attrs["width"])
        return self._sizes[key]


def open_stores(paths: dict[str, str | Path]) -> dict:
    kinds = {"rgb": FrameStore, "flow": FlowStore}
    return {m: kinds[m](p) for m, p in paths.items()}


class ClipDataset(Dataset):
    """Samples of the videos in ``table`` (manifest rows), made by ``sampler``."""

    def __init__(self, table: pd.DataFrame, stores: dict[str, str | Path], sampler: Callable,
                 seed: int = 0, default_modality: Optional[str] = None, decode: str = "cpu"):
        if decode not in DECODE:
            raise ValueError(f"decode must be one of {', '.join(DECODE)}, got {decode!r}")
        if table.empty:
            raise DataError("no training videos in the manifest")
        self.table = table.reset_index(drop=True)
        self.video_ids = list(self.table["video_id"])
        self.labels = self.table["label"].to_numpy(dtype=np.int64)
        self.groups = list(self.table["group"].astype(str)) if "group" in self.table else [""] * len(self.table)
        self.stores = open_stores(stores)
        self.default_modality = default_modality or next(iter(self.stores))
        self.sampler = sampler
        self.seed = int(seed)
        self.decode = decode
        self._sizes: dict = {}     # (modality, video) -> frame size, filled in each worker
        self.num_frames = self._count_frames()

    def _count_frames(self) -> np.ndarray:
        counts = []
        for modality, store in self.stores.items():
            known = set(store.video_ids())
            missing = [v for v in self.video_ids if v not in known]
            if missing:
                raise DataError(f"{store.path}: {len(missing)} training video(s) missing, "
                                f"e.g. {missing[0]!r} (stores and manifest disagree)")
            count = store.num_pairs if modality == "flow" else store.num_frames
            counts.append(np.array([count(v) for v in self.video_ids]))
            store.close()   # workers reopen their own handles
            empty = np.flatnonzero(counts[-1] < 1)
            if empty.size:
                vid = self.video_ids[int(empty[0])]
                if modality == "flow":
                    raise DataError(f"{store.path}: video {vid!r} has no flow pairs (a single "
                                    "frame); flow training takes only videos with >= 2 frames "
                                    f"({empty.size} such video(s) given)")
                raise DataError(f"{store.path}: video {vid!r} has no frames")
        return np.min(np.stack(counts), axis=0)

    def __len__(self) -> int:
        return len(self.video_ids)

    def with_sampler(self, sampler: Callable) -> "ClipDataset":
        """A shallow copy that draws samples with another sampler (e.g. a memory-bank pass)."""
        other = object.__new__(ClipDataset)
        other.__dict__.update(self.__dict__)
        other.sampler = sampler
        return other

    def video(self, i: int, epoch: int = 0) -> _Video:
        return _Video(self.video_ids[i], i, int(self.labels[i]), self.groups[i],
                      int(self.num_frames[i]), self.stores, self.default_modality, epoch,
                      self.decode, self._sizes)

    def __getitem__(self, key) -> dict:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng((self.seed, int(epoch), int(i)))
        sample = dict(self.sampler(self.video(int(i), int(epoch)), rng))
        sample["index"] = int(i)
        sample["label"] = int(self.labels[i])
        return sample


class EpochSampler(Sampler):
    """Yields ``(epoch, index)``: seeded shuffle per epoch, sharded per rank like
    ``DistributedSampler`` (padded to equal shards), optional ``drop_last`` of the shard."""

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.per_rank = math.ceil(size / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = np.random.default_rng((self.seed, 7919, self.epoch)).permutation(self.size)
        else:
            order = np.arange(self.size)
        total = self.per_rank * self.world_size
        if total > self.size and self.shuffle:
            order = np.concatenate([order, order[: total - self.size]])
        shard = order[self.rank:total:self.world_size] if self.shuffle else \
            np.array_split(order, self.world_size)[self.rank]
        return iter([(self.epoch, int(i)) for i in shard])

    def __len__(self) -> int:
        if self.shuffle:
            return self.per_rank
        return len(np.array_split(np.arange(self.size), self.world_size)[self.rank])


class RunSampler(Sampler):
    """``(epoch, index)`` for epochs ``[start, stop)`` of ``epochs`` (an :class:`EpochSampler`),
    each epoch cut to whole batches: one loader spans the run, so its workers prefetch the next
    epoch while the current one ends (no refill bubble at every epoch start)."""

    def __init__(self, epochs: EpochSampler, start: int, stop: int, batch_size: int):
        self.epochs, self.start, self.stop, self.batch_size = epochs, start, stop, batch_size

    def per_epoch(self) -> int:
        return len(self.epochs) // self.batch_size * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for epoch in range(self.start, self.stop):
            self.epochs.set_epoch(epoch)
            yield from list(self.epochs)[: self.per_epoch()]

    def __len__(self) -> int:
        return max(self.stop - self.start, 0) * self.per_epoch()


def _worker_init(_: int) -> None:
    # Each worker decodes single clips: one thread each, or workers fight over the cores.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def make_loader(dataset: ClipDataset, batch_size: int, workers: int, sampler: EpochSampler,
                drop_last: bool, pin_memory: bool = False, persistent: bool = True) -> DataLoader:
    """A DataLoader over ``dataset`` in ``sampler``'s order (uint8 views; JPEG bytes kept as
    lists, :func:`vsslpipe.data.views.collate`)."""
    kwargs = {}
    if workers > 0 and _fork_ok():
        # A forked child that inherits OpenCV's running thread pool hangs in its first
        # cv2.setNumThreads (the pool's condition variables still count the parent's waiting
        # threads). Stopping the pool here costs the training process nothing: the workers do
        # the OpenCV work.
        cv2.setNumThreads(1)
    if workers > 0:
        kwargs = dict(persistent_workers=persistent, prefetch_factor=4, worker_init_fn=_worker_init,
                      multiprocessing_context="fork" if _fork_ok() else None)
    # Its own generator: creating an iterator then leaves the global torch RNG untouched (the
    # engine checkpoints that RNG; samples draw from (seed, epoch, index) anyway).
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      drop_last=drop_last, pin_memory=pin_memory, collate_fn=collate,
                      generator=torch.Generator().manual_seed(0), **kwargs)


def _fork_ok() -> bool:
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods()


def train_table(manifest: pd.DataFrame, split: str = "train") -> pd.DataFrame:
    """Manifest rows of ``split``, sorted by video id (the training-set order)."""
    table = manifest[manifest["split"] == split].sort_values("video_id")
    if table.empty:
        raise DataError(f"manifest has no {split!r} videos")
    return table.reset_index(drop=True)

