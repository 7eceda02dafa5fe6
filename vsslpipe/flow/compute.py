"""Frame store -> flow store: parallel (opencv) or batched (torch), resumable, kill-safe.

Each video becomes its own part file (``vsslpipe.data.h5parts``) that appears atomically, so a
killed run resumes where it stopped and never trusts a half-written video; the parts are merged
in sorted order, so the store does not depend on the order work finished in. A video with one
frame has no pairs: it is stored with an empty ``flow`` dataset (0, H, W, 2), so the flow store
lists the same videos as the frame store, and it is counted in ``videos_without_pairs``. A video
that cannot be read (corrupt JPEG, missing group) is listed in ``<out stem>.failures.csv``.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from .. import __version__
from ..data import h5parts
from ..data.flowstore import SCHEMA, SCHEMA_VERSION, quantize_flow, write_flow_group
from ..data.framestore import FrameStore
from ..errors import VsslpipeError
from ..progress import ProgressBar
from ..video.extract import failures_path, write_failures
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

    def as_dict(self) -> dict:
        """What determines the stored values (hashed for resume; stored in the attributes)."""
        d = {"backend": self.backend, "bound": self.bound, "tvl1": self.tvl1.as_dict(),
             "opencv_version": opencv_version()}
        if self.backend == "torch":
            import torch
            d.update(torch_version=str(torch.__version__), device=self.device)
        return d

    def root_attrs(self, shard: Optional[str] = None) -> dict:
        attrs = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "algorithm": ALGORITHM,
                 "parameters": json.dumps(self.tvl1.as_dict(), sort_keys=True),
                 "bound": float(self.bound), "backend": self.backend,
                 "opencv_version": opencv_version(), "vsslpipe_version": __version__}
        if self.backend == "torch":
            import torch
            attrs.update(torch_version=str(torch.__version__))
        if shard:
            attrs["shard"] = shard
        return attrs


@dataclass
class FlowResult:
    videos: int = 0                # videos in the store
    computed: int = 0              # videos computed in this run
    reused: int = 0                # finished parts of an interrupted run
    without_pairs: int = 0         # single-frame videos (stored with zero pairs)
    pairs: int = 0                 # pairs computed in this run
    seconds: float = 0.0
    iterations: list[int] = field(default_factory=list)  # torch: iterations each pair ran
    failures: list[tuple[str, str]] = field(default_factory=list)

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


def _write(scratch: str, video_id: str, flow: np.ndarray, bound: float) -> None:
    q = quantize_flow(flow, bound)
    h5parts.write_part(Path(scratch), video_id, lambda g: write_flow_group(g, q))


def flow_one_opencv(task: tuple) -> tuple[str, int, Optional[str]]:
    """Compute one video's flow into its part file; returns (video id, pairs, failure or None)."""
    video_id, frames_path, scratch, settings = task
    try:
        gray = _read_gray(frames_path, video_id)
        tvl1 = _worker.get("tvl1") or _worker.setdefault("tvl1", create_tvl1(settings.tvl1))
        flow = flow_pairs_opencv(gray, settings.tvl1, tvl1)
        _write(scratch, video_id, flow, settings.bound)
        return video_id, len(flow), None
    except _READ_ERRORS as exc:
        return video_id, 0, f"{exc.__class__.__name__}: {exc}"


def compute_flow(frames: Path, video_ids: Sequence[str], out: Path, settings: FlowSettings,
                 workers: int = 1, shard: Optional[str] = None,
                 progress: bool = True) -> FlowResult:
    """Compute the flow of ``video_ids`` (in the frame store ``frames``) into the store ``out``."""
    out, start = Path(out), time.perf_counter()
    scratch = h5parts.scratch_dir(out, {**settings.as_dict(), "frames": str(Path(frames).resolve())})
    h5parts.prepare_scratch(scratch)
    done = h5parts.finished_parts(scratch)
    result, parts, todo = FlowResult(), [], []
    for video_id in video_ids:
        part = h5parts.part_path(scratch, video_id)
        parts.append((video_id, part))
        if part in done:
            result.reused += 1
        else:
            todo.append(video_id)

    failed: dict[str, str] = {}
    with ProgressBar(len(todo), "flow", unit="videos", enabled=progress) as bar:
        def record(video_id: str, n: int, reason: Optional[str]) -> None:
            if reason is None:
                result.computed += 1
                result.pairs += n
            else:
                failed[video_id] = reason
            bar.advance(1, pairs=result.pairs)

        if settings.backend == "torch":
            _run_torch(frames, todo, scratch, settings, result, record)
        else:
            tasks = [(vid, str(frames), str(scratch), settings) for vid in todo]
            if workers > 1 and len(tasks) > 1:
                ctx = mp.get_context("forkserver")
                with ctx.Pool(workers, initializer=_init_worker, initargs=(1,)) as pool:
                    for outcome in pool.imap_unordered(flow_one_opencv, tasks, chunksize=1):
                        record(*outcome)
            else:
                for task in tasks:
                    record(*flow_one_opencv(task))

    good = [(vid, part) for vid, part in parts if vid not in failed]
    result.videos = h5parts.merge_parts(good, out, settings.root_attrs(shard))
    result.without_pairs = _count_empty(out)
    result.failures = sorted(failed.items())
    write_failures(failures_path(out), result.failures)
    h5parts.remove_scratch(scratch)
    result.seconds = time.perf_counter() - start
    return result


def _run_torch(frames: Path, todo: list[str], scratch: Path, settings: FlowSettings,
               result: FlowResult, record) -> None:
    """Batched torch TV-L1 in this process; the next videos are decoded on threads meanwhile."""
    from .torch_tvl1 import TorchTVL1

    solver = TorchTVL1(settings.tvl1, device=settings.device, compile=settings.compile)

    def load(video_id: str):
        try:
            return _read_gray(str(frames), video_id), None
        except _READ_ERRORS as exc:
            return None, f"{exc.__class__.__name__}: {exc}"

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(load, vid) for vid in todo[:2]]
        for i, video_id in enumerate(todo):
            gray, reason = futures[i].result()
            if i + 2 < len(todo):
                futures.append(pool.submit(load, todo[i + 2]))
            futures[i] = None
            if reason is None:
                try:
                    flow, iters = solver.flow_pairs(gray, settings.batch_size)
                    _write(str(scratch), video_id, flow, settings.bound)
                    result.iterations.extend(iters)
                except _READ_ERRORS as exc:
                    reason = f"{exc.__class__.__name__}: {exc}"
            record(video_id, 0 if reason else max(len(gray) - 1, 0), reason)


def _count_empty(out: Path) -> int:
    import h5py
    with h5py.File(out, "r") as f:
        return sum(1 for vid in f[h5parts.INDEX_DATASET].asstr()[()] if f[vid]["flow"].shape[0] == 0)

