"""CACL: cross-architecture contrastive learning with shuffle-degree prediction (Guo et al. 2022).

Each training clip ``x`` is paired with ``x_hat``, a permutation of its frames whose edit distance
to ``x`` is drawn by uniform shuffle-degree sampling (:mod:`vsslpipe.losses.shuffle`). Two
augmentations a1, a2 of the pair (one draw per view, shared by ``x`` and ``x_hat``: ``x_hat`` is
the augmented ``x`` with its frames permuted, which equals augmenting the permuted frames) go
through the 3D CNN ``C`` and the video transformer ``T``; each network embeds both clips and its
contrastive head sits on ``[E(x), E(x_hat)]``, giving ``C1, C2, T1, T2``. Positive pairs follow
``pairs`` (:mod:`vsslpipe.losses.cacl`); negatives come from MoCo momentum encoders and one queue
per network. The SDP head on ``[C(x), C(x_hat)]`` classifies the edit distance (labels 0 for 0,
``d - 1`` for ``d >= 2``) with cross-entropy, on both views.
``L = L_contrastive + lambda_sdp * L_SDP``; ``sdp: false`` turns SDP off (CACL's released
pre-training script sets its weight to 0). Only ``C`` is exported.

The transformer's frozen frame CNN is shared by its query and momentum copies (it never changes),
so frame features are computed once per view, and ``x_hat``'s are ``x``'s permuted. They are not
cached across steps: the frames are augmented differently every time, and the frozen 2D CNN is a
few per cent of a step's cost at the paper's scale (ResNet-50 at 112 px is ~1 GFLOP per frame,
32 frames per sample, against ~1.3 TFLOP for the R3D-18 side).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.sampling import uniform_start
from ..data.views import Spatial, Window, take_views
from ..errors import ConfigError
from ..losses.cacl import cacl_contrastive_loss, networks
from ..losses.shuffle import (distance_to_label, num_shuffle_classes, sample_moved_frames_shuffle,
                              sample_shuffle_degree)
from ..models.heads import MLPHead
from ..models.video_transformer import VideoTransformer
from ..train import dist
from . import METHODS
from .base import Method, MethodSpec
from .image_moco import MixedConvMemoryFormat
from .moco import MomentumQueue, momentum_update


@dataclass(frozen=True)
class CaclConfig:
    pairs: Literal["cnn_only", "cross", "all"] = "all"
    temperature: float = 0.07
    queue_size: int = 2048
    momentum: float = 0.999
    proj_dim: int = 128
    proj_hidden: int = 512
    proj_layers: int = 2
    sdp: bool = True
    lambda_sdp: float = 1.0            # (ours): the paper gives no weight; its script uses 0
    sdp_hidden: int = 512
    shuffle_sampling: Literal["uniform_distance", "moved_frames"] = "uniform_distance"
    contrastive_reduction: Literal["mean", "sum"] = "mean"   # over the directed InfoNCE terms
    shuffle_bn: bool = True
    transformer: dict = field(default_factory=dict)   # VideoTransformer kwargs

    def validate(self) -> None:
        if self.queue_size < 1 or not (0.0 <= self.momentum < 1.0) or self.temperature <= 0:
            raise ConfigError("queue_size >= 1, 0 <= momentum < 1 and temperature > 0 required")
        if self.lambda_sdp < 0:
            raise ConfigError("lambda_sdp must be >= 0")


@dataclass(frozen=True)
class ShuffledClipSampler:
    """``{"clip0", "clip1": (T,S,S,C), "perm": (T,) int64, "sdp_label": int}``: two views (one
    spatial draw each) of one clip at a uniform start, and the frame order of its shuffled copy.
    The copy is made on the device from each augmented view, so ``x`` and ``x_hat`` share the
    view's draw (and only half the bytes cross from the worker)."""

    clip_len: int
    stride: int
    shuffle_sampling: str = "uniform_distance"
    spatial: Optional[Spatial] = None

    def __call__(self, video, rng: np.random.Generator) -> dict:
        start = uniform_start(video.num_frames, self.clip_len, self.stride, rng)
        if self.shuffle_sampling == "uniform_distance":
            perm, distance = sample_shuffle_degree(self.clip_len, rng)
        else:
            perm, distance = sample_moved_frames_shuffle(self.clip_len, rng)
        window = Window.clip(video, start, self.clip_len, self.stride)
        out = take_views(video, window, rng, self.spatial, ("clip0", "clip1"))
        out.update(perm=perm.astype(np.int64), sdp_label=distance_to_label(distance))
        return out


def permute_frames(x: torch.Tensor, perm: torch.Tensor, dim: int) -> torch.Tensor:
    """Reorder the time axis ``dim`` of each sample: ``out[b, ..., t] = x[b, ..., perm[b, t]]``."""
    shape = [1] * x.dim()
    shape[0], shape[dim] = perm.shape
    return x.gather(dim, perm.view(shape).expand_as(x))


def pair_kinds(terms) -> dict[str, list[str]]:
    """Term names ``"C1_T2"`` grouped by kind: ``same_net`` (1), ``cross_net`` (2, same
    augmentation), ``cross_net_aug`` (3)."""
    kinds: dict[str, list[str]] = {}
    for name in terms:
        q, k = name.split("_")
        kind = "same_net" if q[0] == k[0] else ("cross_net" if q[1] == k[1] else "cross_net_aug")
        kinds.setdefault(kind, []).append(name)
    return kinds


def _pair_embedding(z: torch.Tensor) -> torch.Tensor:
    """(2B, d) embeddings of [x; x_hat] -> (B, 2d) ``[E(x), E(x_hat)]``."""
    a, b = z.chunk(2)
    return torch.cat([a, b], 1)


@METHODS.register("cacl")
class CACL(MixedConvMemoryFormat, Method):
    Config = CaclConfig

    def __init__(self, spec: MethodSpec):
        super().__init__(spec)
        self.cfg = cfg = self.parse_args(spec)
        self.networks = networks(cfg.pairs)
        self.backbone = spec.build_backbone()
        dim = self.backbone.feature_dim
        self.head = MLPHead(2 * dim, cfg.proj_hidden, cfg.proj_dim, cfg.proj_layers, bn=False)
        self.key_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.key_head = copy.deepcopy(self.head).requires_grad_(False)
        self.queue = MomentumQueue(cfg.queue_size, cfg.proj_dim)
        if "T" in self.networks:
            if spec.modality != "rgb":
                raise ConfigError("cacl's transformer takes RGB frames (modality: rgb)")
            targs = {"max_frames": max(64, spec.clip_len), **cfg.transformer}
            try:
                self.transformer = VideoTransformer(in_channels=spec.in_channels, **targs)
            except TypeError as exc:
                raise ConfigError(f"pretrain.method_args.cacl.transformer: {exc}") from None
            tdim = self.transformer.feature_dim
            self.t_head = MLPHead(2 * tdim, cfg.proj_hidden, cfg.proj_dim, cfg.proj_layers, bn=False)
            # The momentum copy shares the frozen frame CNN: only the temporal part is copied.
            self.key_temporal = copy.deepcopy(self.transformer.temporal).requires_grad_(False)
            self.key_t_head = copy.deepcopy(self.t_head).requires_grad_(False)
            self.t_queue = MomentumQueue(cfg.queue_size, cfg.proj_dim)
        if cfg.sdp:
            self.sdp_head = nn.Sequential(nn.Linear(2 * dim, cfg.sdp_hidden), nn.ReLU(inplace=True),
                                          nn.Linear(cfg.sdp_hidden, num_shuffle_classes(spec.clip_len)))
        self._pending: dict[str, torch.Tensor] = {}

    def make_sampler(self):
        return ShuffledClipSampler(self.spec.clip_len, self.spec.stride, self.cfg.shuffle_sampling,
                                   self.augment.spatial)

    # -- encoders ----------------------------------------------------------------------------
    @torch.no_grad()
    def _cnn_key(self, pair: torch.Tensor) -> torch.Tensor:
        if self.cfg.shuffle_bn:
            pair, unshuffle = dist.batch_shuffle(pair)
            return dist.batch_unshuffle(self.key_backbone(pair), unshuffle)
        return self.key_backbone(pair)

    def _encode_view(self, x: torch.Tensor, perm: torch.Tensor, view: int, out: dict) -> torch.Tensor:
        """Queries and keys of one view; returns the CNN's ``[C(x), C(x_hat)]`` for SDP."""
        pair = torch.cat([x, permute_frames(x, perm, 2)])           # (2B, C, T, S, S)
        pair = pair.contiguous(memory_format=self.augment.memory_format)   # cat/gather drop it
        c_pair = _pair_embedding(self.backbone(pair))
        out["q"][f"C{view}"] = self.head(c_pair)
        with torch.no_grad():
            out["k"][f"C{view}"] = self.key_head(_pair_embedding(self._cnn_key(pair)))
        if "T" in self.networks:
            feats = self.transformer.frame_features(x)               # (B, T, F), frozen
            feats = torch.cat([feats, permute_frames(feats, perm, 1)])
            out["q"][f"T{view}"] = self.t_head(_pair_embedding(self.transformer.temporal(feats)))
            with torch.no_grad():
                out["k"][f"T{view}"] = self.key_t_head(_pair_embedding(self.key_temporal(feats)))
        return c_pair

    # -- step --------------------------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, batch):
        if "x0" in batch:
            return batch
        return {**batch, "x0": self.augment(batch["clip0"], view=0),
                "x1": self.augment(batch["clip1"], view=1)}

    def forward(self, batch):
        batch = self.prepare(batch)
        perm = batch["perm"].long()
        out: dict[str, dict] = {"q": {}, "k": {}}
        c_pairs = [self._encode_view(batch[f"x{v}"], perm, v + 1, out) for v in (0, 1)]
        queues = {"C": self.queue.keys.clone().detach()}
        if "T" in self.networks:
            queues["T"] = self.t_queue.keys.clone().detach()
        loss_nce, terms = cacl_contrastive_loss(out["q"], out["k"], queues, self.cfg.pairs,
                                                self.cfg.temperature, self.cfg.contrastive_reduction)
        self._pending = {"C": torch.cat([out["k"]["C1"], out["k"]["C2"]]).detach()}
        if "T" in self.networks:
            self._pending["T"] = torch.cat([out["k"]["T1"], out["k"]["T2"]]).detach()
        loss = loss_nce
        logs: dict = {"loss_contrastive": loss_nce.detach()}
        if self.cfg.sdp:
            labels = batch["sdp_label"].long()
            logits = [self.sdp_head(c) for c in c_pairs]
            loss_sdp = sum(F.cross_entropy(lg.float(), labels) for lg in logits) / len(logits)
            loss = loss + self.cfg.lambda_sdp * loss_sdp
            with torch.no_grad():
                acc = sum((lg.argmax(1) == labels).float().mean() for lg in logits) / len(logits)
            logs.update(loss_sdp=loss_sdp.detach(), sdp_acc=acc)
        with torch.no_grad():
            t = self.cfg.temperature
            logits_all = [lg for _, lg in terms.values()]
            logs["pos_sim"] = torch.stack([lg[:, 0].mean() for lg in logits_all]).mean() * t
            logs["neg_sim"] = torch.stack([lg[:, 1:].mean() for lg in logits_all]).mean() * t
            for kind, names in pair_kinds(terms).items():   # one curve per kind of positive pair
                logs[f"nce_{kind}"] = torch.stack([terms[n][0] for n in names]).mean()
        return loss, logs

    # -- hooks -------------------------------------------------------------------------------
    def after_step(self, step: int, ctx) -> None:
        m = self.cfg.momentum
        momentum_update(self.key_backbone, self.backbone, m)
        momentum_update(self.key_head, self.head, m)
        if "T" in self.networks:
            momentum_update(self.key_temporal, self.transformer.temporal, m)
            momentum_update(self.key_t_head, self.t_head, m)
        for net, keys in self._pending.items():
            (self.queue if net == "C" else self.t_queue).enqueue(dist.concat_all_gather(keys))
        self._pending = {}
