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
  rule). Converged pairs are dropped from the working batch, so they cost nothing further.

OpenCV's own code is not copied; this is a re-implementation from its published description.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .params import TVL1Params

INTER_TAB_SIZE = 32          # OpenCV remap: sub-pixel positions are quantised to 1/32 px
MIN_LEVEL_SIZE = 16          # OpenCV stops the pyramid before a level below 16 px


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


def resize_linear(x: torch.Tensor, size: tuple[int, int], scale: Optional[tuple[float, float]] = None) -> torch.Tensor:
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


def remap_cubic(images: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """Sample (B, C, H, W) at (x + u1, y + u2) like cv::remap INTER_CUBIC, BORDER_CONSTANT 0.

    PyTorch's bicubic ``grid_sample`` uses the same kernel (a = -0.75) and zero padding; the
    positions are first rounded to OpenCV's 1/32 px grid. It runs in float64 so the grid
    normalisation adds no error of its own (float32 moved values by up to 1e-3 grey levels,
    enough to change some converged flows). A hand-written 16-tap gather is ~100x slower on CPU.
    """
    b, c, h, w = images.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=u1.device, dtype=u1.dtype),
                            torch.arange(w, device=u1.device, dtype=u1.dtype), indexing="ij")
    # map = x + u in float32 as OpenCV builds it, then rounded to 1/32 px
    px = (torch.round((xs + u1) * INTER_TAB_SIZE) / INTER_TAB_SIZE).double()
    py = (torch.round((ys + u2) * INTER_TAB_SIZE) / INTER_TAB_SIZE).double()
    grid = torch.stack([px * (2.0 / max(w - 1, 1)) - 1, py * (2.0 / max(h - 1, 1)) - 1], dim=-1)
    out = F.grid_sample(images.double(), grid, mode="bicubic", padding_mode="zeros",
                        align_corners=True)
    return out.to(images.dtype)


def median_blur(u: torch.Tensor, k: int) -> torch.Tensor:
    """k x k median with replicated borders (cv::medianBlur on float images, k in {3, 5}).

    On CPU this calls cv2.medianBlur itself (50x faster than a torch median over unfolded
    windows); on GPU the unfolded median runs on the device.
    """
    b, h, w = u.shape
    if u.device.type == "cpu":
        import cv2
        arr = u.contiguous().numpy()
        return torch.from_numpy(np.stack([cv2.medianBlur(a, k) for a in arr]))
    r = k // 2
    p = F.pad(u[:, None], (r, r, r, r), mode="replicate")
    return F.unfold(p, k).median(dim=1).values.reshape(b, h, w)


def tvl1_step(u1, u2, p11, p12, p21, p22, ix, iy, grad, rho_c, l_t: float, theta: float,
              taut: float):
    """One inner iteration for a batch; returns updated (u1, u2, p11, p12, p21, p22, error)."""
    # expressions keep OpenCV's evaluation order, so float rounding matches as far as possible
    rho = rho_c + (ix * u1 + iy * u2)
    fi = torch.where(grad > torch.finfo(grad.dtype).eps, -rho / grad.clamp_min(1e-30),
                     torch.zeros_like(rho))
    fi = torch.where(rho < -l_t * grad, torch.full_like(rho, l_t),
                     torch.where(rho > l_t * grad, torch.full_like(rho, -l_t), fi))
    v1, v2 = u1 + fi * ix, u2 + fi * iy
    # divergence with OpenCV's border rule (backward differences, zero before the first row/col)
    div1 = (p11 - F.pad(p11[:, :, :-1], (1, 0))) + (p12 - F.pad(p12[:, :-1, :], (0, 0, 1, 0)))
    div2 = (p21 - F.pad(p21[:, :, :-1], (1, 0))) + (p22 - F.pad(p22[:, :-1, :], (0, 0, 1, 0)))
    n1, n2 = v1 + theta * div1, v2 + theta * div2
    error = ((n1 - u1) ** 2 + (n2 - u2) ** 2).sum(dim=(1, 2))
    # forward differences, zero in the last column / row
    u1x = F.pad(n1[:, :, 1:] - n1[:, :, :-1], (0, 1))
    u1y = F.pad(n1[:, 1:, :] - n1[:, :-1, :], (0, 0, 0, 1))
    u2x = F.pad(n2[:, :, 1:] - n2[:, :, :-1], (0, 1))
    u2y = F.pad(n2[:, 1:, :] - n2[:, :-1, :], (0, 0, 0, 1))
    ng1 = 1 + taut * torch.hypot(u1x, u1y)
    ng2 = 1 + taut * torch.hypot(u2x, u2y)
    return (n1, n2, (p11 + taut * u1x) / ng1, (p12 + taut * u1y) / ng1,
            (p21 + taut * u2x) / ng2, (p22 + taut * u2y) / ng2, error)


class TorchTVL1:
    """Batched Dual TV-L1 with OpenCV's parameters and stopping rule.

    ``compile=True`` wraps the inner iteration in ``torch.compile`` (fuses its element-wise work,
    the point on GPUs); it is off by default because compiling takes a while on CPU.
    """

    def __init__(self, params: TVL1Params = TVL1Params(), device: str = "cpu", compile: bool = False):
        if params.gamma != 0:
            raise ValueError("the torch TV-L1 backend does not implement gamma != 0")
        self.params = params
        self.device = torch.device(device)
        self._step = torch.compile(tvl1_step, dynamic=True) if compile else tvl1_step
        self.level_iterations: list[torch.Tensor] = []  # last call: (levels, B) iterations

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
        """Flow from (B, H, W) float images (grey levels 0-255) -> ((B, H, W, 2), iterations (B,))."""
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
        iterations = torch.zeros(b, dtype=torch.long, device=self.device)
        self.level_iterations = []
        for level in range(len(sizes) - 1, -1, -1):
            u1, u2, n = self._one_level(pyr0[level], pyr1[level], u1, u2)
            iterations += n
            self.level_iterations.append(n.cpu())
            if level == 0:
                break
            u1 = resize_linear(u1, sizes[level - 1]) * step
            u2 = resize_linear(u2, sizes[level - 1]) * step
        return torch.stack([u1, u2], dim=-1), iterations

    def _one_level(self, i0, i1, u1, u2):
        prm = self.params
        b, h, w = i0.shape
        scaled_eps = prm.epsilon * prm.epsilon * h * w
        l_t, taut, theta = prm.lambda_ * prm.theta, prm.tau / prm.theta, prm.theta
        i1x, i1y = centered_gradient(i1)
        stack = torch.stack([i1, i1x, i1y], dim=1)
        p = [torch.zeros_like(u1) for _ in range(4)]     # dual variables: reset once per level
        iterations = torch.zeros(b, dtype=torch.long, device=i0.device)
        for _ in range(prm.warps):
            warped = remap_cubic(stack, u1, u2)
            iw, ix, iy = warped[:, 0], warped[:, 1], warped[:, 2]
            grad = ix * ix + iy * iy
            rho_c = iw - ix * u1 - iy * u2 - i0
            # working set: the pairs still iterating in this warp
            idx = torch.arange(b, device=i0.device)
            st = [u1, u2, *p]
            const = [ix, iy, grad, rho_c]
            done_u: list = [None] * 6
            error = torch.full((b,), float("inf"), device=i0.device)
            for _outer in range(prm.outer_iterations):
                if prm.median_filtering > 1:
                    st[0] = median_blur(st[0], prm.median_filtering)
                    st[1] = median_blur(st[1], prm.median_filtering)
                for _inner in range(prm.inner_iterations):
                    *st, error = self._step(*st, *const, l_t, theta, taut)
                    iterations[idx] += 1
                    active = error > scaled_eps
                    if not bool(active.all()):
                        # write converged pairs back, drop them from the working set
                        stopped = idx[~active]
                        for k in range(6):
                            full = done_u[k] if done_u[k] is not None else [u1, u2, *p][k].clone()
                            full[stopped] = st[k][~active]
                            done_u[k] = full
                        idx, st = idx[active], [x[active] for x in st]
                        const = [x[active] for x in const]
                        error = error[active]
                    if idx.numel() == 0:
                        break
                if idx.numel() == 0:
                    break
            full_state = []
            for k in range(6):
                full = done_u[k] if done_u[k] is not None else [u1, u2, *p][k].clone()
                if idx.numel():
                    full[idx] = st[k]
                full_state.append(full)
            u1, u2, *p = full_state
        return u1, u2, iterations
