"""Speed of the CACL shuffle sampler: microseconds per call for each distance, and for uniform
shuffle-degree sampling (target: well under 1 ms on average).

    python bench/bench_shuffle.py [--frames 16] [--calls 2000]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vsslpipe.losses.shuffle import reachable_distances, sample_shuffle, sample_shuffle_degree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    per_distance = {}
    for distance in reachable_distances(args.frames):
        start = time.perf_counter()
        for _ in range(args.calls):
            sample_shuffle(args.frames, distance, rng)
        per_distance[distance] = (time.perf_counter() - start) / args.calls * 1e6
        print(f"distance {distance:3d}: {per_distance[distance]:8.1f} us/call")
    start = time.perf_counter()
    for _ in range(args.calls * 4):
        sample_shuffle_degree(args.frames, rng)
    uniform_us = (time.perf_counter() - start) / (args.calls * 4) * 1e6
    print(f"uniform shuffle-degree sampling: {uniform_us:.1f} us/call (mean over classes)")
    out = Path(__file__).parent / "results" / "bench_shuffle.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"frames": args.frames, "calls": args.calls,
                               "us_per_call_by_distance": per_distance,
                               "us_per_call_uniform": uniform_us}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
