"""Frame store -> flow store: parallel (opencv) or batched (torch), resumable, kill-safe.

The sorted videos are cut into chunks, each written whole as one shard of the store
(:mod:`vsslpipe.data.h5parts`), so a killed run resumes at the first unfinished chunk and the
store does not depend on the order work finished in. opencv: worker processes compute and
compress one video each and this process writes. torch: this thread drives the device only;
quantising and compressing run on a thread pool and the file writes on a writer thread. Under
``torchrun`` each rank computes its share of the chunks (:mod:`vsslpipe.flow.sharding`) and
rank 0 writes the index. A video with one frame has no pairs: it is stored with an empty
``flow`` dataset (0, H, W, 2), so the flow store lists the same videos as the frame store, and
it is counted in ``without_pairs``. A video that cannot be read (corrupt JPEG, missing group)
is listed in ``<out>/failures.csv``.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from .. import __version__
from ..data import h5parts
from ..data.flowstore import (SCHEMA, SCHEMA_VERSION, PackedFlow, pack_flow, quantize_flow,
                              write_packed_flow)
from ..data.framestore import FrameStore, store_identity
from ..errors import VsslpipeError
from ..progress import ProgressBar
from ..video.extract import failures_path  # noqa: F401  (the stage's name for <out>/failures.csv)
from . import sharding
from .opencv_backend import create_tvl1, flow_pairs_opencv, opencv_version, to_gray
from .params import TVL1Params

ALGORITHM = "tvl1"


@dataclass(frozen=True)
class FlowSettings:
    backend: str = "opencv"        # opencv | torch
    bound: float = 20.0
    tvl1: TVL1Params = field(default_factory=TVL1Params)
    device: str = "cpu"            # torch backend only
    batch_size: int = 64           # torch backend: pairs per batch
    compile: bool = False          # torch backend: torch.compile the iteration
    videos_per_shard: int = h5parts.DEFAULT_VIDEOS_PER_SHARD   # layout only (not hashed)
    # torch backend: convergence read back every N inner iterations (None: the device's default);
    # the flow is the same for any N (OpenCV's stopping rule), so it is not hashed either
    check_every: Optional[int] = None

    def as_dict(self) -> dict:
        """What determines the stored values (hashed for resume; stored in the attributes)."""
        d = {"backend": self.backend, "bound": self.bound, "tvl1": self.tvl1.as_dict(),
             "opencv_version": opencv_version()}
        if self.backend == "torch":
            import torch
            # the device type, not its index: torchrun's ranks share one scratch folder
            d.update(torch_version=str(torch.__version__), device=torch.device(self.device).type)
        return d

    def root_attrs(self, frames_store: str = "") -> dict:
        attrs = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "algorithm": ALGORITHM,
                 "parameters": json.dumps(self.tvl1.as_dict(), sort_keys=True),
                 "bound": float(self.bound), "backend": self.backend,
                 "opencv_version": opencv_version(), "vsslpipe_version": __version__,
                 "frames_store_id": frames_store}
        if self.backend == "torch":
            import torch
            attrs.update(torch_version=str(torch.__version__))
        return attrs


@dataclass
class FlowResult:
    videos: int = 0                # videos in the store
    computed: int = 0              # videos computed in this run (every rank)
    reused: int = 0                # videos of finished shards of an interrupted run
    without_pairs: int = 0         # single-frame videos (stored with zero pairs)
    pairs: int = 0                 # pairs computed in this run (every rank)
    seconds: float = 0.0
    iterations: list[int] = field(default_factory=list)  # torch: iterations each pair ran (this rank)
    failures: list[tuple[str, str]] = field(default_factory=list)
    store_id: str = ""
    rank: int = 0                  # under torchrun: this process's rank (the stage reports on 0)
    world_size: int = 1

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds else 0.0


_READ_ERRORS = (VsslpipeError, OSError, KeyError, ValueError, cv2.error)
_worker: dict = {}


def _init_worker(threads: int) -> None:
    # One OpenCV thread per process when processes fill the cores (no oversubscription).
    cv2.setNumThreads(threads)


def _read_gray(frames_path: str, video_id: str) -> np.ndarray:
    store = _worker.get(frames_path)
    if store is None:
        store = _worker[frames_path] = FrameStore(frames_path)
    return to_gray(store.read(video_id))


def _failure(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"


def flow_one_opencv(task: tuple) -> tuple[str, object]:
    """One video's flow, quantised and compressed: (video id, PackedFlow or failure reason)."""
    video_id, frames_path, settings = task
    try:
        gray = _read_gray(frames_path, video_id)
        tvl1 = _worker.get("tvl1") or _worker.setdefault("tvl1", create_tvl1(settings.tvl1))
        return video_id, pack_flow(quantize_flow(flow_pairs_opencv(gray, settings.tvl1, tvl1),
                                                 settings.bound))
    except _READ_ERRORS as exc:
        return video_id, _failure(exc)


def compute_flow(frames: Path, video_ids: Sequence[str], out: Path, settings: FlowSettings,
                 workers: int = 1, progress: bool = True) -> FlowResult:
    """Compute the flow of ``video_ids`` (in the frame store ``frames``) into the store ``out``."""
    out, start = h5parts.store_target(out), time.perf_counter()
    rank, world = sharding.init()
    frames_id = store_identity(frames)
    # keyed by the frame store's content, not its path: a moved or re-checked-out store resumes
    scratch = h5parts.scratch_dir(out, {**settings.as_dict(), "frames": frames_id})
    if rank == 0:
        h5parts.prepare_scratch(out, scratch)
    sharding.barrier()                       # no rank writes before rank 0 cleaned the scratch
    chunks = h5parts.plan_chunks(video_ids, settings.videos_per_shard)
    done = h5parts.finished_shards(scratch)
    result, todo = FlowResult(rank=rank, world_size=world), []
    for chunk in sharding.share(chunks, rank, world):
        if chunk.name in done:
            result.reused += len(chunk.ids)
        else:
            todo += chunk.ids
    attrs = settings.root_attrs(frames_id)
    writer = h5parts.ShardWriter(scratch, chunks, attrs)
    try:
        with ProgressBar(len(todo), "flow", unit="videos", enabled=progress) as bar:
            def record(pairs: Optional[int]) -> None:
                """One video done: ``pairs`` computed, or None when it failed."""
                if pairs is not None:
                    result.computed += 1
                    result.pairs += pairs
                bar.advance(1, pairs=result.pairs)

            if settings.backend == "torch":
                _run_torch(frames, todo, writer, settings, result, record, world)
            else:
                tasks = [(vid, str(frames), settings) for vid in todo]
                if workers > 1 and len(tasks) > 1:
                    ctx = mp.get_context("forkserver")
                    with ctx.Pool(workers, initializer=_init_worker, initargs=(1,)) as pool:
                        for vid, outcome in pool.imap(flow_one_opencv, tasks, chunksize=1):
                            _write(writer, vid, outcome)
                            record(_pairs(outcome))
                else:
                    for task in tasks:
                        vid, outcome = flow_one_opencv(task)
                        _write(writer, vid, outcome)
                        record(_pairs(outcome))
    except BaseException:
        writer.abort()
        raise
    sharding.barrier()                       # every rank's shards are in place
    if rank == 0:
        summary = h5parts.finalise(scratch, out, chunks, attrs, settings.videos_per_shard)
    result.computed, result.pairs, result.reused = sharding.all_sum(
        [result.computed, result.pairs, result.reused])
    sharding.barrier()                       # the index is written
    if rank != 0:
        summary = h5parts.read_summary(out)
    result.videos, result.failures, result.store_id = summary.videos, summary.failures, summary.store_id
    result.without_pairs = sum(1 for n in summary.lengths.values() if n == 0)
    result.seconds = time.perf_counter() - start
    return result


def _pairs(outcome) -> Optional[int]:
    return outcome.shape[0] if isinstance(outcome, PackedFlow) else None


def _write(writer: h5parts.ShardWriter, video_id: str, outcome) -> None:
    if isinstance(outcome, PackedFlow):
        writer.add(video_id, outcome.shape[0], lambda g: write_packed_flow(g, outcome))
    else:
        writer.fail(video_id, outcome)


class _BackgroundWriter:
    """Writes packed results in order on one thread, so the thread that drives the device never
    compresses or writes; at most ``depth`` videos wait (bounded memory)."""

    def __init__(self, writer: h5parts.ShardWriter, depth: int = 4):
        self._writer, self._queue = writer, queue.Queue(maxsize=depth)
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="flow-writer", daemon=True)
        self._thread.start()

    def put(self, video_id: str, outcome: Future) -> None:
        self._queue.put((video_id, outcome))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:        # after an error keep draining: put() never blocks
                try:
                    _write(self._writer, item[0], item[1].result())
                except BaseException as exc:  # re-raised by close() in the driving thread
                    self._error = exc

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _run_torch(frames: Path, todo: list[str], writer: h5parts.ShardWriter, settings: FlowSettings,
               result: FlowResult, record, world: int) -> None:
    """Batched torch TV-L1 on this thread; the next videos are decoded on threads meanwhile."""
    from .torch_tvl1 import TorchTVL1

    solver = TorchTVL1(settings.tvl1, device=sharding.rank_device(settings.device, world),
                       check_every=settings.check_every,
                       compile=settings.compile)

    def load(video_id: str):
        try:
            return _read_gray(str(frames), video_id), None
        except _READ_ERRORS as exc:
            return None, _failure(exc)

    def done(outcome) -> Future:
        f: Future = Future()
        f.set_result(outcome)
        return f

    out = _BackgroundWriter(writer)
    try:
        with ThreadPoolExecutor(2) as loaders, ThreadPoolExecutor(2) as packers:
            futures = [loaders.submit(load, vid) for vid in todo[:2]]
            for i, video_id in enumerate(todo):
                gray, reason = futures[i].result()
                if i + 2 < len(todo):
                    futures.append(loaders.submit(load, todo[i + 2]))
                futures[i] = None
                if reason is None:
                    try:
                        flow, iters = solver.flow_pairs(gray, settings.batch_size)
                        result.iterations.extend(iters)
                    except _READ_ERRORS as exc:
                        reason = _failure(exc)
                if reason is None:
                    out.put(video_id, packers.submit(
                        lambda f: pack_flow(quantize_flow(f, settings.bound)), flow))
                    record(len(flow))
                else:
                    out.put(video_id, done(reason))
                    record(None)
    finally:
        out.close()
