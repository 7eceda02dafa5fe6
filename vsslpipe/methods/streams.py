"""One stream (RGB or flow) of a two-stream method: MoCo encoders, an indexed queue, a memory bank.

Shared by the ``coclr`` and ``cvtcl`` methods (:mod:`vsslpipe.methods.cvtcl`) in both stages:
the initialisation stage trains one :class:`Stream` alone, co-training holds one per modality.
"""
from __future__ import annotations

import copy
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.subclips import split_subclips, subclip_bounds
from ..errors import DataError
from ..losses import ltcl_loss
from ..models.heads import MLPHead
from ..train import dist
from .membank import MemoryBank
from .moco import HostPointer, momentum_update


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last_3d when ``x`` is laid out so (the engine's CUDA inputs), else contiguous."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


class IndexedQueue(HostPointer, nn.Module):
    """MoCo's FIFO queue of keys (buffers), plus each key's video index (``-1``: no video yet)
    and, for CoCLR-code mining, the frozen stream's embedding of the same clip (``other``).
    The write pointer and the number of filled rows are kept on the host (``full`` never waits
    for the device); they are recomputed from the buffers when a state dict is loaded."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("index", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("other", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self._ptr, self._filled = 0, np.zeros(size, dtype=bool)

    def _loaded(self) -> None:
        self.sync_host()

    def sync_host(self) -> None:
        """Host counters from the buffers (after a load or a copy into ``index``)."""
        self._ptr = int(self.ptr)
        self._filled = (self.index >= 0).cpu().numpy()

    @property
    def full(self) -> bool:
        return bool(self._filled.all())

    @torch.no_grad()
    def reset(self) -> None:
        """Random keys, no videos (CoCLR's code re-fills the queue at each co-training run)."""
        self.keys.copy_(F.normalize(torch.randn_like(self.keys), dim=1))
        self.other.copy_(F.normalize(torch.randn_like(self.other), dim=1))
        self.index.fill_(-1)
        self.ptr.zero_()
        self._ptr = 0
        self._filled[:] = False

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, index: torch.Tensor,
                other: Optional[torch.Tensor] = None) -> None:
        """Overwrite the oldest rows (wrapping around the end)."""
        n, size = keys.shape[0], self.keys.shape[0]
        keys, index = keys[-size:], index[-size:]
        other = None if other is None else other[-size:]
        done = 0
        for sl in self._advance(n):
            count = sl.stop - sl.start
            self.keys[sl] = keys[done:done + count].to(self.keys.dtype)
            self.index[sl] = index[done:done + count].to(self.index.device).long()
            if other is not None:
                self.other[sl] = other[done:done + count].to(self.other.dtype)
            self._filled[sl] = True          # video indices are >= 0
            done += count


class Stream(nn.Module):
    """Query encoder (backbone + MLP head), momentum key encoder, queue and memory bank."""

    def __init__(self, spec, modality: str, cfg):
        super().__init__()
        self.modality = modality
        self.backbone = spec.build_backbone(modality)
        dim = self.backbone.feature_dim
        self.head = MLPHead(dim, cfg.proj_hidden or dim, cfg.proj_dim, cfg.proj_layers, bn=False)
        self.key_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.key_head = copy.deepcopy(self.head).requires_grad_(False)
        self.queue = IndexedQueue(cfg.queue_size, cfg.proj_dim)
        self.bank = MemoryBank(0, cfg.proj_dim)
        self.shuffle_bn = cfg.shuffle_bn

    def query_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters()) + list(self.head.parameters())

    def set_trainable(self, on: bool) -> None:
        for p in self.query_parameters():
            p.requires_grad_(on)

    def query(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    @torch.no_grad()
    def key(self, x: torch.Tensor) -> torch.Tensor:
        """Momentum-encoder embedding, under shuffled BN when distributed."""
        if self.shuffle_bn:
            x, unshuffle = dist.batch_shuffle(x)
            return dist.batch_unshuffle(self.key_head(self.key_backbone(x)), unshuffle)
        return self.key_head(self.key_backbone(x))

    @torch.no_grad()
    def momentum_update(self, m: float) -> None:
        momentum_update(self.key_backbone, self.backbone, m)
        momentum_update(self.key_head, self.head, m)

    def ltcl(self, x1: torch.Tensor, x2: torch.Tensor, cfg, code_divisor: float = 3.0,
             ) -> tuple[torch.Tensor, dict]:
        """CVTCL's ``L_LTCL`` (eqs. (6)-(8)) for augmented views ``x1`` (query) and ``x2`` (key)
        of one clip ``(B, C, T, H, W)``: sub-clip ``s_1`` of ``x1`` through the query encoder,
        all sub-clips of ``x2`` through the key encoder."""
        t = x1.shape[2]
        length = cfg.subclip_len or t // cfg.num_subclips
        rng = None
        if length * cfg.num_subclips < t:  # spare frames: random gaps, from torch's RNG (resumable)
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ())))
        bounds = subclip_bounds(t, cfg.num_subclips, length, rng)
        fmt = memory_format(x1)                                        # stack/narrow drop it
        z1 = self.query(split_subclips(x1, bounds[:1])[:, 0].contiguous(memory_format=fmt))
        subs = split_subclips(x2, bounds)                               # (B, S, C, t, H, W)
        zk = self.key(subs.flatten(0, 1).contiguous(memory_format=fmt)).view(
            subs.shape[0], subs.shape[1], -1)
        negatives = self.queue.keys.clone().detach()
        return ltcl_loss(z1, zk[:, 0], zk[:, 1:], negatives, cfg.temperature,
                         use_local=cfg.use_local, use_lt=cfg.use_lt, form=cfg.ltcl_form,
                         code_divisor=code_divisor)

    def load_init(self, state: dict, prefix: str, where: str, with_queue: bool) -> None:
        """Query and key encoders from an initialisation checkpoint's ``model_state`` (both get
        the query weights, as CoCLR's code does); its queue too when ``with_queue``."""
        parts = {}
        for name in ("backbone", "head"):
            sub = {k[len(prefix) + len(name) + 1:]: v for k, v in state.items()
                   if k.startswith(f"{prefix}{name}.")}
            if not sub:
                raise DataError(f"{where}: no {name!r} weights in the checkpoint's model_state")
            parts[name] = sub
        try:
            for name, key_name in (("backbone", "key_backbone"), ("head", "key_head")):
                getattr(self, name).load_state_dict(parts[name])
                getattr(self, key_name).load_state_dict(parts[name])
        except RuntimeError as exc:
            raise DataError(f"{where}: weights do not match this {self.modality} stream "
                            f"({str(exc).splitlines()[0]})") from None
        if with_queue and f"{prefix}queue.keys" in state:
            saved = state[f"{prefix}queue.keys"]
            if saved.shape == self.queue.keys.shape:
                self.queue.keys.copy_(saved)
                if f"{prefix}queue.index" in state:
                    self.queue.index.copy_(state[f"{prefix}queue.index"])
                self.queue.sync_host()
