"""Batched, device-side clip augmentation, temporally consistent per clip (CVRL).

Input: a raw uint8 batch ``(B, T, H, W, C)`` as the loader delivers it (RGB frames, or
quantised flow with C = 2), on any device. Output: the normalised network input
``(B, C, T, size, size)`` (:mod:`vsslpipe.data.modality` conventions).

One random draw per clip (crop box, flip, jitter factors and order, grayscale, blur sigma,
solarisation) is applied to every frame; ``consistent=False`` draws per frame instead (the
ablation of CVRL's Table). Presets (METHODS.md):

=========  ==========  ==========  ================  =====  ===========  ==============
preset     crop area   aspect      jitter b/c/s/h     gray   blur p (v0,v1) solarise (v0,v1)
=========  ==========  ==========  ================  =====  ===========  ==============
cvrl       0.3 - 1     1/2 - 2     .8/.8/.8/.2 p.8    p.2    1.0, 0.1     0, 0.2
coclr      0.2 - 1     3/4 - 4/3   .4/.4/.4/.1 p.8    p.2    0.5, 0.5     0, 0
=========  ==========  ==========  ================  =====  ===========  ==============

Flow gets crop and flip only; a flip negates the x component (the physically correct mirror).
``flow_compat=True`` reproduces CoCLR's code instead: no negation, and brightness/contrast jitter
on the quantised flow "image". Flow vectors are not rescaled by the crop's zoom (as in CoCLR).

Written by hand rather than with torchvision.transforms because those draw one set of parameters
per call: a batch of clips would need a Python loop per clip on the device.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from .augment_config import PRESETS, AugmentConfig  # noqa: F401  (re-exported)
from .flowstore import DEFAULT_BOUND
from .modality import RGB_MEAN, RGB_STD

def _gray(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) -> (..., 1, H, W) luma (torchvision's ITU-R 601 weights)."""
    return (0.2989 * x[..., 0:1, :, :] + 0.587 * x[..., 1:2, :, :] + 0.114 * x[..., 2:3, :, :])


# Hue rotation in YIQ space (as NVIDIA DALI does): a 3x3 matrix per clip instead of an RGB->HSV
# round trip, several times cheaper; it keeps luma and differs from torchvision's HSV shift only
# in how saturated colours move around the hue circle.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _hue_matrices(hue: torch.Tensor) -> torch.Tensor:
    """(N,) hue shifts in turns -> (N, 3, 3) RGB->RGB matrices."""
    fwd = _RGB2YIQ.to(hue.device, hue.dtype)
    inv = torch.linalg.inv(fwd)
    c, s = torch.cos(2 * math.pi * hue), torch.sin(2 * math.pi * hue)
    rot = torch.zeros(hue.shape[0], 3, 3, device=hue.device, dtype=hue.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    return inv @ rot @ fwd


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-unit values (N,) broadcast against x (N, T, C, H, W)."""
    return v.view(-1, *([1] * (x.dim() - 1)))


class ClipAugment:
    """Callable ``aug(clips_uint8, view=0, params=None) -> normalised (B, C, T, size, size)``."""

    def __init__(self, cfg: AugmentConfig, modality: str, size: int, bound: float = DEFAULT_BOUND):
        self.cfg, self.modality, self.size, self.bound = cfg, modality, int(size), float(bound)
        self.p = cfg.resolved()
        self.memory_format = torch.contiguous_format   # the engine sets channels_last_3d on CUDA
        # Random draws come from this generator when set (the engine owns it, seeds it and saves
        # it in checkpoints, so augmentation may run in a prefetch thread); else the global RNG.
        self.generator: Optional[torch.Generator] = None

    # -- random parameters -----------------------------------------------------------------
    def draw(self, n: int, height: int, width: int, view: int, device: torch.device) -> dict:
        """Parameters for ``n`` independent units (clips, or frames when not consistent)."""
        p, dev = self.p, device
        gen = self.generator if self.generator is not None and self.generator.device == torch.device(dev) else None
        u = lambda *s: torch.rand(*s, device=dev, generator=gen)  # noqa: E731
        area = height * width * (p["area"][0] + (p["area"][1] - p["area"][0]) * u(n, 10))
        log_r = math.log(p["aspect"][0]) + (math.log(p["aspect"][1]) - math.log(p["aspect"][0])) * u(n, 10)
        w = torch.sqrt(area * torch.exp(log_r))
        h = torch.sqrt(area / torch.exp(log_r))
        ok = (w <= width) & (h <= height)
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.zeros(n, dtype=torch.long, device=dev))
        w = w.gather(1, first[:, None])[:, 0].clamp(max=width)   # fallback: clamp to the frame
        h = h.gather(1, first[:, None])[:, 0].clamp(max=height)
        x0 = (width - w) * u(n)
        y0 = (height - h) * u(n)
        params = {
            "cx": (x0 + w / 2) / width * 2 - 1, "cy": (y0 + h / 2) / height * 2 - 1,
            "sw": w / width, "sh": h / height, "flip": u(n) < p["flip_p"],
        }
        if self.modality == "rgb" or self.cfg.flow_compat:
            j = torch.tensor(p["jitter"], device=dev)
            lo = torch.clamp(1 - j[:3], min=0)
            params.update(
                jitter=u(n) < p["jitter_p"],
                factors=torch.cat([lo + (1 + j[:3] - lo) * u(n, 3), (2 * u(n, 1) - 1) * j[3]], 1),
                order=torch.argsort(u(n, 4), dim=1),
                gray=u(n) < p["gray_p"],
                blur=u(n) < p["blur_p"][view],
                sigma=p["blur_sigma"][0] + (p["blur_sigma"][1] - p["blur_sigma"][0]) * u(n),
                solarize=u(n) < p["solarize_p"][view],
            )
        return params

    # -- application -----------------------------------------------------------------------
    def __call__(self, clips: torch.Tensor, view: int = 0, params: Optional[dict] = None) -> torch.Tensor:
        if clips.dim() != 5:
            raise ValueError(f"expected (B, T, H, W, C) clips, got shape {tuple(clips.shape)}")
        b, t, hgt, wid, c = clips.shape
        x = clips.permute(0, 1, 4, 2, 3).contiguous().float()        # (B, T, C, H, W)
        if not self.cfg.consistent:
            x = x.reshape(b * t, 1, c, hgt, wid)                     # each frame its own unit
        if params is None:
            params = self.draw(x.shape[0], hgt, wid, view, x.device)
        if self.modality == "rgb":
            x = self._crop(x / 255.0, params)
            x = self._photometric(x, params)
            mean = x.new_tensor(RGB_MEAN).view(1, 1, 3, 1, 1)
            std = x.new_tensor(RGB_STD).view(1, 1, 3, 1, 1)
            x = (x - mean) / std
        else:
            if self.cfg.flow_compat:                              # CoCLR: jitter the flow image
                x = self._flow_jitter(x / 255.0, params) * 255.0
            x = x * (2.0 * self.bound / 255.0) - self.bound          # dequantise to pixels
            x = self._crop(x, params)
            if not self.cfg.flow_compat:                              # mirror: x velocity flips sign
                sign = 1.0 - 2.0 * params["flip"].to(x.dtype)
                x = torch.cat([x[:, :, :1] * _bcast(sign, x), x[:, :, 1:]], 2)
            x = (x / self.bound).clamp(-1.0, 1.0)
        x = x.reshape(b, t, c, self.size, self.size)
        return x.permute(0, 2, 1, 3, 4).contiguous(memory_format=self.memory_format)  # (B,C,T,S,S)

    def _crop(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """Crop box + flip + resize to size x size with one affine grid per unit (bilinear)."""
        n, t, c, h, w = x.shape
        flip = 1.0 - 2.0 * p["flip"].to(x.dtype)
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = p["sw"] * flip
        theta[:, 0, 2] = p["cx"]
        theta[:, 1, 1] = p["sh"]
        theta[:, 1, 2] = p["cy"]
        grid = F.affine_grid(theta, [n, t * c, self.size, self.size], align_corners=False)
        out = F.grid_sample(x.reshape(n, t * c, h, w), grid, mode="bilinear",
                            padding_mode="border", align_corners=False)
        return out.view(n, t, c, self.size, self.size)

    def _photometric(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        x = self._color_jitter(x, p)
        # Each op touches only the clips that drew it (index subsets, not full-batch where()).
        idx = torch.nonzero(p["gray"]).flatten()
        if idx.numel():
            x[idx] = _gray(x[idx]).expand(-1, -1, 3, -1, -1)
        idx = torch.nonzero(p["blur"]).flatten()
        if idx.numel():
            x[idx] = self._blur(x[idx], p["sigma"][idx])
        idx = torch.nonzero(p["solarize"]).flatten()
        if idx.numel():
            sub = x[idx]
            x[idx] = torch.where(sub >= 0.5, 1.0 - sub, sub)
        return x

    def _color_jitter(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """torchvision's ColorJitter: the four adjustments in a per-clip random order. Each op
        runs only on the clips that take it at that position (4 ops per jittered clip)."""
        f = p["factors"]
        for pos in range(4):   # in place: x is the crop's fresh output
            op = p["order"][:, pos]
            for k in range(4):
                idx = torch.nonzero((op == k) & p["jitter"]).flatten()
                if idx.numel():
                    x[idx] = self._jitter_op(x[idx], k, f[idx, k])
        return x

    def _jitter_op(self, x: torch.Tensor, k: int, f: torch.Tensor) -> torch.Tensor:
        fb = _bcast(f, x)
        if k == 0:                                                    # brightness
            return (x * fb).clamp_(0, 1)
        if k == 1:                                                    # contrast (frame mean)
            mean = _gray(x).mean(dim=(-2, -1), keepdim=True)
            return (fb * x + (1 - fb) * mean).clamp_(0, 1)
        if k == 2:                                                    # saturation
            return (fb * x + (1 - fb) * _gray(x)).clamp_(0, 1)
        m = _hue_matrices(f).to(x.dtype)                              # hue
        return torch.einsum("nij,ntjhw->ntihw", m, x).clamp_(0, 1)

    def _flow_jitter(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        f = p["factors"]
        for k in (0, 1):
            x = torch.where(_bcast(p["jitter"], x), self._jitter_op_flow(x, k, f[:, k]), x)
        return x

    @staticmethod
    def _jitter_op_flow(x: torch.Tensor, k: int, f: torch.Tensor) -> torch.Tensor:
        fb = _bcast(f, x)
        if k == 0:
            return (x * fb).clamp(0, 1)
        mean = x.mean(dim=(-3, -2, -1), keepdim=True)
        return (fb * x + (1 - fb) * mean).clamp(0, 1)

    def _blur(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Gaussian blur of every unit of ``x``, kernel ~10 % of the side (SimCLR), one sigma
        per unit (depthwise separable convolution)."""
        n, t, c, h, w = x.shape
        k = max(3, int(0.1 * self.size) // 2 * 2 + 1)
        r = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
        kern = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))
        kern = (kern / kern.sum(1, keepdim=True)).repeat_interleave(t * c, 0)   # (n*t*c, k)
        y = x.reshape(1, n * t * c, h, w)
        y = F.conv2d(F.pad(y, (k // 2, k // 2, 0, 0), mode="reflect"), kern[:, None, None, :],
                     groups=n * t * c)
        y = F.conv2d(F.pad(y, (0, 0, k // 2, k // 2), mode="reflect"), kern[:, None, :, None],
                     groups=n * t * c)
        return y.view_as(x)


def build_augment(cfg: AugmentConfig, modality: str, size: int,
                  bound: float = DEFAULT_BOUND) -> ClipAugment:
    """The augmentation for one modality and output size."""
    return ClipAugment(cfg, modality, size, bound)
