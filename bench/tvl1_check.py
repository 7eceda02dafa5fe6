"""Torch TV-L1 on a device: pairs/s at 170x128 and 320x240 and agreement with saved OpenCV flow.

The reference (bench/data/tvl1_reference.npz) holds natural frame pairs (camera pan/zoom/turn
over scikit-image's photographs, JPEG-compressed like the frame store) and OpenCV contrib's flow
for them, quantised as the flow store does (bound 20), so a GPU machine without OpenCV contrib or
scikit-image can measure agreement. Rebuild it on a CPU machine with OpenCV contrib:
    python bench/tvl1_check.py --make-reference
Run the check (prints and writes bench/results/tvl1_check.json):
    python bench/tvl1_check.py --device cuda            # or --device cpu --quick
``tvl1_check(device, quick)`` is what bench/gpu_check.py calls.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:      # run as a script from anywhere: the package is the repo's
    sys.path.insert(0, str(ROOT))

from vsslpipe.data.flowstore import dequantize_flow, quantize_flow  # noqa: E402
from vsslpipe.flow.params import TVL1Params  # noqa: E402
from vsslpipe.flow.torch_tvl1 import TorchTVL1  # noqa: E402

REFERENCE = Path(__file__).parent / "data" / "tvl1_reference.npz"
SIZES = ((128, 170), (240, 320))    # (H, W): the paper's frame size and UCF101's
BOUND = 20.0                        # the flow store's quantisation bound
IMAGES = ("astronaut", "coffee", "rocket", "chelsea", "immunohistochemistry", "hubble_deep_field",
          "stereo_motorcycle")
# GPU batch sizes: enough pixels per kernel to fill an H100-class card (5.6 M at 170x128, 9.8 M
# at 320x240); a few GB of memory (one float tensor of 128 pairs at 320x240 is 39 MB)
CUDA_BATCH = {(128, 170): 256, (240, 320): 128}


def natural_pairs(h: int, w: int, n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """``n`` grey (2, h, w) uint8 pairs: a camera pans, zooms and turns over real photographs.

    Each frame is an affine view of the photograph (area-downscaled first, so no aliasing),
    JPEG-compressed at quality 90 in colour and converted to grey like the flow stage's input.
    """
    import cv2
    from skimage import data

    rng = np.random.default_rng(seed)
    out, names = np.empty((n, 2, h, w), np.uint8), []
    for i in range(n):
        name = IMAGES[(seed + i) % len(IMAGES)]
        img = getattr(data, name)()
        img = img[0] if isinstance(img, tuple) else img           # stereo: the left view
        img = np.ascontiguousarray(img[..., :3])
        fit = 1.3 * max(h / img.shape[0], w / img.shape[1])        # view covers 1/1.3 of it
        img = cv2.resize(img, None, fx=fit, fy=fit, interpolation=cv2.INTER_AREA)
        centre = np.array([img.shape[1], img.shape[0]]) / 2 + rng.uniform(-0.08, 0.08, 2) * w
        pan = rng.uniform(-4, 4, 2) * w / 320                       # px per frame at this size
        zoom, turn = 1 + rng.uniform(-0.02, 0.02), rng.uniform(-0.6, 0.6)  # per frame, degrees
        for t in range(2):
            m = cv2.getRotationMatrix2D(tuple(centre + t * pan), t * turn, zoom ** t)
            m[:, 2] += np.array([w / 2, h / 2]) - centre            # view centred on ``centre``
            frame = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC,
                                   borderMode=cv2.BORDER_REFLECT)
            ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, 90])
            out[i, t] = cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
        names.append(f"{name} pan={pan.round(2).tolist()} zoom={zoom:.4f} turn={turn:.2f}")
    return out, names


def make_reference(path: Path = REFERENCE, pairs: int = 4) -> dict:
    """OpenCV contrib's flow for ``pairs`` natural pairs at each size, saved compressed."""
    import cv2

    from vsslpipe.flow.opencv_backend import create_tvl1

    tvl1, arrays, meta = create_tvl1(TVL1Params()), {}, {"opencv_version": cv2.__version__,
                                                          "params": TVL1Params().as_dict(),
                                                          "bound": BOUND, "pairs": {}}
    for k, (h, w) in enumerate(SIZES):
        frames, names = natural_pairs(h, w, pairs, seed=10 * k)
        flow = np.stack([tvl1.calc(a, b, None) for a, b in frames])
        arrays[f"frames_{h}x{w}"], arrays[f"flow_{h}x{w}"] = frames, quantize_flow(flow, BOUND)
        meta["pairs"][f"{h}x{w}"] = names
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, meta=json.dumps(meta), **arrays)
    tmp.replace(path)                    # written whole, then renamed
    return meta


def load_reference(path: Path = REFERENCE) -> tuple[dict, dict]:
    """(meta, {(h, w): (frames (n, 2, h, w) uint8, quantised OpenCV flow (n, h, w, 2) uint8)})."""
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        return meta, {(h, w): (z[f"frames_{h}x{w}"], z[f"flow_{h}x{w}"]) for h, w in SIZES}


def agreement(ref_q: np.ndarray, flow: np.ndarray, bound: float = BOUND) -> tuple[float, float]:
    """(mean end-point error in px after quantisation, fraction of values within one level)."""
    q = quantize_flow(flow, bound)
    epe = np.linalg.norm(dequantize_flow(ref_q, bound) - dequantize_flow(q, bound), axis=-1)
    return float(epe.mean()), float((np.abs(ref_q.astype(int) - q) <= 1).mean())


def _batch(frames: np.ndarray, size: int) -> np.ndarray:
    """``size`` distinct pairs from the reference ones: flips and a grey-level gain each."""
    out = []
    for j in range(size):
        pair = frames[j % len(frames)].astype(np.float32)
        v = j // len(frames)
        pair = pair[..., ::-1] if v % 2 else pair
        pair = pair[:, ::-1] if (v // 2) % 2 else pair
        out.append(np.clip(pair * (1 + 0.03 * (v // 4)), 0, 255).round())
    return np.ascontiguousarray(np.stack(out))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tvl1_check(device: str = "cuda", quick: bool = False, compile: Optional[bool] = None,
               reference: Path = REFERENCE) -> dict:
    """Pairs/s at 170x128 and 320x240 and agreement with OpenCV, on ``device``.

    Modes: eager, and compiled too when ``compile`` (None: on a GPU without ``quick``); results
    under ``res["170x128"]["eager"]`` etc. Agreement: every reference pair (quick: the first per
    size), as one batch. Speed: on a GPU a batch of CUDA_BATCH pairs made from them (after an
    untimed warm-up batch, which also compiles); on CPU or with ``quick`` the agreement batch
    itself. The flow's copy to the host is inside the timing.
    """
    dev = torch.device(device)
    meta, ref = load_reference(reference)
    params = TVL1Params(**{("lambda_" if k == "lambda" else k): v
                           for k, v in meta["params"].items()})
    if compile is None:
        compile = dev.type == "cuda" and not quick
    res: dict = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                 "torch_version": str(torch.__version__), "quick": quick,
                 "reference_opencv_version": meta["opencv_version"]}
    for mode in ["eager"] + (["compiled"] if compile else []):
        solver = TorchTVL1(params, device=device, compile=mode == "compiled")
        res.update(check_every=solver.check_every, warp_dtype=str(solver.warp_dtype))
        for (h, w), (frames, flow_q) in ref.items():
            res.setdefault(f"{w}x{h}", {})[mode] = _measure(solver, frames, flow_q, dev, quick)
    return res


def _measure(solver: TorchTVL1, frames: np.ndarray, flow_q: np.ndarray, dev: torch.device,
             quick: bool) -> dict:
    n = 1 if quick else len(frames)
    t = torch.from_numpy(frames[:n].astype(np.float32)).to(dev)
    _sync(dev)
    t0 = time.perf_counter()
    flow, iters = solver.calc(t[:, 0], t[:, 1])
    flow = flow.cpu().numpy()
    seconds, size = time.perf_counter() - t0, n
    epe, within = agreement(flow_q[:n], flow)
    out = {"agreement_pairs": n, "epe_vs_opencv": epe, "within1_vs_opencv": within,
           "iterations_per_pair": iters.cpu().tolist()}
    if dev.type != "cpu" and not quick:          # speed: a full GPU batch, after a warm-up
        size = CUDA_BATCH[frames.shape[2:]]
        batch = torch.from_numpy(_batch(frames, size)).to(dev)
        t0 = time.perf_counter()
        solver.calc(batch[:, 0], batch[:, 1])
        out["warmup_s"] = time.perf_counter() - t0
        torch.cuda.reset_peak_memory_stats(dev)
        _sync(dev)
        t0 = time.perf_counter()
        flow, iters = solver.calc(batch[:, 0], batch[:, 1])
        flow.cpu()
        seconds = time.perf_counter() - t0
        out["peak_memory_gb"] = torch.cuda.max_memory_allocated(dev) / 1e9
    needed = sum(px * float(it.sum()) for px, it in solver.warp_iterations)
    out.update(batch=size, seconds=seconds, pairs_per_s=size / seconds,
               mean_iterations=float(iters.float().mean()), host_reads=solver.host_reads,
               frozen_share=1 - needed / solver.executed_pixel_iterations)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="also time compiled iterations (default: on a GPU without --quick)")
    ap.add_argument("--make-reference", action="store_true")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "tvl1_check.json")
    args = ap.parse_args()
    if args.make_reference:
        print(json.dumps(make_reference(), indent=1))
        print(f"{REFERENCE}: {REFERENCE.stat().st_size / 1e6:.2f} MB")
        return
    res = tvl1_check(args.device, args.quick, args.compile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
