"""Loader throughput: CVRL two-clip samples decoded per second per worker (JPEG decode + read).

Default resolution: the demo store (data/frames.h5, 64x48, clip 8 x stride 2). Paper resolution:
a store of 171x128 JPEG frames made here (UCF101 as CoCLR/VCOP resize it), clip 16 x stride 2
and 32 x stride 1. The rate of one worker tells how many workers keep a GPU fed: workers needed
= GPU clips/s / (clips/s per worker). Writes bench/results/loader.json.

    python bench/bench_loader.py [--samples 60] [--frames data/frames.h5]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from vsslpipe.data.clips import ClipDataset
from vsslpipe.data.framestore import SCHEMA, encode_jpeg, write_video_group
from vsslpipe.data.h5parts import merge_parts, write_part
from vsslpipe.data.sampling import TwoClipSampler


def make_store(root: Path, videos: int = 8, frames: int = 64, size=(171, 128)) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(0)
    parts = []
    for v in range(videos):
        vid = f"Bench/v_{v:03d}"
        base = cv2.resize(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), size)
        jpegs = [encode_jpeg(np.roll(base, i, axis=1), 90) for i in range(frames)]
        parts.append((vid, write_part(root / "parts", vid, lambda g, j=jpegs: write_video_group(
            g, j, size[1], size[0], 25.0, vid))))
    path = root / "frames.h5"
    merge_parts(parts, path, {"schema": SCHEMA, "schema_version": 1})
    table = pd.DataFrame({"video_id": [p[0] for p in parts], "label": 0, "group": "g01", "split": "train"})
    return path, table


def rate(store: Path, table: pd.DataFrame, clip_len: int, stride: int, samples: int) -> float:
    ds = ClipDataset(table, {"rgb": store}, TwoClipSampler(clip_len, stride))
    ds[(0, 0)]  # open the file
    t0 = time.perf_counter()
    for i in range(samples):
        ds[(1, i % len(ds))]
    return samples / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--frames", default="data/frames.h5")
    ap.add_argument("--manifest", default="data/manifest.csv")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    results = {}
    table = pd.read_csv(args.manifest)
    table = table[table.split == "train"].sort_values("video_id")
    results["demo_64x48_clip8_stride2"] = rate(Path(args.frames), table, 8, 2, args.samples)
    with tempfile.TemporaryDirectory() as tmp:
        store, t = make_store(Path(tmp))
        results["paper_171x128_clip16_stride2"] = rate(store, t, 16, 2, args.samples)
        results["paper_171x128_clip32_stride1"] = rate(store, t, 32, 1, max(args.samples // 2, 4))
    for k, v in results.items():
        print(f"{k:32s} {v:8.1f} samples/s per worker (2 clips each)")
    out = Path("bench/results/loader.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"samples_per_s_per_worker": results}, indent=2))


if __name__ == "__main__":
    main()
