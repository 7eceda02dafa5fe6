"""Benchmark: frames/s of `vsslpipe extract` beside two references on the same videos.

References, with the same videos, output size, JPEG quality and number of processes:
  * ceiling: ffmpeg's decode-only rate (``ffmpeg -i X -f null -``);
  * today's usual command: ffmpeg writing one JPEG file per frame.
ffmpeg's MJPEG ``-q:v`` scale is not libjpeg's quality scale: the script picks the ``-q:v``
whose mean JPEG size is closest to ours and prints both sizes, so the comparison is like for like.

    python bench/bench_extract.py [--videos 24 --frames 120 --width 320 --height 240 --workers 2]

Prints a table and writes bench/results/extract.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vsslpipe.data.framestore import FrameStore
from vsslpipe.data.manifest import read_folder
from vsslpipe.video.extract import ExtractSettings, extract_videos
from vsslpipe.video.ffmpeg import ffmpeg_binary, resized_size
from vsslpipe.video.synth import CLASSES, SynthSpec, write_video


def run_parallel(commands: list[list[str]], workers: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for result in pool.map(lambda c: subprocess.run(c, capture_output=True), commands):
            if result.returncode != 0:
                raise RuntimeError(result.stderr.decode()[-500:])
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--short-side", type=int, default=128)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/results/extract.json"))
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    spec = SynthSpec(num_classes=len(CLASSES), groups=1, clips_per_group=1, test_groups=0,
                     frames=args.frames, height=args.height, width=args.width)
    videos = tmp / "videos"
    for i in range(args.videos):
        write_video((spec, videos, i % len(CLASSES), CLASSES[i % len(CLASSES)], 1 + i // len(CLASSES), 1))
    manifest = read_folder(videos)
    paths = [videos / p for p in manifest["path"]]
    total_frames = args.videos * args.frames
    w, h = resized_size(args.width, args.height, args.short_side)
    ff = ffmpeg_binary()

    def ours() -> float:
        out = tmp / "frames"                   # a store folder
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        extract_videos(manifest, videos, out, ExtractSettings(args.short_side, None, args.quality),
                       workers=args.workers, progress=False)
        return time.perf_counter() - start

    def decode_only() -> float:
        return run_parallel([[ff, "-nostdin", "-loglevel", "error", "-threads", "1", "-i", str(p),
                              "-vf", f"scale={w}:{h}:flags=area", "-f", "null", "-"] for p in paths],
                            args.workers)

    def jpeg_files(q: int) -> tuple[float, int]:
        root = tmp / f"jpg{q}"
        shutil.rmtree(root, ignore_errors=True)
        cmds = []
        for p in paths:
            d = root / p.stem
            d.mkdir(parents=True)
            cmds.append([ff, "-nostdin", "-loglevel", "error", "-threads", "1", "-i", str(p), "-vf",
                         f"scale={w}:{h}:flags=area", "-fps_mode", "passthrough", "-q:v", str(q),
                         str(d / "%06d.jpg")])
        seconds = run_parallel(cmds, args.workers)
        size = sum(f.stat().st_size for f in root.rglob("*.jpg"))
        return seconds, size

    ours()  # warm-up (page cache, forkserver)
    store = FrameStore(tmp / "frames")
    our_bytes = sum(len(b) for vid in store.video_ids() for b in store.read_jpeg(vid))
    q_best = min(range(2, 8), key=lambda q: abs(jpeg_files(q)[1] - our_bytes))

    def best(fn):
        return min(fn() for _ in range(args.repeats))

    t_ours = best(ours)
    t_null = best(decode_only)
    t_jpeg = min(jpeg_files(q_best)[0] for _ in range(args.repeats))
    jpeg_bytes = jpeg_files(q_best)[1]
    results = {
        "videos": args.videos, "frames": total_frames, "input": f"{args.width}x{args.height}",
        "output": f"{w}x{h}", "workers": args.workers, "jpeg_quality": args.quality,
        "ffmpeg_qv_matched": q_best,
        "mean_jpeg_bytes": {"vsslpipe": our_bytes / total_frames, "ffmpeg_jpeg_files": jpeg_bytes / total_frames},
        "frames_per_s": {"vsslpipe_extract": total_frames / t_ours,
                         "ffmpeg_decode_only_ceiling": total_frames / t_null,
                         "ffmpeg_jpeg_files": total_frames / t_jpeg},
    }
    results["speedup_vs_jpeg_files"] = results["frames_per_s"]["vsslpipe_extract"] / results["frames_per_s"]["ffmpeg_jpeg_files"]
    print(f"{total_frames} frames ({args.videos} videos {args.width}x{args.height} -> {w}x{h}), "
          f"{args.workers} processes, best of {args.repeats}")
    for name, fps in results["frames_per_s"].items():
        print(f"  {name:28s} {fps:8.0f} frames/s")
    print(f"  mean JPEG bytes: ours {our_bytes / total_frames:.0f}, ffmpeg -q:v {q_best} "
          f"{jpeg_bytes / total_frames:.0f}; speed-up vs JPEG files x{results['speedup_vs_jpeg_files']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
