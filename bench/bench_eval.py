"""Evaluation cost: CPU seconds per video of export's data path (whole-video decode vs windows
only), export with a small encoder, fine-tuning's window reads, and the UCF101 extrapolation.

Usage: python bench/bench_eval.py [--videos 12] [--frames 180] [--repeats 2]
Writes bench/results/eval.json. The store is UCF101-shaped: 171x128 JPEG frames (quality 90,
as extract writes them), 180 frames per video, rendered by the built-in dataset's generator.
Protocols at paper settings: coclr (one middle window for the train split, sliding windows every
15 frames for test, 32x1 clips at 128 px) and vcop (10 clips of 16x2 at 112 px, both splits).

``whole`` is the pre-change reader kept here as the baseline (every frame decoded and converted
to float, then cut); ``windows`` is :mod:`vsslpipe.eval.clips` today, all of it on the CPU (what
a CPU-only export costs); ``windows_reader_only`` is the DataLoader workers' share of it (decode
and uint8 crop; on a GPU the device does the float work). All run in one process, one torch
thread, no workers, CPU time (``process_time``), so the ratios are what the change buys per core.
``ucf101_data_cpu_minutes`` extrapolates each to UCF101 split 1 (9,537 train + 3,783 test).
Retrieval and the linear probe are timed on UCF101-sized random features.

:func:`export_check` is what ``bench/gpu_check.py`` calls: export videos/s of a paper-shaped
encoder, with clips already on the device and through the real loader.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsslpipe.eval.clips import VideoSource, WindowedVideos, cut_window, eval_view  # noqa: E402
from vsslpipe.eval.export import encode_videos  # noqa: E402
from vsslpipe.eval.protocols import get_protocol, window_starts  # noqa: E402

UCF101 = {"train": 9537, "test": 3783}   # split 1
PAPER = {"coclr": {"clip_len": 32, "stride": 1, "size": 128},
         "vcop": {"clip_len": 16, "stride": 2, "size": 112}}


def write_frame_store(path: Path, videos: dict[str, list[np.ndarray]], height: int, width: int) -> None:
    """A single-file frame store (schema version 1, which FrameStore keeps reading), written with
    plain h5py so the bench does not depend on the store writer's internals."""
    with h5py.File(path, "w") as f:
        f.attrs.update(schema="vsslpipe-frames", schema_version=1, settings="{}")
        for vid, jpegs in sorted(videos.items()):
            data = np.empty(len(jpegs), dtype=object)
            data[:] = jpegs
            ds = f.create_dataset(f"{vid}/frames", data=data, dtype=h5py.vlen_dtype(np.uint8))
            ds.attrs.update(num_frames=len(jpegs), height=height, width=width, fps=25.0, source=vid)
        f.create_dataset("video_ids", data=sorted(videos), dtype=h5py.string_dtype("utf-8"))


def synthetic_videos(n: int, frames: int, height: int, width: int, quality: int = 90,
                     seed: int = 0) -> dict[str, list[np.ndarray]]:
    """JPEG frames of the built-in dataset's renderer (textured background, moving object)."""
    from vsslpipe.video.synth import CLASSES, SynthSpec, render_video

    spec = SynthSpec(frames=frames, height=height, width=width, seed=seed)
    out = {}
    for i in range(n):
        cls = CLASSES[i % len(CLASSES)]
        bgr = render_video(cls, spec, np.random.default_rng([seed, i]), np.random.default_rng([seed, i, 1]))
        out[f"{cls}/v_{cls}_g{i + 1:02d}_c01"] = [
            cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].reshape(-1) for f in bgr]
    return out


class NullEncoder(nn.Module):
    """Per-clip channel means: next to no compute, so the data path's cost is what is timed."""
    in_channels, feature_dim = 3, 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4))


def whole_video_clips(source: VideoSource, video_id: str, clip: dict, starts_fn,
                      crop_fraction: float) -> torch.Tensor:
    """The pre-change reader: decode and normalise every frame, then cut and crop windows."""
    from vsslpipe.data.modality import normalize_rgb

    x = torch.from_numpy(source.store.read(video_id)).permute(3, 0, 1, 2).float()[None]
    video = normalize_rgb(x / 255.0)[0]
    span = (clip["clip_len"] - 1) * clip["stride"] + 1
    return torch.stack([eval_view(cut_window(video, s, clip["clip_len"], clip["stride"]),
                                  clip["size"], crop_fraction)
                        for s in starts_fn(video.shape[1], span)])


def _starts(protocol, mode):
    return functools.partial(window_starts, mode=mode, step=protocol.window_step,
                             num_clips=protocol.num_clips)


def time_split(source, ids, protocol_name, mode, encoder, repeats) -> dict:
    """Best-of-``repeats`` seconds per video: the whole-video baseline and today's export."""
    protocol, clip = get_protocol(protocol_name), PAPER[protocol_name]
    starts = _starts(protocol, mode)
    best = {"whole": np.inf, "windows": np.inf, "windows_reader_only": np.inf}
    dataset = WindowedVideos(source, ids, clip, starts, protocol.crop_fraction)
    for _ in range(repeats):
        t0 = time.process_time()
        for vid in ids:
            encoder(whole_video_clips(source, vid, clip, starts, protocol.crop_fraction))
        best["whole"] = min(best["whole"], (time.process_time() - t0) / len(ids))
        t0 = time.process_time()
        encode_videos(encoder, dataset, protocol, torch.device("cpu"), 64, 0, desc="bench")
        best["windows"] = min(best["windows"], (time.process_time() - t0) / len(ids))
        if hasattr(dataset, "to_input"):   # the worker's share: uint8 windows, no float work
            t0 = time.process_time()
            for i in range(len(dataset)):
                dataset[i]
            best["windows_reader_only"] = min(best["windows_reader_only"],
                                              (time.process_time() - t0) / len(ids))
    return {k: round(v, 4) for k, v in best.items() if np.isfinite(v)}


def bench_protocols(store: Path, ids: list[str], repeats: int, width: int) -> dict:
    from vsslpipe.models import build_backbone

    source = VideoSource("rgb", store)
    tiny = build_backbone("tiny3d", in_channels=3, width=width).eval()
    results = {}
    for name in PAPER:
        protocol = get_protocol(name)
        row = {"clip": PAPER[name]}
        for split, mode in (("train", protocol.train_windows), ("test", protocol.test_windows)):
            with torch.no_grad():
                row[split] = {"data_cpu_s_per_video": time_split(source, ids, name, mode, NullEncoder(), repeats),
                              f"export_tiny3d_w{width}_cpu_s_per_video": time_split(source, ids, name, mode, tiny, 1)}
        kinds = row["train"]["data_cpu_s_per_video"].keys()
        minutes = {k: round(sum(row[s]["data_cpu_s_per_video"][k] * n for s, n in UCF101.items()) / 60, 1)
                   for k in kinds}
        row["ucf101_data_cpu_minutes"] = {
            **minutes, **{f"whole_over_{k}": round(minutes["whole"] / max(minutes[k], 1e-9), 2)
                          for k in kinds if k != "whole"}}
        results[name] = row
    return results


def bench_finetune_reads(store: Path, ids: list[str], repeats: int) -> dict:
    """CPU seconds per training sample of fine-tuning's reader (one random window per video)."""
    from vsslpipe.eval.finetune import RandomClips

    source = VideoSource("rgb", store)
    data = RandomClips(source, ids, np.zeros(len(ids), np.int64), PAPER["vcop"], seed=0)
    best = np.inf
    for _ in range(repeats):
        t0 = time.process_time()
        for i in range(len(ids)):
            data[i]
        best = min(best, (time.process_time() - t0) / len(ids))
    return {"clip": PAPER["vcop"], "cpu_s_per_sample": round(best, 4)}


def bench_retrieval_probe(dim: int = 512, classes: int = 101, seed: int = 0) -> dict:
    """Seconds of retrieval (R@k over the test split) and the linear probe on UCF101-sized
    features (split 1: 9,537 training and 3,783 test videos), class clusters in noise."""
    from vsslpipe.eval.linear import linear_probe
    from vsslpipe.eval.retrieval import prepare, recall_at_k, search

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    sets = {}
    for split, n in UCF101.items():
        labels = rng.integers(0, classes, n)
        sets[split] = (centres[labels] + 8.0 * rng.normal(size=(n, dim)).astype(np.float32), labels)
    (xtr, ytr), (xte, yte) = sets["train"], sets["test"]
    t0 = time.perf_counter()
    db, q = prepare([xtr], [xte], True)
    _, idx = search(db, q, 50)
    recall = recall_at_k(yte, ytr[idx], [1, 5, 10, 20, 50])
    retrieve_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    groups = [f"g{i % 25:02d}" for i in range(len(ytr))]
    probe = linear_probe(xtr, ytr, xte, yte, classes, [1e-3, 1e-2], groups)
    return {"dim": dim, "retrieve_s": round(retrieve_s, 3), "R@1": round(recall["R@1"], 1),
            "linear_s_two_weight_decays": round(time.perf_counter() - t0, 2),
            "linear_top1": round(probe.top1, 1)}


def export_check(device: str | torch.device = "cpu", quick: bool = False) -> dict:
    """Export videos/s for a paper-shaped encoder and protocol (R3D-18, vcop: 10 clips of 16x2 at
    112 px from 171x128 JPEG frames), through the real path (frame store -> DataLoader workers ->
    pinned memory -> device, bf16 autocast on CUDA) and with clips already on the device (the
    encoder's own rate: what the loader must keep up with). ``quick``: tiny3d on small frames,
    seconds on a CPU (the test suite runs it so the check never rots)."""
    from vsslpipe.eval.export import autocast, export_splits, prepare_model
    from vsslpipe.models import build_backbone

    device = torch.device(device)
    if quick:
        n, frames, (h, w), arch, kwargs = 4, 24, (48, 64), "tiny3d", {"width": 4}
        clip = {"clip_len": 8, "stride": 2, "size": 32}
    else:
        n, frames, (h, w), arch, kwargs, clip = 384, 180, (128, 171), "r3d_18", {}, PAPER["vcop"]
    protocol, batch = get_protocol("vcop"), 64
    encoder = prepare_model(build_backbone(arch, in_channels=3, **kwargs), device)
    workers = 0 if quick else min(8, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "frames.h5"
        looks = synthetic_videos(min(n, 4), frames, h, w)   # decoding costs the same for copies
        names = sorted(looks)
        videos = {f"V/v_V_g{i + 1:03d}_c01": looks[names[i % len(names)]] for i in range(n)}
        write_frame_store(store, videos, h, w)
        ids = sorted(videos)
        manifest = pd.DataFrame({"video_id": ids, "label": 0, "group": "",
                                 "split": ["train" if i % 2 else "test" for i in range(n)]})
        warm = manifest.iloc[:2].assign(split=["train", "test"])
        export_splits(encoder, "rgb", store, warm, protocol, clip, device, batch, 0)  # kernels, autotuning
        _sync(device)
        t0 = time.perf_counter()
        export_splits(encoder, "rgb", store, manifest, protocol, clip, device, batch, workers)
        _sync(device)
        loader_s = time.perf_counter() - t0
    fmt = torch.channels_last_3d if device.type == "cuda" else torch.contiguous_format
    x = torch.randn(batch, 3, clip["clip_len"], clip["size"], clip["size"], device=device)
    x = x.to(memory_format=fmt)
    n_batches = -(-n * protocol.num_clips // batch)
    with torch.no_grad(), autocast(device):
        encoder(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n_batches):
            encoder(x)
        _sync(device)
        on_device_s = time.perf_counter() - t0
    return {"encoder": arch, "protocol": "vcop", "clip": clip, "frames": [frames, h, w],
            "videos": n, "clips_per_video": protocol.num_clips, "batch_size": batch,
            "workers": workers, "device": str(device), "bf16": device.type == "cuda",
            "videos_per_s_on_device": round(n / on_device_s, 1),
            "videos_per_s_loader": round(n / loader_s, 1),
            "loader_share_of_device_rate": round(on_device_s / loader_s, 3)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--frames", type=int, default=180)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--width", type=int, default=8, help="tiny3d width of the small encoder")
    ap.add_argument("--out", type=Path, default=Path("bench/results/eval.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "frames.h5"
        videos = synthetic_videos(args.videos, args.frames, 128, 171)
        write_frame_store(store, videos, 128, 171)
        ids = sorted(videos)
        result = {"videos": args.videos, "frames": args.frames, "frame_size": [128, 171],
                  "jpeg_kb_per_frame": round(np.mean([len(b) for v in videos.values() for b in v]) / 1024, 1),
                  "load_avg_before": [round(v, 2) for v in load], "torch_threads": 1,
                  "protocols": bench_protocols(store, ids, args.repeats, args.width),
                  "finetune_reader": bench_finetune_reads(store, ids, args.repeats),
                  "retrieval_probe_ucf101_sized": bench_retrieval_probe(),
                  "export_check_quick_cpu": export_check("cpu", quick=True)}
    result["load_avg_after"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
