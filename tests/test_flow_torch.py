"""The batched PyTorch TV-L1 against OpenCV: building blocks, synthetic shifts, a real pair."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vsslpipe.data.flowstore import FlowStore, dequantize_flow, quantize_flow
from vsslpipe.flow.compute import FlowSettings, compute_flow
from vsslpipe.flow.opencv_backend import create_tvl1, flow_pairs_opencv
from vsslpipe.flow.params import TVL1Params
from vsslpipe.flow.torch_median import median_network
from vsslpipe.flow.torch_tvl1 import (TorchTVL1, centered_gradient, median_blur, pyramid_sizes,
                                      remap_cubic, resize_linear)

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _tvl1_check():
    """bench/tvl1_check.py as a module (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("tvl1_check", BENCH / "tvl1_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

RNG = np.random.default_rng(0)


def agreement(ref: np.ndarray, flow: np.ndarray, bound: float = 20.0) -> tuple[float, float]:
    """(mean end-point error after quantisation, fraction of uint8 values within one level)."""
    qa, qb = quantize_flow(ref, bound), quantize_flow(flow, bound)
    epe = np.linalg.norm(dequantize_flow(qa, bound) - dequantize_flow(qb, bound), axis=-1).mean()
    return float(epe), float((np.abs(qa.astype(int) - qb) <= 1).mean())


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 1.5)


def test_building_blocks_match_opencv():
    img = (RNG.random((37, 53)) * 255).astype(np.float32)
    t = torch.from_numpy(img)[None]
    np.testing.assert_array_equal(median_blur(t, 5)[0].numpy(), cv2.medianBlur(img, 5))
    ties = img.round(-1)                   # many equal values in a window
    for k in (3, 5):                       # the GPU's min/max network: OpenCV's value exactly
        for x in (img, ties):
            np.testing.assert_array_equal(median_network(torch.from_numpy(x)[None], k)[0].numpy(),
                                          cv2.medianBlur(x, k))
    down = cv2.resize(img, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    assert pyramid_sizes(37, 53, TVL1Params())[1] == down.shape
    np.testing.assert_allclose(resize_linear(t, down.shape, (1.25, 1.25))[0], down, atol=1e-3)
    up = cv2.resize(img, (66, 46), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(resize_linear(t, (46, 66))[0], up, atol=1e-3)
    u1, u2 = (RNG.standard_normal((2, 37, 53)) * 3).astype(np.float32)
    ys, xs = np.mgrid[0:37, 0:53].astype(np.float32)
    ref = cv2.remap(img, xs + u1, ys + u2, cv2.INTER_CUBIC)  # zeros outside, 1/32 px positions
    mine = remap_cubic(t[:, None], torch.from_numpy(u1)[None], torch.from_numpy(u2)[None])
    np.testing.assert_allclose(mine[0, 0], ref, atol=1e-3)
    gx, gy = centered_gradient(t)
    ex = np.empty_like(img)
    ex[:, 1:-1] = 0.5 * (img[:, 2:] - img[:, :-2])
    ex[:, 0], ex[:, -1] = 0.5 * (img[:, 1] - img[:, 0]), 0.5 * (img[:, -1] - img[:, -2])
    np.testing.assert_allclose(gx[0], ex, atol=1e-4)
    np.testing.assert_allclose(gy[0], centered_gradient(t.transpose(1, 2))[0][0].T, atol=1e-4)


def test_synthetic_shift_known_ground_truth_and_opencv():
    big = texture(60, 80)
    dx, dy = 2, -1                         # frame 1 shows the content moved by (+2, -1) px
    i0 = big[5:53, 5:69]
    i1 = big[5 - dy:53 - dy, 5 - dx:69 - dx]
    gray = np.stack([i0, i1]).round().astype(np.uint8)
    flow, iters = TorchTVL1().flow_pairs(gray)
    inner = flow[0, 6:-6, 6:-6]
    truth = np.array([dx, dy], np.float32)
    assert np.linalg.norm(inner - truth, axis=-1).mean() < 0.1
    ref = flow_pairs_opencv(gray, TVL1Params())
    epe, within = agreement(ref, flow)
    assert epe <= 0.1 and within >= 0.98
    assert 0 < iters[0] < 5 * 5 * 300      # converged before OpenCV's iteration cap


def test_real_pair_agrees_with_opencv_as_opencv_with_itself():
    """A stereo pair (occlusions, up to 8 px) is ill-conditioned: OpenCV's own flow moves by
    EPE ~0.05 px under +-1e-3 grey-level input noise. Torch must stay within that spread."""
    data = pytest.importorskip("skimage.data")
    left, right, _ = data.stereo_motorcycle()
    gray = np.stack([cv2.resize(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), (96, 72),
                                interpolation=cv2.INTER_AREA) for x in (left, right)])
    ref = flow_pairs_opencv(gray, TVL1Params())
    flow, _ = TorchTVL1().flow_pairs(gray)
    assert np.abs(ref[..., 0]).max() > 4   # real motion, not a still pair
    tvl1 = create_tvl1(TVL1Params())
    noisy = [agreement(ref, tvl1.calc(*(((gray + np.random.default_rng(s).uniform(
        -1e-3, 1e-3, gray.shape)) / 255).astype(np.float32)), None)[None]) for s in range(3)]
    epe, within = agreement(ref, flow)
    noise_epe, noise_within = np.median(noisy, axis=0)
    assert epe <= 1.5 * noise_epe and within >= 1 - 1.5 * (1 - noise_within)


def test_batching_and_early_stop_are_per_pair():
    """A batch gives each pair the flow it gets alone: converged pairs stop independently."""
    big = texture(50, 70, seed=3)
    frames = np.stack([big[4:36, s:s + 40] for s in (0, 1, 3, 3)]).round().astype(np.uint8)
    solver = TorchTVL1()
    batched, iters = solver.flow_pairs(frames, batch_size=8)
    single, iters_single = solver.flow_pairs(frames, batch_size=1)
    assert iters == iters_single and len(set(iters)) > 1   # pairs ran different iteration counts
    np.testing.assert_allclose(batched, single, atol=1e-4)
    assert np.abs(batched[2]).max() < 0.05              # identical frames: no motion


def test_torch_backend_through_the_stage(tmp_path):
    from test_flow import _textured_frames, _write_store

    frames = tmp_path / "frames.h5"
    _write_store(frames, {"A/a": _textured_frames(3, seed=1), "A/single": _textured_frames(1)})
    out = tmp_path / "flow.h5"
    result = compute_flow(frames, ["A/a", "A/single"], out, FlowSettings(backend="torch"),
                          progress=False)
    assert result.pairs == 2 and result.without_pairs == 1 and len(result.iterations) == 2
    store = FlowStore(out)
    assert store.attrs["backend"] == "torch" and "torch_version" in store.attrs
    from vsslpipe.data.framestore import FrameStore
    from vsslpipe.flow.opencv_backend import to_gray
    gray = to_gray(FrameStore(frames).read("A/a"))
    direct, _ = TorchTVL1().flow_pairs(gray)
    np.testing.assert_array_equal(store.read_uint8("A/a"), quantize_flow(direct))
    epe, within = agreement(flow_pairs_opencv(gray, TVL1Params()), direct)
    assert epe <= 0.1 and within >= 0.98


def test_check_every_n_is_the_every_iteration_result():
    """Frozen-on-device pairs read back every N iterations stop exactly where OpenCV's rule
    (checked every iteration) stops them: same flow bit for bit, same iteration counts."""
    _, ref = _tvl1_check().load_reference()
    frames = np.stack([[cv2.resize(f, (64, 48), interpolation=cv2.INTER_AREA) for f in pair]
                       for pair in ref[(128, 170)][0]]).astype(np.float32)
    x = torch.from_numpy(frames)
    every_one = TorchTVL1(check_every=1)
    flow1, it1 = every_one.calc(x[:, 0], x[:, 1])
    warps = [n.tolist() for _, n in every_one.warp_iterations]
    assert any(len(set(n)) > 1 for n in warps)          # pairs stop at different iterations
    for n in (3, 7):
        solver = TorchTVL1(check_every=n)
        flow, it = solver.calc(x[:, 0], x[:, 1])
        assert torch.equal(flow, flow1) and torch.equal(it, it1)
        assert solver.host_reads < every_one.host_reads                 # fewer reads
        assert solver.executed_pixel_iterations > every_one.executed_pixel_iterations  # frozen
    assert every_one.executed_pixel_iterations == sum(px * sum(n) for px, n in
                                                      zip([p for p, _ in every_one.warp_iterations],
                                                          warps))


# float32 warping vs OpenCV on 12 natural 170x128 pairs (the reference's 4 and 8 more made the
# same way): per pair EPE 0.014-0.032 px, >= 99.46 % within one level; OpenCV against itself
# under +-1e-3 grey-level input noise: 0.018-0.031 px, >= 99.40 %. Thresholds: ~25 % margin.
MAX_EPE, MIN_WITHIN = 0.04, 0.99


def test_float32_warping_agrees_with_saved_opencv_flow():
    check = _tvl1_check()
    meta, ref = check.load_reference()
    frames, flow_q = ref[(128, 170)]
    if hasattr(cv2, "optflow"):                         # the file is OpenCV's flow for its frames
        tvl1 = create_tvl1(TVL1Params())
        np.testing.assert_array_equal(quantize_flow(tvl1.calc(*frames[1], None)), flow_q[1])
    x = torch.from_numpy(frames[1:].astype(np.float32))
    flow = TorchTVL1(warp_dtype=torch.float32).calc(x[:, 0], x[:, 1])[0].numpy()
    for i in range(len(flow)):
        epe, within = agreement(dequantize_flow(flow_q[i + 1]), flow[i])
        assert epe <= MAX_EPE and within >= MIN_WITHIN, (i, epe, within)
    assert np.abs(dequantize_flow(flow_q)).max() > 2     # real motion in the reference


def test_reference_file_and_quick_check_on_cpu():
    check = _tvl1_check()
    assert check.REFERENCE.stat().st_size < 2e6
    meta, ref = check.load_reference()
    assert meta["params"] == TVL1Params().as_dict() and meta["bound"] == 20.0
    for (h, w), (frames, flow_q) in ref.items():
        assert frames.shape == (4, 2, h, w) and frames.dtype == np.uint8
        assert flow_q.shape == (4, h, w, 2) and flow_q.dtype == np.uint8
    res = check.tvl1_check("cpu", quick=True)
    x = torch.from_numpy(ref[(128, 170)][0][:1].astype(np.float32))
    direct = TorchTVL1().calc(x[:, 0], x[:, 1])[0].numpy()
    epe, within = agreement(dequantize_flow(ref[(128, 170)][1][0]), direct[0])
    assert res["170x128"]["eager"]["epe_vs_opencv"] == pytest.approx(epe)
    assert res["170x128"]["eager"]["within1_vs_opencv"] == pytest.approx(within)
    for key in ("170x128", "320x240"):
        assert set(res[key]) == {"eager"}                # quick: no compiling
        r = res[key]["eager"]
        assert r["epe_vs_opencv"] <= MAX_EPE and r["within1_vs_opencv"] >= MIN_WITHIN
        assert r["pairs_per_s"] > 0 and r["host_reads"] == sum(r["iterations_per_pair"])
