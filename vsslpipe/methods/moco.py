"""MoCo v2 on clips (He et al. 2020; Chen et al. 2020): momentum key encoder, FIFO queue, InfoNCE.

Query ``q = g_q(f_q(a1(clip)))``, key ``k = g_k(f_k(a2(clip)))`` from the momentum encoder
(``theta_k <- m theta_k + (1 - m) theta_q`` after every optimiser step), negatives = the queue of
past keys (gathered from all ranks before enqueueing). The key encoder runs under shuffled BN
when distributed (``dist.batch_shuffle``); at world size 1 that is the identity.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..data.sampling import GAPS, SameClipSampler, TwoClipSampler
from ..errors import ConfigError
from ..losses import info_nce
from ..models.heads import MLPHead
from ..train import dist
from . import METHODS
from .base import Method, MethodSpec


@dataclass(frozen=True)
class MocoConfig:
    temperature: float = 0.07
    queue_size: int = 2048          # CoCLR's value for UCF101 scale
    momentum: float = 0.999
    proj_dim: int = 128
    proj_hidden: Optional[int] = None   # default: the backbone's feature_dim
    proj_layers: int = 2                # MoCo v2's MLP head
    clips: str = "same"                 # "same": two augmentations of one clip; or a gap law
    shuffle_bn: bool = True             # distributed only; at world size 1 it is the identity

    def validate(self) -> None:
        if self.queue_size < 1 or not (0.0 <= self.momentum < 1.0) or self.temperature <= 0:
            raise ConfigError("queue_size >= 1, 0 <= momentum < 1 and temperature > 0 required")
        if self.clips != "same" and self.clips not in GAPS:
            raise ConfigError(f"clips must be 'same' or one of {', '.join(GAPS)}")


def ring_slots(ptr: int, n: int, size: int) -> list[slice]:
    """Where ``n`` new rows go in a ring of ``size`` rows whose oldest row is ``ptr``: one or two
    slices of the last ``min(n, size)`` rows (host arithmetic: nothing waits for the device)."""
    n_keep = min(n, size)
    start = (ptr + n - n_keep) % size
    first = min(n_keep, size - start)
    slots = [slice(start, start + first)]
    if first < n_keep:
        slots.append(slice(0, n_keep - first))
    return slots


class HostPointer:
    """Mixin for queues: the write pointer lives on the host (``_ptr``); the ``ptr`` buffer
    mirrors it for checkpoints (written with ``fill_``, never read during training)."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._ptr = int(self.ptr)      # once per load, not per step
        self._loaded()

    def _loaded(self) -> None:
        pass

    def _advance(self, n: int) -> list[slice]:
        size = self.keys.shape[0]
        slots = ring_slots(self._ptr, n, size)
        self._ptr = (self._ptr + n) % size
        self.ptr.fill_(self._ptr)
        return slots


class MomentumQueue(HostPointer, nn.Module):
    """A FIFO queue of L2-normalised keys stored as buffers (so it is checkpointed)."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self._ptr = 0

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Overwrite the oldest rows with ``keys`` (wrapping around the end)."""
        n = keys.shape[0]
        keys = keys[-self.keys.shape[0]:].to(self.keys.dtype)
        done = 0
        for sl in self._advance(n):
            count = sl.stop - sl.start
            self.keys[sl] = keys[done:done + count]
            done += count


@torch.no_grad()
def momentum_update(target: nn.Module, source: nn.Module, m: float) -> None:
    """``t <- m t + (1 - m) s`` for parameters; buffers (BN statistics) are the key encoder's own."""
    for pt, ps in zip(target.parameters(), source.parameters()):
        pt.mul_(m).add_(ps.detach(), alpha=1.0 - m)


@torch.no_grad()
def queue_logit_logs(logits: torch.Tensor, temperature: float) -> dict:
    """Monitoring from InfoNCE logits whose column 0 is the positive: mean positive and negative
    cosine similarity and the rate at which the positive scores highest."""
    return {"pos_sim": logits[:, 0].mean() * temperature,
            "neg_sim": logits[:, 1:].mean() * temperature,
            "acc": (logits.argmax(1) == 0).float().mean()}


class MomentumEncoderMethod(Method):
    """Shared MoCo machinery: query/key encoders, queue, momentum update after each step."""

    def _build_encoders(self, cfg) -> None:
        self.backbone = self.spec.build_backbone()
        dim = self.backbone.feature_dim
        self.head = MLPHead(dim, cfg.proj_hidden or dim, cfg.proj_dim, cfg.proj_layers, bn=False)
        self.key_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.key_head = copy.deepcopy(self.head).requires_grad_(False)
        self.queue = MomentumQueue(cfg.queue_size, cfg.proj_dim)
        self._pending: Optional[torch.Tensor] = None

    def encode_query(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    @torch.no_grad()
    def encode_key(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.shuffle_bn:
            x, unshuffle = dist.batch_shuffle(x)
            return dist.batch_unshuffle(self.key_head(self.key_backbone(x)), unshuffle)
        return self.key_head(self.key_backbone(x))

    def contrast_with_queue(self, x_query: torch.Tensor, x_key: torch.Tensor):
        """MoCo's InfoNCE of the query view against its key and the queue; the keys are enqueued
        after the optimiser step. Returns (loss, logs)."""
        q = self.encode_query(x_query)
        k = self.encode_key(x_key)
        loss, logits = info_nce(q, k, self.queue.keys.clone().detach(), self.cfg.temperature)
        self._pending = k.detach()
        return loss, queue_logit_logs(logits, self.cfg.temperature)

    def after_step(self, step: int, ctx) -> None:
        momentum_update(self.key_backbone, self.backbone, self.cfg.momentum)
        momentum_update(self.key_head, self.head, self.cfg.momentum)
        if self._pending is not None:
            self.queue.enqueue(dist.concat_all_gather(self._pending))
            self._pending = None


@METHODS.register("moco")
class MoCo(MomentumEncoderMethod):
    Config = MocoConfig

    def __init__(self, spec: MethodSpec):
        super().__init__(spec)
        self.cfg = self.parse_args(spec)
        self._build_encoders(self.cfg)

    def make_sampler(self):
        spatial = self.augment.spatial
        if self.cfg.clips == "same":   # two views of one window, each its own crop
            return SameClipSampler(self.spec.clip_len, self.spec.stride, spatial=spatial)
        return TwoClipSampler(self.spec.clip_len, self.spec.stride, gap=self.cfg.clips,
                              spatial=spatial)

    @torch.no_grad()
    def prepare(self, batch):
        return {**batch, "x0": self.augment(batch["clip0"], view=0),
                "x1": self.augment(batch["clip1"], view=1)}

    def forward(self, batch):
        if "x0" not in batch:
            batch = self.prepare(batch)
        return self.contrast_with_queue(batch["x0"], batch["x1"])
