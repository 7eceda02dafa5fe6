"""Benchmark: writing the frame and flow stores on a UCF101-shaped sample, and the end of the stage.

The sample (cached under ``--cache``): 60 MPEG-4 AVI videos at 320x240, 150-200 frames at 25
fps, camera pans and zooms over scikit-image's photographs with sensor noise (UCF101's look and
codec). Extraction runs at short side 128 with 2 workers; flow (opencv TV-L1, 2 workers) on 6
videos x 40 frames of the same kind. Per stage it reports frames (pairs)/s, bytes per frame
(pair), the *end-of-stage* seconds (from the last video's result reaching the writer to the
function returning: the merge before, the index and renames after) and the *peak disk* (the
output folder with its scratch, polled every 50 ms, 2 ms after the last video, by a process) relative to the finished store.
Reading is checked too: ms per 16-frame clip through ``FrameStore``, and after the change through
plain h5py on ``index.h5`` (external links: HDF5 reopens the shard at each traversal).

    python bench/bench_stores.py --label after      # stores_after.json, and stores.json with both
    python bench/bench_stores.py --label before     # on the code before shards (commit 5d7156b):

    mkdir -p /tmp/before && cp -r vsslpipe /tmp/before/ && for f in atomic.py data/h5parts.py \
      data/framestore.py data/flowstore.py video/extract.py flow/compute.py flow/sharding.py; do
      git show 5d7156b:vsslpipe/$f > /tmp/before/vsslpipe/$f; done
    cd /tmp && PYTHONPATH=/tmp/before python /work/main/bench/bench_stores.py --label before

(from a folder other than the repository, so that worker processes import the old code too).
Run the two alternately on this shared 2-core machine and compare the ratios of one pair.

Extrapolation to UCF101 (13,320 videos, 2.5 M frames, frame store ~17 GB at short side 128; flow
~2.5 M pairs) and Kinetics-400 (240 k videos, ~70 M frames):

* store bytes  B = frames x (bytes per frame measured here) (flow: pairs x bytes per pair);
* before: end-of-stage = (merge seconds per GB measured here) x B (the serial merge copies every
  byte once); peak disk = (peak ratio measured here) x B (every part plus the merged file).
  Flow's 0.8 MB sample merges in fixed overhead, so its rate comes from merging 100 videos x 190
  synthetic pairs with the old merge (``h5parts.merge_parts``, kept unchanged), per pair:
  end-of-stage = (merge seconds per pair) x pairs;
* after: end-of-stage is independent of B: it writes one index entry per video and renames the
  scratch folder, so it is measured directly by finalising a synthetic store with the target's
  number of videos and shards (``--index-videos``; tiny groups, same code path) and, for sizes not
  measured, scaled linearly in videos; peak disk = (peak ratio measured here) x B (the shards are
  the store: nothing is copied).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

import vsslpipe.flow.compute as flow_compute
import vsslpipe.video.extract as extract_mod
from vsslpipe.data.framestore import FrameStore
from vsslpipe.flow.compute import FlowSettings, compute_flow
from vsslpipe.progress import ProgressBar
from vsslpipe.video.extract import ExtractSettings, extract_videos
from vsslpipe.video.ffmpeg import encode_video

PICTURES = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
            "immunohistochemistry", "camera", "grass", "gravel", "brick"]
RESULTS = Path(__file__).resolve().parent / "results"
UCF101 = {"videos": 13_320, "frames": 2_500_000, "pairs": 2_500_000 - 13_320}
KINETICS = {"videos": 240_000, "frames": 70_000_000, "pairs": 70_000_000 - 240_000}


def _picture(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2BGR)


def render(picture: np.ndarray, frames: int, rng: np.random.Generator, w: int = 320,
           h: int = 240) -> np.ndarray:
    """A camera pan or zoom over ``picture``: (frames, h, w, 3) BGR uint8 with sensor noise."""
    ph, pw = picture.shape[:2]
    fit = min(pw / w, ph / h)                 # source px per output px when the view fills it
    zoom = rng.random() < 0.5
    s0 = fit * rng.uniform(0.55, 0.8)
    rate = rng.uniform(0.001, 0.003) * rng.choice([-1, 1]) if zoom else 0.0
    scales = s0 * (1 + rate) ** np.arange(frames)
    scales = np.minimum(scales, fit * 0.98)
    # the view stays inside the picture: pans travel at most the free margin
    free_x, free_y = pw - scales.max() * w, ph - scales.max() * h
    vx = 0.0 if zoom else rng.choice([-1, 1]) * min(3.0, rng.uniform(0.4, 0.9) * free_x / frames)
    vy = 0.0 if zoom else rng.uniform(-0.3, 0.3) * free_y / frames
    x0 = scales.max() * w / 2 + (free_x if vx < 0 else 0) * (0.95 if not zoom else 0.5)
    y0 = scales.max() * h / 2 + free_y * 0.5
    blurred = cv2.GaussianBlur(picture, (0, 0), 0.6 * s0)   # lens blur: no aliasing
    noise = rng.normal(0, 2.0, (7, h, w, 3)).astype(np.float32)   # cycled: cheap sensor noise
    out = np.empty((frames, h, w, 3), np.uint8)
    for i in range(frames):
        s, x, y = scales[i], x0 + vx * i, y0 + vy * i
        # output pixel (u, v) samples the picture at (x + s (u - w/2), y + s (v - h/2))
        m = np.float32([[s, 0, x - s * w / 2], [0, s, y - s * h / 2]])
        view = cv2.warpAffine(blurred, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT)
        out[i] = np.clip(view + noise[i % 7], 0, 255).astype(np.uint8)
    return out


def make_sample(root: Path, videos: int, lo: int, hi: int, seed: int) -> pd.DataFrame:
    """UCF101-layout AVIs under ``root`` (cached: reused when the listing exists)."""
    listing = root / "manifest.csv"
    if listing.is_file():
        return pd.read_csv(listing)
    rng = np.random.default_rng(seed)
    pictures = {n: _picture(n) for n in PICTURES}
    rows = []
    for i in range(videos):
        name = PICTURES[i % len(PICTURES)]
        cls = name.title().replace("_", "")
        vid = f"{cls}/v_{cls}_g{1 + i // len(PICTURES):02d}_c01"
        n = int(rng.integers(lo, hi + 1))
        path = root / "videos" / f"{vid}.avi"
        path.parent.mkdir(parents=True, exist_ok=True)
        encode_video(render(pictures[name], n, rng), path, 25.0, codec="mpeg4", quality=4)
        rows.append({"video_id": vid, "path": f"{vid}.avi", "class_name": cls,
                     "label": i % len(PICTURES), "split": "train", "group": "g01", "frames": n})
    table = pd.DataFrame(rows).sort_values("video_id").reset_index(drop=True)
    table.to_csv(listing, index=False)
    return table


def disk_bytes(path: Path) -> int:
    """Allocated bytes under ``path`` (a file or a folder)."""
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def _poll(folder: Path, every: float, done, fast, peak) -> None:
    while not done.is_set():
        peak.value = max(peak.value, disk_bytes(folder))
        # every 2 ms once the last video is in: a small store's merge lasts ~50 ms
        done.wait(0.002 if fast.value else every)


class PeakDisk:
    """Polls the disk used under a folder every ``every`` seconds in another process (a thread
    would wait for the GIL while h5py copies); ``stop()`` returns the maximum."""

    def __init__(self, folder: Path, every: float = 0.05):
        ctx = mp.get_context("fork")
        self._done, self.fast, self._peak = ctx.Event(), ctx.Value("b", 0), ctx.Value("q", 0)
        self._proc = ctx.Process(target=_poll, args=(folder, every, self._done, self.fast,
                                                     self._peak), daemon=True)
        self.folder = folder

    def start(self) -> None:
        self._proc.start()

    def stop(self) -> int:
        self._done.set()
        self._proc.join()
        return max(self._peak.value, disk_bytes(self.folder))


class LastAdvance(ProgressBar):
    """A silent progress bar that remembers when the last video's result arrived."""
    last, poller = 0.0, None

    def advance(self, n: int = 1, **postfix) -> None:
        super().advance(n, **postfix)
        LastAdvance.last = time.perf_counter()
        if self.total is not None and self.count >= self.total and LastAdvance.poller:
            LastAdvance.poller.fast.value = 1


def timed(module, fn, folder: Path) -> dict:
    """Run ``fn()`` watching ``folder``; seconds, end-of-stage seconds, peak and final bytes."""
    module.ProgressBar = LastAdvance
    poll = PeakDisk(folder)
    LastAdvance.last, LastAdvance.poller = 0.0, poll
    poll.start()
    start = time.perf_counter()
    result = fn()
    end = time.perf_counter()
    peak = poll.stop()
    final = disk_bytes(folder)
    return {"seconds": end - start, "end_of_stage_s": end - LastAdvance.last,
            "peak_bytes": peak, "store_bytes": final, "peak_ratio": peak / final, "result": result}


def read_clip_ms(store_path: Path, via_index: bool, clips: int = 300, seed: int = 0) -> float:
    """Mean ms to read the JPEG bytes of a random 16-frame clip (FrameStore, or plain h5py on
    index.h5 through its external links)."""
    import h5py

    store = FrameStore(store_path)
    ids = store.video_ids()
    rng = random.Random(seed)
    picks = [(v, rng.randrange(max(1, store.num_frames(v) - 16))) for v in
             (rng.choice(ids) for _ in range(clips))]
    if via_index:
        with h5py.File(store_path / "index.h5", "r") as f:
            start = time.perf_counter()
            for v, s in picks:
                f[v]["frames"][s:s + 16]
            return (time.perf_counter() - start) / clips * 1e3
    store.read_jpeg(*picks[0][:1])  # opens the handle(s) once, as a warm worker has them
    start = time.perf_counter()
    for v, s in picks:
        store.read_jpeg(v, s, s + 16)
    return (time.perf_counter() - start) / clips * 1e3


def single_file_copy(store_path: Path, out: Path) -> None:
    """The store as one file (the layout before shards), for reading both in one run."""
    import h5py

    store = FrameStore(store_path)
    with h5py.File(out, "w") as dst:
        dst.attrs.update({k: v for k, v in store.attrs.items() if k not in ("layout", "store_id")})
        for vid in store.video_ids():
            src = store._dataset(vid)
            dst.create_dataset(f"{vid}/frames", data=src[()], dtype=src.dtype)
        dst.create_dataset("video_ids", data=store.video_ids(), dtype=h5py.string_dtype())


def bench_flow_merge(videos: int, pairs: int, work: Path) -> dict:
    """The serial merge of the code before shards (``h5parts.merge_parts``, unchanged) on
    ``videos`` x ``pairs`` synthetic smooth flow fields at 170x128: seconds per pair and per GB."""
    from vsslpipe.data.flowstore import quantize_flow, write_flow_group
    from vsslpipe.data.h5parts import merge_parts, write_part

    rng = np.random.default_rng(0)
    parts = []
    for i in range(videos):
        base = cv2.resize(rng.normal(0, 4, (8, 11, 2)).astype(np.float32), (170, 128))
        drift = cv2.resize(rng.normal(0, 0.2, (8, 11, 2)).astype(np.float32), (170, 128))
        q = quantize_flow(base[None] + drift[None] * np.arange(pairs)[:, None, None, None])
        parts.append((f"C/v{i:04d}", write_part(work / "parts", f"C/v{i:04d}",
                                                lambda g, q=q: write_flow_group(g, q))))
    start = time.perf_counter()
    merge_parts(parts, work / "merged.h5", {"schema": "vsslpipe-flow"})
    seconds = time.perf_counter() - start
    size = (work / "merged.h5").stat().st_size
    shutil.rmtree(work, ignore_errors=True)
    return {"videos": videos, "pairs": videos * pairs, "bytes_per_pair": size / (videos * pairs),
            "merge_s": round(seconds, 3), "merge_s_per_pair": seconds / (videos * pairs),
            "merge_s_per_gb": seconds / (size / 1e9)}


def bench_extract(args, cache: Path, work: Path) -> dict:
    table = make_sample(cache / "sample", args.videos, 150, 200, seed=1)
    settings = ExtractSettings(short_side=args.short_side)
    runs = []
    for _ in range(args.repeats):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        runs.append(timed(extract_mod, lambda: extract_videos(
            table, cache / "sample" / "videos", work / "frames", settings, workers=args.workers,
            progress=False), work))
    best = min(runs, key=lambda r: r["seconds"])
    frames = best["result"].frames
    out = {"videos": len(table), "frames": frames, "workers": args.workers,
           "short_side": args.short_side, "frames_per_s": frames / best["seconds"],
           "bytes_per_frame": best["store_bytes"] / frames,
           "end_of_stage_s": [round(r["end_of_stage_s"], 3) for r in runs],
           "peak_ratio": [round(r["peak_ratio"], 4) for r in runs],
           "store_bytes": best["store_bytes"], "seconds": [round(r["seconds"], 2) for r in runs]}
    reads = {"FrameStore": read_clip_ms(work / "frames", False)}
    if (work / "frames").is_dir():          # after: the same clips through the index's links,
        reads["h5py_via_index_links"] = read_clip_ms(work / "frames", True)
        single_file_copy(work / "frames", work / "single.h5")   # and from one file, this run
        reads["FrameStore_single_file"] = read_clip_ms(work / "single.h5", False)
    out["read_ms_per_16_frame_clip"] = {k: round(v, 4) for k, v in reads.items()}
    return out


def bench_flow(args, cache: Path, work: Path) -> dict:
    table = make_sample(cache / "flow_sample", args.flow_videos, args.flow_frames,
                        args.flow_frames, seed=2)
    shutil.rmtree(work, ignore_errors=True)
    (work / "in").mkdir(parents=True)
    extract_videos(table, cache / "flow_sample" / "videos", work / "in" / "frames",
                   ExtractSettings(short_side=args.short_side), workers=args.workers, progress=False)
    (work / "out").mkdir()
    ids = sorted(table["video_id"])
    run = timed(flow_compute, lambda: compute_flow(
        work / "in" / "frames", ids, work / "out" / "flow", FlowSettings(backend="opencv"),
        workers=args.workers, progress=False), work / "out")
    pairs = run["result"].pairs
    return {"videos": len(ids), "pairs": pairs, "workers": args.workers, "backend": "opencv",
            "pairs_per_s": pairs / run["seconds"], "bytes_per_pair": run["store_bytes"] / pairs,
            "end_of_stage_s": round(run["end_of_stage_s"], 3),
            "peak_ratio": round(run["peak_ratio"], 4), "store_bytes": run["store_bytes"],
            "seconds": round(run["seconds"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--label", choices=["before", "after"], required=True)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "vsslpipe_bench_stores")
    ap.add_argument("--videos", type=int, default=60)
    ap.add_argument("--short-side", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--flow-videos", type=int, default=6)
    ap.add_argument("--flow-frames", type=int, default=40)
    ap.add_argument("--skip-flow", action="store_true")
    ap.add_argument("--index-videos", type=int, nargs="*", default=[UCF101["videos"], KINETICS["videos"]],
                    help="after: finalise synthetic stores of these many videos (end-of-stage)")
    ap.add_argument("--merge-videos", type=int, default=100,
                    help="after: videos x 190 pairs of synthetic flow merged the old way")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}")
    work = Path(tempfile.mkdtemp(prefix="bench_stores_"))
    try:
        results = {"label": args.label, "loadavg_start": os.getloadavg(),
                   "extract": bench_extract(args, args.cache, work / "extract")}
        print(json.dumps(results["extract"], indent=1))
        if not args.skip_flow:
            results["flow"] = bench_flow(args, args.cache, work / "flow")
            print(json.dumps(results["flow"], indent=1))
        if args.label == "after":
            from vsslpipe.data.h5parts import bench_finalise

            results["finalise_s"] = {str(n): round(bench_finalise(n, work / f"final{n}"), 3)
                                     for n in args.index_videos}
            print("finalise seconds by videos:", results["finalise_s"])
            results["flow_merge_before"] = bench_flow_merge(args.merge_videos, 190, work / "merge")
            print("flow merge (code before shards):", results["flow_merge_before"])
        results["loadavg_end"] = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"stores_{args.label}.json").write_text(json.dumps(results, indent=2) + "\n")
    before = RESULTS / "stores_before.json"
    if args.label == "after" and before.is_file():
        combined = combine(json.loads(before.read_text()), results)
        (RESULTS / "stores.json").write_text(json.dumps(combined, indent=2) + "\n")
        print(json.dumps(combined["extrapolated"], indent=1))


def combine(before: dict, after: dict) -> dict:
    """Before/after side by side and the extrapolation of the module docstring."""
    gb = 1e9
    out = {"measured": {"before": before, "after": after}, "extrapolated": {}}
    finals = {int(k): v for k, v in after.get("finalise_s", {}).items()}
    for name, target in (("ucf101", UCF101), ("kinetics400", KINETICS)):
        row = {}
        for stage, unit in (("extract", "frames"), ("flow", "pairs")):
            if stage not in before or stage not in after:
                continue
            b, a = before[stage], after[stage]
            per = f"bytes_per_{unit[:-1]}"
            size = target[unit] * a[per]
            b_end = np.median(np.atleast_1d(b["end_of_stage_s"]))
            merge_s_per_gb = b_end / (b["store_bytes"] / gb)
            if stage == "flow" and "flow_merge_before" in after:   # the 0.8 MB sample is all overhead
                m = after["flow_merge_before"]
                merge_s_per_gb = m["merge_s_per_pair"] * target[unit] / (target[unit] * b[per] / gb)
            n = min(finals, key=lambda k: abs(k - target["videos"])) if finals else None
            a_end = (finals[n] * target["videos"] / n) if n else float("nan")
            row[stage] = {
                "store_gb": round(size / gb, 1),
                "before": {"end_of_stage_s": round(merge_s_per_gb * target[unit] * b[per] / gb, 1),
                           "peak_gb": round(max(np.atleast_1d(b["peak_ratio"])) * target[unit] * b[per] / gb, 1),
                           "merge_s_per_gb": round(merge_s_per_gb, 2)},
                "after": {"end_of_stage_s": round(a_end, 1),
                          "peak_gb": round(max(np.atleast_1d(a["peak_ratio"])) * size / gb, 1),
                          "finalise_measured_at_videos": n}}
        out["extrapolated"][name] = row
    return out


if __name__ == "__main__":
    sys.exit(main())
