"""CVRL (Qian et al., CVPR 2021): two clips of a video at a sampled gap, temporally consistent
augmentation of each, NT-Xent over the (global) batch with a 3-layer MLP head, tau = 0.1."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..data.sampling import GAPS, TwoClipSampler
from ..config import FieldError, check
from ..losses import nt_xent
from ..models.heads import MLPHead
from ..train import dist
from . import METHODS
from .base import Method, MethodSpec


@dataclass(frozen=True)
class CvrlConfig:
    temperature: float = 0.1
    gap: str = "linear"          # uniform | linear (the paper's, ∝ t_max - t) | linear_inclusive | power
    alpha: float = 1.0           # exponent of the power law (ours)
    proj_dim: int = 128
    proj_hidden: Optional[int] = None   # default: the backbone's feature_dim
    proj_layers: int = 3

    def validate(self) -> None:
        check(self.gap in GAPS, "gap", f"must be one of {', '.join(GAPS)}, got {self.gap!r}")
        if self.temperature <= 0:
            raise FieldError("temperature", f"must be > 0, got {self.temperature:g}")


@METHODS.register("cvrl")
class CVRL(Method):
    Config = CvrlConfig

    def __init__(self, spec: MethodSpec):
        super().__init__(spec)
        self.cfg = self.parse_args(spec)
        self.backbone = spec.build_backbone()
        dim = self.backbone.feature_dim
        self.head = MLPHead(dim, self.cfg.proj_hidden or dim, self.cfg.proj_dim,
                            self.cfg.proj_layers, bn=True)

    def make_sampler(self):
        return TwoClipSampler(self.spec.clip_len, self.spec.stride, self.cfg.gap, self.cfg.alpha,
                              spatial=self.augment.spatial)

    @torch.no_grad()
    def prepare(self, batch):
        return {**batch, "x0": self.augment(batch["clip0"], view=0),
                "x1": self.augment(batch["clip1"], view=1)}

    def forward(self, batch):
        if "x0" not in batch:
            batch = self.prepare(batch)
        x1, x2 = batch["x0"], batch["x1"]
        n = x1.shape[0]
        z = self.head(self.backbone(torch.cat([x1, x2], 0)))   # one pass: BN sees both views
        z1 = dist.all_gather_with_grad(z[:n])
        z2 = dist.all_gather_with_grad(z[n:])
        loss, sim = nt_xent(z1, z2, self.cfg.temperature)
        with torch.no_grad():   # no boolean-mask indexing: it would wait for the device
            m = z1.shape[0]
            pos = torch.diagonal(sim, m).mean()
            total = sim.sum() - torch.diagonal(sim).sum() - 2 * torch.diagonal(sim, m).sum()
            logs = {"pos_sim": pos, "neg_sim": total / max(2 * m * (2 * m - 2), 1)}
        return loss, logs
