"""Batched, device-side photometric augmentation of training views, consistent per clip (CVRL).

The spatial half (random-resized crop, flip) is cut in the loader workers
(:mod:`vsslpipe.data.views`; :attr:`ClipAugment.spatial` is its setting). Input here: the uint8
views ``(B, T, S, S, C)`` the loader delivers (RGB, or quantised flow with C = 2), on any device.
Output: the normalised network input ``(B, C, T, S, S)`` (:mod:`vsslpipe.data.modality`).

One random draw per clip (jitter factors and order, grayscale, blur sigma, solarisation) is
applied to every frame; ``consistent=False`` draws per frame instead (the ablation of CVRL's
Table). Presets (docs/methods.md, "Augmentation"):

=========  ==========  ==========  ================  =====  ===========  ==============
preset     crop area   aspect      jitter b/c/s/h     gray   blur p (v0,v1) solarise (v0,v1)
=========  ==========  ==========  ================  =====  ===========  ==============
cvrl       0.3 - 1     1/2 - 2     .8/.8/.8/.2 p.8    p.2    1.0, 0.1     0, 0.2
coclr      0.2 - 1     3/4 - 4/3   .4/.4/.4/.1 p.8    p.2    0.5, 0.5     0, 0
=========  ==========  ==========  ================  =====  ===========  ==============

Flow gets crop and flip only (a flip negates the x component, in the worker). ``flow_compat=True``
reproduces CoCLR's code instead: no negation, and brightness/contrast jitter on the quantised flow
"image" (after the crop, as CoCLR's transform order). Flow vectors are not rescaled by the crop's
zoom (as in CoCLR).

Every clip gets every operation, with identity parameters where it drew none (colour jitter as a
per-clip 3x3 matrix per position of the random order -- contrast adds a per-frame offset --,
grayscale and solarisation by ``torch.where``, blur with a delta kernel), so no step has
data-dependent shapes (no ``nonzero``: no host round trip on a GPU). An operation whose
probability is 0 in the preset is skipped altogether (a setting, not data).

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
from .modality import RGB_MEAN, RGB_STD, constant, view_to_input
from .views import Spatial

GRAY = (0.2989, 0.587, 0.114)     # torchvision's ITU-R 601 luma weights


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) -> (..., 1, H, W) luma."""
    return GRAY[0] * x[..., 0:1, :, :] + GRAY[1] * x[..., 1:2, :, :] + GRAY[2] * x[..., 2:3, :, :]


# Hue rotation in YIQ space (as NVIDIA DALI does): a 3x3 matrix per clip instead of an RGB->HSV
# round trip, several times cheaper; it keeps luma and differs from torchvision's HSV shift only
# in how saturated colours move around the hue circle.
_RGB2YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
_YIQ2RGB = tuple(map(tuple, torch.linalg.inv(torch.tensor(_RGB2YIQ, dtype=torch.float64)).tolist()))


def _hue_matrices(hue: torch.Tensor) -> torch.Tensor:
    """(N,) hue shifts in turns -> (N, 3, 3) RGB->RGB matrices."""
    fwd, inv = constant(_RGB2YIQ, hue), constant(_YIQ2RGB, hue)
    c, s = torch.cos(2 * math.pi * hue), torch.sin(2 * math.pi * hue)
    one, zero = torch.ones_like(hue), torch.zeros_like(hue)
    rot = torch.stack([one, zero, zero, zero, c, -s, zero, s, c], 1).view(-1, 3, 3)
    return inv @ rot @ fwd


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-unit values (N,) broadcast against x (N, T, C, H, W)."""
    return v.view(-1, *([1] * (x.dim() - 1)))


class ClipAugment:
    """Callable ``aug(views_uint8, view=0, params=None) -> normalised (B, C, T, S, S)``."""

    def __init__(self, cfg: AugmentConfig, modality: str, size: int, bound: float = DEFAULT_BOUND):
        self.cfg, self.modality, self.size, self.bound = cfg, modality, int(size), float(bound)
        self.p = p = cfg.resolved()
        self.spatial = Spatial(size=self.size, area=tuple(p["area"]), aspect=tuple(p["aspect"]),
                               flip_p=float(p["flip_p"]), consistent=cfg.consistent,
                               negate_x=modality == "flow" and not cfg.flow_compat)
        self.photometric = modality == "rgb" or cfg.flow_compat
        self.memory_format = torch.contiguous_format   # the engine sets channels_last_3d on CUDA
        # Random draws come from this generator when set (the engine owns it, seeds it and saves
        # it in checkpoints, so augmentation may run in a prefetch thread); else the global RNG.
        self.generator: Optional[torch.Generator] = None

    # -- random parameters -----------------------------------------------------------------
    def draw(self, n: int, view: int, device: torch.device) -> dict:
        """Photometric parameters for ``n`` independent units (clips, or frames when not
        consistent); empty for flow without ``flow_compat``."""
        p, dev = self.p, torch.device(device)
        if not self.photometric:
            return {}
        gen = self.generator if self.generator is not None and self.generator.device == dev else None
        u = lambda *s: torch.rand(*s, device=dev, generator=gen)  # noqa: E731
        j = p["jitter"]
        lo = [max(0.0, 1 - v) for v in j[:3]]
        span = [1 + v - low for v, low in zip(j[:3], lo)]
        probe = torch.empty((), device=dev)
        factors = constant(lo, probe) + constant(span, probe) * u(n, 3)
        return dict(
            jitter=u(n) < p["jitter_p"],
            factors=torch.cat([factors, (2 * u(n, 1) - 1) * j[3]], 1),
            order=torch.argsort(u(n, 4), dim=1),
            gray=u(n) < p["gray_p"],
            blur=u(n) < p["blur_p"][view],
            sigma=p["blur_sigma"][0] + (p["blur_sigma"][1] - p["blur_sigma"][0]) * u(n),
            solarize=u(n) < p["solarize_p"][view],
        )

    # -- application -----------------------------------------------------------------------
    def _check(self, views: torch.Tensor) -> None:
        if views.dim() != 5 or views.shape[2:4] != (self.size, self.size):
            raise ValueError(f"expected training views (B, T, {self.size}, {self.size}, C) cut in "
                             f"the loader workers (vsslpipe.data.views), got {tuple(views.shape)}")

    def __call__(self, views: torch.Tensor, view: int = 0, params: Optional[dict] = None) -> torch.Tensor:
        self._check(views)
        b, t, s, _, c = views.shape
        x = views.permute(0, 1, 4, 2, 3).float()                     # (B, T, C, S, S)
        if not self.cfg.consistent:
            x = x.reshape(b * t, 1, c, s, s)                          # each frame its own unit
        if params is None:
            params = self.draw(x.shape[0], view, x.device)
        if self.modality == "rgb":
            x = self.apply_photometric(x / 255.0, params, view)
            mean = constant(RGB_MEAN, x).view(1, 1, 3, 1, 1)
            std = constant(RGB_STD, x).view(1, 1, 3, 1, 1)
            x = (x - mean) / std
        else:
            if self.cfg.flow_compat and self.p["jitter_p"] > 0:      # CoCLR: jitter the flow image
                x = self._flow_jitter(x / 255.0, params) * 255.0
            x = x * (2.0 * self.bound / 255.0) - self.bound          # dequantise to pixels
            x = (x / self.bound).clamp(-1.0, 1.0)
        x = x.reshape(b, t, c, s, s)
        return x.permute(0, 2, 1, 3, 4).contiguous(memory_format=self.memory_format)  # (B,C,T,S,S)

    def plain(self, views: torch.Tensor) -> torch.Tensor:
        """The un-augmented input of uint8 views (centre views of memory-bank passes)."""
        self._check(views)
        return view_to_input(views, self.modality, self.bound, self.memory_format)

    def apply_photometric(self, x: torch.Tensor, p: dict, view: int) -> torch.Tensor:
        """Jitter, grayscale, blur, solarisation of ``x`` (N, T, 3, H, W) in [0, 1]."""
        cfg = self.p
        if cfg["jitter_p"] > 0:
            x = self._color_jitter(x, p)
        if cfg["gray_p"] > 0:
            x = torch.where(_bcast(p["gray"], x), _gray(x).expand_as(x), x)
        if cfg["blur_p"][view] > 0:
            x = self._blur(x, p["sigma"], p["blur"])
        if cfg["solarize_p"][view] > 0:
            x = torch.where(_bcast(p["solarize"], x) & (x >= 0.5), 1.0 - x, x)
        return x

    def _color_jitter(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """torchvision's ColorJitter: brightness, contrast, saturation, hue in a per-clip random
        order, clamped to [0, 1] after each. Position by position every clip gets one affine
        colour map: its op's matrix (identity when it drew no jitter) and, for contrast, the
        frame's mean luma as an offset."""
        f, on = p["factors"], p["jitter"]
        eye = torch.eye(3, device=x.device, dtype=x.dtype)
        w = constant(GRAY, x)
        mats = torch.stack([
            f[:, 0, None, None] * eye,                                          # brightness
            f[:, 1, None, None] * eye,                                          # contrast
            f[:, 2, None, None] * eye + (1 - f[:, 2, None, None]) * w[None, None, :],  # saturation
            _hue_matrices(f[:, 3]).to(x.dtype),                                 # hue
        ], 1)                                                                   # (N, 4, 3, 3)
        ops = torch.arange(4, device=x.device)
        for pos in range(4):
            pick = ((p["order"][:, pos, None] == ops) & on[:, None]).to(x.dtype)  # (N, 4)
            m = torch.einsum("nk,nkij->nij", pick, mats) + (1 - pick.sum(1))[:, None, None] * eye
            offset = pick[:, 1] * (1 - f[:, 1])                                 # contrast only
            mean = _gray(x).mean(dim=(-2, -1), keepdim=True)                    # (N, T, 1, 1, 1)
            x = (torch.einsum("nij,ntjhw->ntihw", m, x) + _bcast(offset, x) * mean).clamp_(0, 1)
        return x

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

    def _blur(self, x: torch.Tensor, sigma: torch.Tensor,
              on: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Gaussian blur of every unit of ``x``, kernel ~10 % of the side (SimCLR), one sigma
        per unit (depthwise separable convolution); units with ``on`` False get a delta kernel."""
        n, t, c, h, w = x.shape
        k = max(3, int(0.1 * self.size) // 2 * 2 + 1)
        r = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
        kern = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))
        kern = kern / kern.sum(1, keepdim=True)
        if on is not None:
            kern = torch.where(on[:, None], kern, (r == 0).to(x.dtype)[None])
        kern = kern.repeat_interleave(t * c, 0)                                  # (n*t*c, k)
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
