"""Benchmark the flow backends: speed on the same CPU cores, agreement, GPU estimates.

Prints a table and writes bench/results/flow.json. Keep it short on a shared machine:
    python bench/bench_flow.py --pairs 4 --threads 2 [--compile]
Frames: natural pairs (camera pan/zoom/turn over scikit-image's photographs, bench/tvl1_check.py)
at 320x240 by default. Measured: OpenCV vs torch pairs/s in one run, repeated and interleaved (wall
and CPU time: the cores are shared), agreement of float32 and float64 warping with OpenCV next to
OpenCV's own change under +-1e-3 grey-level input noise, and the cost of checking convergence every
N iterations (frozen pair-iterations, host reads) on 170x128 pairs. GPU figures are analytic
estimates (no GPU here): memory traffic and FLOPs per pair from the iterations each pair ran.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tvl1_check import natural_pairs  # noqa: E402

from vsslpipe.data.flowstore import dequantize_flow, quantize_flow, write_flow_group  # noqa: E402
from vsslpipe.data.framestore import decode_jpeg, encode_jpeg  # noqa: E402
from vsslpipe.flow.opencv_backend import create_tvl1, flow_pairs_opencv  # noqa: E402
from vsslpipe.flow.params import TVL1Params  # noqa: E402
from vsslpipe.flow.torch_tvl1 import TorchTVL1, pyramid_sizes  # noqa: E402

H100_BYTES_PER_S = 3.35e12      # HBM3 bandwidth, H100 SXM
H100_FP32_FLOPS = 67e12         # non-tensor FP32 peak, H100 SXM
# Per pixel of a level, float32, one fused kernel per step (each value read/written once):
FUSED_BYTES_ITER = 16 * 4       # inner iteration: read u1,u2,p11..p22,Ix,Iy,grad,rho_c; write u,p
FLOPS_ITER = 58                 # thresholding ~14, divergence 6, u 4, error 6, gradient 4, duals 24
FUSED_BYTES_MEDIAN = 4 * 4      # median of u1, u2 (5x5 taps from cache)
FUSED_BYTES_WARP = 12 * 4       # remap of I1, Ix, Iy (+ u1, u2), write Iw, Ix, Iy, grad, rho_c
EAGER_KERNELS_ITER = 56         # kernels of one eager iteration (tvl1_step: each a memory pass)
# Host-side estimates for the check-every-N model (not measured on a GPU):
SYNC_S = 20e-6                  # blocking read of the flags: round trip + GPU idle while refilling
HOST_EAGER_STEP_S = EAGER_KERNELS_ITER * 6e-6  # Python + launch per eager iteration (~6 us per op)
HOST_FUSED_STEP_S = 30e-6       # a compiled iteration: guards + a few launches
MODEL_BATCH = 256               # pairs per batch on a GPU at 170x128


def check_every_model(warps: list[tuple[int, np.ndarray]], every: list[int], prm: TVL1Params,
                      batch: int = MODEL_BATCH, seed: int = 0) -> dict:
    """Estimated H100 seconds per pair for each N, from per-warp iteration counts (N = 1).

    A pair that stopped after n iterations of a warp stays in the working batch until the next
    check: min(ceil(n/N) N, cap) iterations; the batch reads the flags ceil(max n / N) times. The
    batch of ``batch`` pairs is resampled from the measured pairs (unless it is their number).
    Step time = max(GPU bytes / bandwidth, host time per step); each read adds SYNC_S.
    """
    cap = prm.inner_iterations * prm.outer_iterations
    measured = len(warps[0][1])
    cols = np.arange(measured) if batch == measured else \
        np.random.default_rng(seed).integers(0, measured, batch)
    out = {}
    for n in every:
        res = {"frozen_share": 0.0}
        for mode, bpp, host in (("eager", EAGER_KERNELS_ITER * 12, HOST_EAGER_STEP_S),
                                ("fused", FUSED_BYTES_ITER, HOST_FUSED_STEP_S)):
            total, reads, need, done = 0.0, 0, 0.0, 0.0
            for px, its in warps:
                its = np.asarray(its)[cols]
                stay = np.minimum(np.ceil(its / n) * n, cap)
                steps = int(stay.max()) if len(stay) else 0
                working = (stay[None, :] >= np.arange(1, steps + 1)[:, None]).sum(1)
                total += np.maximum(working * px * bpp / H100_BYTES_PER_S, host).sum()
                reads += math.ceil(steps / n)
                need, done = need + its.sum() * px, done + stay.sum() * px
            res[f"{mode}_s_per_pair"] = (total + reads * SYNC_S) / batch
            res["reads_per_batch"], res["frozen_share"] = reads, 1 - need / done
        out[n] = res
    return out


def measure_check_every(pairs: np.ndarray, every: list[int], validate: int) -> tuple:
    """Per-warp iterations at N = 1, the model for each N, and one real run at N = ``validate``
    (same flow and iterations; the frozen work it did against the model's count)."""
    x = torch.from_numpy(pairs.astype(np.float32))
    one = TorchTVL1(check_every=1)
    f1, i1 = one.calc(x[:, 0], x[:, 1])
    warps = [(px, n.numpy()) for px, n in one.warp_iterations]
    model = check_every_model(warps, every, one.params)
    other = TorchTVL1(check_every=validate)
    fn, i_n = other.calc(x[:, 0], x[:, 1])
    own = check_every_model(warps, [validate], one.params, batch=len(pairs))[validate]
    best = {m: min(model, key=lambda k: model[k][f"{m}_s_per_pair"]) for m in ("eager", "fused")}
    return {"pairs": len(pairs), "mean_iterations": float(i1.float().mean()),
            "model": model, "best_every_eager": best["eager"], "best_every_fused": best["fused"],
            "validate_every": validate,
            "validate_same_flow": bool(torch.equal(f1, fn) and torch.equal(i1, i_n)),
            "validate_frozen_share_measured":
                1 - one.executed_pixel_iterations / other.executed_pixel_iterations,
            "validate_frozen_share_model": own["frozen_share"],
            "validate_host_reads": [one.host_reads, other.host_reads]}, one.level_iterations


def _cv_worker(args):
    cv2.setNumThreads(1)
    i0, i1 = args
    return create_tvl1(TVL1Params()).calc(i0, i1, None)


def agreement(ref, flow):
    qa, qb = quantize_flow(ref), quantize_flow(flow)
    epe = np.linalg.norm(dequantize_flow(qa) - dequantize_flow(qb), axis=-1).mean()
    return float(epe), float((np.abs(qa.astype(int) - qb) <= 1).mean())


def opencv_noise_floor(pairs: np.ndarray, amp: float = 1e-3, seed: int = 0) -> tuple[float, float]:
    """OpenCV against itself on the same pairs with +-``amp`` grey-level noise (float input,
    which OpenCV scales by 255): how much a rounding-sized change moves its own flow."""
    tvl1, rng = create_tvl1(TVL1Params()), np.random.default_rng(seed)
    ref = np.stack([tvl1.calc(a, b, None) for a, b in pairs])
    noisy = (pairs + rng.uniform(-amp, amp, pairs.shape)) / 255
    return agreement(ref, np.stack([tvl1.calc(a.astype(np.float32), b.astype(np.float32), None)
                                    for a, b in noisy]))


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
    if videos and frames_path.exists():
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


def timed(fn):
    """(result, wall seconds, CPU seconds of this process: all its threads)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2, help="CPU cores both backends get")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved timing rounds")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd iterations")
    ap.add_argument("--model-pairs", type=int, default=8,
                    help="170x128 pairs whose per-warp iterations drive the check-every-N model")
    ap.add_argument("--every", default="1,2,3,4,5,6,8,10,15,20,30")
    ap.add_argument("--frames", type=Path, default=Path("data/frames"),
                    help="frame store whose videos also measure agreement (skipped if missing)")
    ap.add_argument("--videos", type=int, default=4, help="videos of --frames to compare (0: none)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "flow.json")
    args = ap.parse_args()
    prm, n = TVL1Params(), args.pairs
    pairs, names = natural_pairs(args.height, args.width, n, seed=300)
    res: dict = {"pairs": n, "size": [args.height, args.width], "threads": args.threads,
                 "frames": names, "opencv_version": cv2.__version__,
                 "torch_version": str(torch.__version__)}
    cv2.setNumThreads(args.threads)                      # plain loop, OpenCV's own threading
    torch.set_num_threads(args.threads)
    x = torch.from_numpy(pairs.astype(np.float32))
    solvers = {"torch_float32": TorchTVL1(prm, warp_dtype=torch.float32),
               "torch_float64": TorchTVL1(prm, warp_dtype=torch.float64)}
    if args.compile:                                     # compile (every shape) outside the timing
        solvers["torch_compiled_float32"] = TorchTVL1(prm, compile=True)
        res["torch_compile_seconds"] = timed(lambda: solvers["torch_compiled_float32"].calc(
            x[:, 0], x[:, 1]))[1]
    tvl1, times, flows, iterations = create_tvl1(prm), {}, {}, {}
    for _ in range(args.repeats):                        # interleaved: load changes hit both
        ref, *t = timed(lambda: np.stack([tvl1.calc(a, b, None) for a, b in pairs]))
        times.setdefault("opencv", []).append(t)
        for name, solver in solvers.items():
            (flow, iters), *t = timed(lambda: solver.calc(x[:, 0], x[:, 1]))
            times.setdefault(name, []).append(t)
            flows[name], iterations[name] = flow.numpy(), iters.tolist()
    res["load_average"] = [round(v, 2) for v in os.getloadavg()]
    res["opencv_loop_pairs_per_s"] = n / min(w for w, _ in times["opencv"])
    for name in solvers:
        res[f"{name}_pairs_per_s"] = n / min(w for w, _ in times[name])
        res[f"{name}_speedup_vs_opencv_wall"] = [o[0] / t[0] for o, t in zip(times["opencv"],
                                                                              times[name])]
        res[f"{name}_speedup_vs_opencv_cpu"] = [o[1] / t[1] for o, t in zip(times["opencv"],
                                                                             times[name])]
        res[f"{name}_epe_vs_opencv"], res[f"{name}_within1_vs_opencv"] = agreement(ref, flows[name])
    res["opencv_noisy_input_epe"], res["opencv_noisy_input_within1"] = opencv_noise_floor(pairs)
    # the stage's mode: processes x 1 OpenCV thread (pool started and warmed outside the timing)
    with mp.get_context("forkserver").Pool(args.threads) as pool:
        small = cv2.resize(pairs[0, 0], (32, 24))
        pool.map(_cv_worker, [(small, small)] * args.threads, chunksize=1)
        t0 = time.perf_counter()
        pool.map(_cv_worker, [(a, b) for a, b in pairs], chunksize=1)
        res["opencv_processes_pairs_per_s"] = n / (time.perf_counter() - t0)
    solver = solvers["torch_float32"]
    res["iterations_per_pair"] = iterations["torch_float32"]
    res["iterations_if_never_converged"] = len(pyramid_sizes(args.height, args.width, prm)) \
        * prm.warps * prm.inner_iterations * prm.outer_iterations
    res[f"estimate_{args.width}x{args.height}"] = analytic(
        solver.level_iterations, pyramid_sizes(args.height, args.width, prm), prm)
    every = [int(v) for v in args.every.split(",")]
    small_pairs, _ = natural_pairs(128, 170, args.model_pairs, seed=400)
    res["check_every_170x128"], levels = measure_check_every(small_pairs, every, validate=4)
    res["estimate_170x128"] = analytic(levels, pyramid_sizes(128, 170, prm), prm)
    res.update(io_cost(pairs[:, 0], flows["torch_float32"]))
    cpu_per_pair = res["decode_s_per_frame"] + res["quantise_write_s_per_pair"]
    res["cpu_cores_for_700_pairs_per_s_io"] = math.ceil(700 * cpu_per_pair)
    res.update(agreement_elsewhere(args.frames, args.videos))
    res["note"] = ("H100 figures are estimates from bytes/FLOPs per pair (3.35 TB/s, 67 TFLOP/s "
                   "FP32) and assumed host costs, not measurements; 'fused' assumes each "
                   "iteration is one kernel (torch.compile), 'eager' one memory pass per kernel "
                   "of tvl1_step.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=float))
    print(json.dumps(res, indent=1, default=float))


if __name__ == "__main__":
    main()
