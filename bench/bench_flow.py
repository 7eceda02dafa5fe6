"""Benchmark the flow backends at 240x320: pairs/s on the same CPU cores, iterations, agreement.

Prints a table and writes bench/results/flow.json. Keep it short on a shared machine:
    python bench/bench_flow.py --pairs 4 --threads 2 [--compile]
GPU figures are analytic estimates (no GPU here): bytes of memory traffic and FLOPs per pair that
the iteration implies, from the iterations each pair actually ran, and the H100 pairs/s they bound.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing as mp
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch

from vsslpipe.data.flowstore import dequantize_flow, quantize_flow, write_flow_group
from vsslpipe.data.framestore import decode_jpeg, encode_jpeg
from vsslpipe.flow.opencv_backend import create_tvl1, flow_pairs_opencv
from vsslpipe.flow.params import TVL1Params
from vsslpipe.flow.torch_tvl1 import TorchTVL1, pyramid_sizes
from vsslpipe.video.synth import CLASSES, SynthSpec, render_video

H100_BYTES_PER_S = 3.35e12      # HBM3 bandwidth, H100 SXM
H100_FP32_FLOPS = 67e12         # non-tensor FP32 peak, H100 SXM
# Per pixel of a level, float32, one fused kernel per step (each value read/written once):
FUSED_BYTES_ITER = 16 * 4       # inner iteration: read u1,u2,p11..p22,Ix,Iy,grad,rho_c; write u,p
FLOPS_ITER = 58                 # thresholding ~14, divergence 6, u 4, error 6, gradient 4, duals 24
FUSED_BYTES_MEDIAN = 4 * 4      # median of u1, u2 (5x5 taps from cache)
FUSED_BYTES_WARP = 12 * 4       # remap of I1, Ix, Iy (+ u1, u2), write Iw, Ix, Iy, grad, rho_c
EAGER_KERNELS_ITER = 45         # element-wise ops of one eager iteration (each a memory pass)


def pairs_at(height: int, width: int, n: int) -> np.ndarray:
    """``n`` consecutive grey frame pairs of the project's synthetic videos rendered at HxW."""
    spec = SynthSpec(height=height, width=width, frames=n + 1)
    frames = render_video(CLASSES[4], spec, np.random.default_rng(1), np.random.default_rng(2))
    return np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames])


def _cv_worker(args):
    cv2.setNumThreads(1)
    i0, i1 = args
    return create_tvl1(TVL1Params()).calc(i0, i1, None)


def agreement(ref, flow):
    qa, qb = quantize_flow(ref), quantize_flow(flow)
    epe = np.linalg.norm(dequantize_flow(qa) - dequantize_flow(qb), axis=-1).mean()
    return float(epe), float((np.abs(qa.astype(int) - qb) <= 1).mean())


def analytic(level_iters: list[np.ndarray], sizes: list[tuple[int, int]], prm: TVL1Params) -> dict:
    """Bytes and FLOPs per pair implied by the iterations each pair ran (coarse -> fine levels)."""
    iters = np.stack(level_iters)                       # (levels, pairs), coarsest first
    pixels = np.array([h * w for h, w in sizes[::-1]], float)[:, None]
    medians = np.ceil(iters / prm.inner_iterations) + prm.warps  # one per outer iteration
    fused = (iters * FUSED_BYTES_ITER + medians * FUSED_BYTES_MEDIAN
             + prm.warps * FUSED_BYTES_WARP) * pixels
    flops = iters * FLOPS_ITER * pixels
    eager = iters * EAGER_KERNELS_ITER * 3 * 4 * pixels   # ~3 tensors touched per kernel
    b_fused, b_eager, f = fused.sum(0).mean(), eager.sum(0).mean(), flops.sum(0).mean()
    return {"bytes_per_pair_fused": b_fused, "bytes_per_pair_eager": b_eager,
            "flops_per_pair": f,
            "h100_pairs_per_s_bound_fused": min(H100_BYTES_PER_S / b_fused, H100_FP32_FLOPS / f),
            "h100_pairs_per_s_bound_eager": H100_BYTES_PER_S / b_eager}


def io_cost(gray: np.ndarray, flow: np.ndarray, repeats: int = 3) -> dict:
    """CPU seconds per pair of the stage's non-TV-L1 work: JPEG decode, quantise + gzip write."""
    jpeg = encode_jpeg(cv2.cvtColor(gray[0], cv2.COLOR_GRAY2BGR), 90)
    t0 = time.perf_counter()
    for _ in range(repeats * 10):
        cv2.cvtColor(decode_jpeg(jpeg), cv2.COLOR_RGB2GRAY)
    decode = (time.perf_counter() - t0) / (repeats * 10)
    t0 = time.perf_counter()
    for _ in range(repeats):
        with h5py.File(io.BytesIO(), "w") as f:
            write_flow_group(f.create_group("v"), quantize_flow(flow))
    write = (time.perf_counter() - t0) / repeats / len(flow)
    return {"decode_s_per_frame": decode, "quantise_write_s_per_pair": write}


def agreement_elsewhere(frames_path: Path, videos: int) -> dict:
    """torch vs OpenCV on the project's synthetic videos (frame store) and on a real image pair."""
    out, prm, solver = {}, TVL1Params(), TorchTVL1()
    if videos and frames_path.is_file():
        from vsslpipe.data.framestore import FrameStore
        from vsslpipe.flow.opencv_backend import to_gray
        store = FrameStore(frames_path)
        refs, flows = [], []
        for vid in store.video_ids()[::max(1, len(store.video_ids()) // videos)][:videos]:
            gray = to_gray(store.read(vid))
            refs.append(flow_pairs_opencv(gray, prm))
            flows.append(solver.flow_pairs(gray)[0])
        epe, within = agreement(np.concatenate(refs), np.concatenate(flows))
        out.update(synthetic_store_pairs=sum(map(len, refs)), synthetic_epe_vs_opencv=epe,
                   synthetic_within1_vs_opencv=within)
    try:
        from skimage import data
    except ImportError:
        return out
    left, right, _ = data.stereo_motorcycle()   # a real scene (Middlebury), horizontal motion
    for h, w in ((72, 96), (96, 128)):
        gray = np.stack([cv2.resize(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), (w, h),
                                    interpolation=cv2.INTER_AREA) for x in (left, right)])
        ref = flow_pairs_opencv(gray, prm)
        epe, within = agreement(ref, solver.flow_pairs(gray)[0])
        # OpenCV against itself with +-0.001 grey-level input noise: how stable the pair is
        noisy = (gray + np.random.default_rng(0).uniform(-1e-3, 1e-3, gray.shape)) / 255
        tvl1 = create_tvl1(prm)
        self_epe, self_within = agreement(ref, tvl1.calc(noisy[0].astype(np.float32),
                                                         noisy[1].astype(np.float32), None)[None])
        out[f"motorcycle_{h}x{w}"] = {
            "max_abs_flow_px": float(np.abs(ref).max()), "torch_epe_vs_opencv": epe,
            "torch_within1_vs_opencv": within, "opencv_noisy_input_epe": self_epe,
            "opencv_noisy_input_within1": self_within}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2, help="CPU cores both backends get")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd iterations")
    ap.add_argument("--frames", type=Path, default=Path("data/frames.h5"),
                    help="frame store whose videos also measure agreement (skipped if missing)")
    ap.add_argument("--videos", type=int, default=4, help="videos of --frames to compare (0: none)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "flow.json")
    args = ap.parse_args()
    prm, n = TVL1Params(), args.pairs
    gray = pairs_at(args.height, args.width, n)
    res: dict = {"pairs": n, "size": [args.height, args.width], "threads": args.threads,
                 "opencv_version": cv2.__version__, "torch_version": str(torch.__version__)}

    cv2.setNumThreads(args.threads)                      # plain loop, OpenCV's own threading
    t0 = time.perf_counter()
    ref = flow_pairs_opencv(gray, prm)
    res["opencv_loop_pairs_per_s"] = n / (time.perf_counter() - t0)
    # the stage's mode: processes x 1 OpenCV thread (pool started and warmed outside the timing)
    with mp.get_context("forkserver").Pool(args.threads) as pool:
        small = cv2.resize(gray[0], (32, 24))
        pool.map(_cv_worker, [(small, small)] * args.threads, chunksize=1)
        t0 = time.perf_counter()
        pool.map(_cv_worker, [(gray[i], gray[i + 1]) for i in range(n)], chunksize=1)
        res["opencv_processes_pairs_per_s"] = n / (time.perf_counter() - t0)

    torch.set_num_threads(args.threads)
    for mode in ["eager"] + (["compiled"] if args.compile else []):
        solver = TorchTVL1(prm, compile=mode == "compiled")
        if mode == "compiled":                           # compile (every shape) outside the timing
            t0 = time.perf_counter()
            solver.flow_pairs(gray, batch_size=n)
            res["torch_compile_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        flow, iters = solver.flow_pairs(gray, batch_size=n)
        res[f"torch_{mode}_pairs_per_s"] = n / (time.perf_counter() - t0)
        epe, within = agreement(ref, flow)
        res[f"torch_{mode}_epe_vs_opencv"], res[f"torch_{mode}_within1_vs_opencv"] = epe, within
    res["iterations_per_pair"] = iters
    res["iterations_if_never_converged"] = len(pyramid_sizes(args.height, args.width, prm)) * prm.warps \
        * prm.inner_iterations * prm.outer_iterations
    res.update(analytic(solver.level_iterations, pyramid_sizes(args.height, args.width, prm), prm))
    res.update(io_cost(gray, flow))
    cpu_per_pair = res["decode_s_per_frame"] + res["quantise_write_s_per_pair"]
    res["cpu_cores_for_700_pairs_per_s_io"] = math.ceil(700 * cpu_per_pair)
    res.update(agreement_elsewhere(args.frames, args.videos))
    res["note"] = ("H100 figures are estimates from bytes/FLOPs per pair (3.35 TB/s, 67 TFLOP/s "
                   "FP32), not measurements; 'fused' assumes each iteration is one kernel "
                   "(torch.compile), 'eager' ~45 element-wise kernels per iteration.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    for k, v in res.items():
        print(f"{k:40s} {v:.4g}" if isinstance(v, float) else f"{k:40s} {v}")


if __name__ == "__main__":
    main()
