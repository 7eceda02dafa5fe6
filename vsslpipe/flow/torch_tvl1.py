"""Dual TV-L1 optical flow in PyTorch, batched over frame pairs (CUDA or CPU).

Written to follow OpenCV contrib's ``DualTVL1OpticalFlow`` (modules/optflow/src/tvl1flow.cpp)
step by step, so both backends give the same flow up to float rounding:

* pyramid: grey levels 0-255 as float; level s+1 = bilinear resize of level s by ``scale_step``
  (OpenCV's INTER_LINEAR: half-pixel centres, no anti-aliasing, size rounded); levels stop
  before one gets narrower than 16 px. Coarsest flow starts at 0; each finer level starts from the
  bilinearly resized flow divided by ``scale_step``.
* per level: centred gradient of I1 (one-sided halves at the border); per warp: I1, I1x, I1y
  sampled at x + u with OpenCV's remap INTER_CUBIC (coordinates rounded to 1/32 px, Keys cubic
  a = -0.75, zeros outside the image); the dual variables are reset once per level.
* per warp: up to ``outer_iterations`` x (median filter of u, then up to ``inner_iterations`` of:
  thresholding step for v, u = v + theta div p, forward-difference gradient, dual step p).
  A pair stops iterating in this warp once sum |u_new - u_old|^2 <= epsilon^2 * pixels (OpenCV's
  rule).

Convergence on a device: each step updates a per-pair ``alive`` flag on the device, and a pair
that stopped is frozen there (state, count and median masked) until the flags are read back,
every ``check_every`` inner iterations; only then does it leave the working batch. Results are
identical for every ``check_every``; it trades host reads (a GPU sync each) against frozen pairs
still computed. On CPU a read is free, so 1 (no masking). CHECK_EVERY_CUDA = 4 from
bench/bench_flow.py: on natural 170x128 pairs it freezes 5 % of the pixel-iterations and reads
236 times per batch instead of 910; fed to a model of H100 time per pair (an estimate: no GPU
has run this yet) it is within 2 % of the best N for eager (best 2) and compiled (best 5) steps.
No other host read happens inside the iteration loops.

Warp precision: float32. On natural 320x240 pairs (pan/zoom/turn over photographs,
bench/tvl1_check.py) float32 and float64 warping agree with OpenCV alike (EPE 0.0174 vs 0.0175
px, 99.95 vs 99.97 % within one level at bound 20), as closely as OpenCV agrees with itself
under +-1e-3 grey-level input noise (0.0148 px, 99.96 %); at 170x128 float32 gives 0.014-0.032
px per pair, OpenCV's own noise 0.018-0.031. Float64 is not needed; float32 halves the warp's
memory traffic (and float64 is slow on consumer GPUs).

OpenCV's own code is not copied; this is a re-implementation from its published description.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .params import TVL1Params
from .torch_median import median_blur, median_network  # noqa: F401 (median_blur: re-exported)

INTER_TAB_SIZE = 32          # OpenCV remap: sub-pixel positions are quantised to 1/32 px
MIN_LEVEL_SIZE = 16          # OpenCV stops the pyramid before a level below 16 px
WARP_DTYPE = torch.float32   # precision of the cubic warp (module docstring: measured choice)
CHECK_EVERY_CUDA = 4         # inner iterations between stop-flag reads on a GPU (docstring)


def pyramid_sizes(h: int, w: int, params: TVL1Params) -> list[tuple[int, int]]:
    """Level sizes as OpenCV computes them (``resize(..., Size(), step, step)`` rounds)."""
    sizes = [(h, w)]
    for _ in range(1, params.nscales):
        ph, pw = sizes[-1]
        nh, nw = int(np.rint(ph * params.scale_step)), int(np.rint(pw * params.scale_step))
        if nh < MIN_LEVEL_SIZE or nw < MIN_LEVEL_SIZE:
            break
        sizes.append((nh, nw))
    return sizes


@lru_cache(maxsize=256)
def _linear_taps(n_src: int, n_dst: int, scale: float, device) -> tuple:
    """OpenCV INTER_LINEAR taps along one axis: source index pairs and weights (float32)."""
    pos = (torch.arange(n_dst, dtype=torch.float64) + 0.5) * scale - 0.5
    i0 = torch.floor(pos)
    frac = (pos - i0).float()
    i0 = i0.long()
    low, high = i0 < 0, i0 >= n_src - 1
    frac = torch.where(low | high, torch.zeros_like(frac), frac)
    i0 = i0.clamp(0, n_src - 1)
    i1 = (i0 + 1).clamp(max=n_src - 1)
    return i0.to(device), i1.to(device), (1 - frac).to(device), frac.to(device)


def resize_linear(x: torch.Tensor, size: tuple[int, int],
                  scale: Optional[tuple[float, float]] = None) -> torch.Tensor:
    """(B, H, W) -> (B, h, w) like cv::resize INTER_LINEAR; ``scale`` = source px per output px
    (OpenCV uses 1/fx when the size came from fx, else src/dst)."""
    h, w = size
    sy, sx = scale if scale is not None else (x.shape[-2] / h, x.shape[-1] / w)
    x0, x1, wx0, wx1 = _linear_taps(x.shape[-1], w, sx, x.device)
    x = x[..., x0] * wx0 + x[..., x1] * wx1          # OpenCV: horizontal pass first
    y0, y1, wy0, wy1 = _linear_taps(x.shape[-2], h, sy, x.device)
    return x[..., y0, :] * wy0[:, None] + x[..., y1, :] * wy1[:, None]


def centered_gradient(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half central differences; at the border half the one-sided difference (as OpenCV)."""
    p = F.pad(img[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    return 0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]), 0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1])


def remap_cubic(images: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Sample (B, C, H, W) at (x + u1, y + u2) like cv::remap INTER_CUBIC, BORDER_CONSTANT 0.

    PyTorch's bicubic ``grid_sample`` uses the same kernel (a = -0.75) and zero padding; the
    positions are first rounded to OpenCV's 1/32 px grid. ``dtype`` is the precision of the
    grid and the sampling: the normalisation to [-1, 1] and back moves float32 positions by up to
    ~1e-5 px (see the module docstring for what that does to agreement). A hand-written 16-tap
    gather is ~100x slower on CPU.
    """
    b, c, h, w = images.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=u1.device, dtype=u1.dtype),
                            torch.arange(w, device=u1.device, dtype=u1.dtype), indexing="ij")
    # map = x + u in float32 as OpenCV builds it, then rounded to 1/32 px
    px = (torch.round((xs + u1) * INTER_TAB_SIZE) / INTER_TAB_SIZE).to(dtype)
    py = (torch.round((ys + u2) * INTER_TAB_SIZE) / INTER_TAB_SIZE).to(dtype)
    grid = torch.stack([px * (2.0 / max(w - 1, 1)) - 1, py * (2.0 / max(h - 1, 1)) - 1], dim=-1)
    out = F.grid_sample(images.to(dtype), grid, mode="bicubic", padding_mode="zeros",
                        align_corners=True)
    return out.to(images.dtype)


def tvl1_step(u1, u2, p11, p12, p21, p22, ix, iy, grad, rho_c, l_t: float, theta: float,
              taut: float):
    """One inner iteration for a batch; returns updated (u1, u2, p11, p12, p21, p22, error)."""
    # OpenCV's expressions, in fewer kernels (scalar where, addcmul, add with alpha: ~20 % less
    # time per step on CPU); rounding may differ in the last bit, far below the warp's float32
    rho = rho_c + (ix * u1 + iy * u2)
    lg = l_t * grad
    fi = torch.where(grad > torch.finfo(grad.dtype).eps, -rho / grad.clamp_min(1e-30), 0.0)
    fi = torch.where(rho < -lg, l_t, torch.where(rho > lg, -l_t, fi))
    # divergence with OpenCV's border rule (backward differences, zero before the first row/col)
    div1 = (p11 - F.pad(p11[:, :, :-1], (1, 0))) + (p12 - F.pad(p12[:, :-1, :], (0, 0, 1, 0)))
    div2 = (p21 - F.pad(p21[:, :, :-1], (1, 0))) + (p22 - F.pad(p22[:, :-1, :], (0, 0, 1, 0)))
    n1 = torch.add(torch.addcmul(u1, fi, ix), div1, alpha=theta)   # v + theta div p
    n2 = torch.add(torch.addcmul(u2, fi, iy), div2, alpha=theta)
    d1, d2 = n1 - u1, n2 - u2
    error = torch.addcmul(d1 * d1, d2, d2).sum(dim=(1, 2))
    # forward differences, zero in the last column / row
    u1x = F.pad(n1[:, :, 1:] - n1[:, :, :-1], (0, 1))
    u1y = F.pad(n1[:, 1:, :] - n1[:, :-1, :], (0, 0, 0, 1))
    u2x = F.pad(n2[:, :, 1:] - n2[:, :, :-1], (0, 1))
    u2y = F.pad(n2[:, 1:, :] - n2[:, :-1, :], (0, 0, 0, 1))
    ng1 = torch.hypot(u1x, u1y).mul_(taut).add_(1)
    ng2 = torch.hypot(u2x, u2y).mul_(taut).add_(1)
    return (n1, n2, torch.add(p11, u1x, alpha=taut).div_(ng1),
            torch.add(p12, u1y, alpha=taut).div_(ng1), torch.add(p21, u2x, alpha=taut).div_(ng2),
            torch.add(p22, u2y, alpha=taut).div_(ng2), error)


def tvl1_step_alive(u1, u2, p11, p12, p21, p22, ix, iy, grad, rho_c, alive, counted,
                    l_t: float, theta: float, taut: float, scaled_eps: float):
    """One iteration of a batch whose pairs are all still iterating (flags read every step):
    returns the new state, who keeps iterating (OpenCV: error > epsilon^2 * pixels) and counts."""
    *state, error = tvl1_step(u1, u2, p11, p12, p21, p22, ix, iy, grad, rho_c, l_t, theta, taut)
    return (*state, alive & (error > scaled_eps), counted + alive)


def masked_step(u1, u2, p11, p12, p21, p22, ix, iy, grad, rho_c, alive, counted,
                l_t: float, theta: float, taut: float, scaled_eps: float):
    """As ``tvl1_step_alive``, but pairs already stopped (``alive`` false) keep their state."""
    *new, error = tvl1_step(u1, u2, p11, p12, p21, p22, ix, iy, grad, rho_c, l_t, theta, taut)
    a = alive[:, None, None]
    old = (u1, u2, p11, p12, p21, p22)
    return (*[torch.where(a, n, o) for n, o in zip(new, old)], alive & (error > scaled_eps),
            counted + alive)


class TorchTVL1:
    """Batched Dual TV-L1 with OpenCV's parameters and stopping rule.

    ``check_every``: inner iterations between reads of the stop flags to the host (None: 1 on
    CPU, where a read costs nothing and frozen pairs would cost compute; CHECK_EVERY_CUDA on a
    GPU). ``warp_dtype``: precision of the cubic warp (see the module docstring).
    ``compile=True`` wraps the iteration in ``torch.compile`` (fuses its element-wise work, the
    point on GPUs); it is off by default because compiling takes a while on CPU.
    """

    def __init__(self, params: TVL1Params = TVL1Params(), device: str = "cpu",
                 compile: bool = False, check_every: Optional[int] = None,
                 warp_dtype: torch.dtype = WARP_DTYPE):
        if params.gamma != 0:
            raise ValueError("the torch TV-L1 backend does not implement gamma != 0")
        self.params = params
        self.device = torch.device(device)
        if check_every is None:
            check_every = 1 if self.device.type == "cpu" else CHECK_EVERY_CUDA
        if int(check_every) < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        self.check_every = int(check_every)
        self.warp_dtype = warp_dtype
        fn = masked_step if self.check_every > 1 else tvl1_step_alive
        self._step = torch.compile(fn, dynamic=True) if compile else fn
        # the median: cv2 on CPU; compiled min/max network on a GPU when compiling (one fused
        # kernel); else torch's median over unfolded windows
        self._median = torch.compile(median_network, dynamic=True) \
            if compile and self.device.type != "cpu" else median_blur
        # diagnostics of the last ``calc``: iterations per level (coarse first, (B,) each), per
        # warp ((pixels of the level, (B,)) each), pixel-iterations computed (frozen pairs too),
        # reads of the stop flags
        self.level_iterations: list[torch.Tensor] = []
        self.warp_iterations: list[tuple[int, torch.Tensor]] = []
        self.executed_pixel_iterations = 0
        self.host_reads = 0
        self._warps: list = []          # (pixels, iterations on the device) per warp, this call

    @torch.no_grad()
    def flow_pairs(self, gray: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, list[int]]:
        """(T, H, W) uint8 frames -> (T-1, H, W, 2) float32 flow and the iterations of each pair."""
        t, h, w = gray.shape
        out = np.empty((max(t - 1, 0), h, w, 2), np.float32)
        iters: list[int] = []
        frames = torch.from_numpy(np.ascontiguousarray(gray)).to(self.device, torch.float32)
        for s in range(0, t - 1, batch_size):
            e = min(s + batch_size, t - 1)
            flow, n = self.calc(frames[s:e], frames[s + 1:e + 1])
            out[s:e] = flow.cpu().numpy()
            iters.extend(n.tolist())
        return out, iters

    @torch.no_grad()
    def calc(self, i0: torch.Tensor, i1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W) float images (grey levels 0-255) -> ((B, H, W, 2) flow, iterations (B,))."""
        prm = self.params
        i0, i1 = i0.to(self.device, torch.float32), i1.to(self.device, torch.float32)
        b, h, w = i0.shape
        sizes = pyramid_sizes(h, w, prm)
        step = 1.0 / prm.scale_step
        pyr0, pyr1 = [i0], [i1]
        for size in sizes[1:]:
            pyr0.append(resize_linear(pyr0[-1], size, (step, step)))
            pyr1.append(resize_linear(pyr1[-1], size, (step, step)))
        u1 = torch.zeros((b,) + sizes[-1], device=self.device)
        u2 = torch.zeros_like(u1)
        self._warps = []
        self.executed_pixel_iterations = self.host_reads = 0
        for level in range(len(sizes) - 1, -1, -1):
            u1, u2 = self._one_level(pyr0[level], pyr1[level], u1, u2)
            if level == 0:
                break
            u1 = resize_linear(u1, sizes[level - 1]) * step
            u2 = resize_linear(u2, sizes[level - 1]) * step
        warps = torch.stack([n for _, n in self._warps])       # (levels x warps, B)
        levels = warps.reshape(-1, prm.warps, b).sum(1)
        total = levels.sum(0)
        host = warps.cpu()                                     # one read per batch, at the end
        self.warp_iterations = [(px, n) for (px, _), n in zip(self._warps, host)]
        self.level_iterations = list(host.reshape(-1, prm.warps, b).sum(1))
        return torch.stack([u1, u2], dim=-1), total

    def _one_level(self, i0, i1, u1, u2):
        prm = self.params
        scaled_eps = prm.epsilon * prm.epsilon * i0.shape[1] * i0.shape[2]
        coef = (prm.lambda_ * prm.theta, prm.theta, prm.tau / prm.theta, scaled_eps)
        i1x, i1y = centered_gradient(i1)
        stack = torch.stack([i1, i1x, i1y], dim=1)
        state = [u1, u2] + [torch.zeros_like(u1) for _ in range(4)]  # duals: reset once per level
        for _ in range(prm.warps):
            warped = remap_cubic(stack, state[0], state[1], self.warp_dtype)
            iw, ix, iy = warped[:, 0], warped[:, 1], warped[:, 2]
            const = [ix, iy, ix * ix + iy * iy, iw - ix * state[0] - iy * state[1] - i0]
            iterations = torch.zeros(i0.shape[0], dtype=torch.long, device=i0.device)
            state = self._one_warp(state, const, iterations, coef)
            self._warps.append((i0.shape[1] * i0.shape[2], iterations))
        return state[0], state[1]

    def _one_warp(self, state: list, const: list, iterations: torch.Tensor, coef) -> list:
        """OpenCV's outer/inner loops of one warp for the batch; adds to ``iterations``.

        A pair whose update fell below epsilon is frozen on the device (``alive`` false, its
        state and count kept) and leaves the working batch when the flags are read, every
        ``check_every`` iterations: OpenCV's stopping rule exactly, one host read per check.
        """
        prm, every = self.params, self.check_every
        out = [x.clone() for x in state]          # full batch; pairs are written as they leave
        flags = torch.ones(len(state[0]), dtype=torch.bool, device=state[0].device)
        w = _Working(None, list(state), list(const), flags,
                     torch.zeros_like(flags, dtype=torch.long))
        since = 0
        for _outer in range(prm.outer_iterations):
            if prm.median_filtering > 1:
                for k in (0, 1):
                    med = self._median(w.state[k], prm.median_filtering)
                    # every == 1: all working pairs are alive here, nothing to mask
                    w.state[k] = torch.where(w.alive[:, None, None], med, w.state[k]) \
                        if every > 1 else med
            for _inner in range(prm.inner_iterations):
                *w.state, w.alive, w.counted = self._step(*w.state, *w.const, w.alive, w.counted,
                                                          *coef)
                self.executed_pixel_iterations += w.state[0].numel()
                since += 1
                if since == every:
                    since = 0
                    self.host_reads += 1
                    keep = w.alive.cpu()          # the one host read of a check; then host data
                    if not keep.all():
                        w = w.leave(keep, out, iterations)
                        if w.idx.numel() == 0:
                            return out
        w.leave(torch.zeros_like(w.alive, device="cpu"), out, iterations)
        return out


class _Working:
    """The pairs still iterating in a warp: host indices into the batch and their tensors."""

    def __init__(self, idx, state, const, alive, counted):
        self.idx, self.state, self.const = idx, state, const
        self.alive, self.counted = alive, counted

    def leave(self, keep: torch.Tensor, out: list, iterations: torch.Tensor) -> "_Working":
        """Write the pairs with ``keep`` false (host bool) into ``out``/``iterations``; the rest."""
        dev = self.alive.device
        pos = torch.arange(len(keep))
        full = pos if self.idx is None else self.idx
        gone, kept = pos[~keep].to(dev), pos[keep].to(dev)
        target = full[~keep].to(dev)
        for k in range(6):
            out[k].index_copy_(0, target, self.state[k].index_select(0, gone))
        iterations.index_add_(0, target, self.counted.index_select(0, gone))
        sel = (lambda x: x.index_select(0, kept))
        return _Working(full[keep], [sel(x) for x in self.state], [sel(x) for x in self.const],
                        sel(self.alive), sel(self.counted))
