"""CVTCL (Wang et al. 2024) and, with LTCL off, CoCLR (Han et al. 2020): two-stream co-training.

``stage: init`` -- one stream (``modality``) alone: ``alpha * L_InfoNCE + beta * L_LTCL``
(section 2.4 step 1; CoCLR: InfoNCE only). ``stage: cotrain`` -- both streams, loaded from the
two init checkpoints, trained in alternation (``cycles`` x (RGB phase + flow phase), each
``epochs_per_phase`` epochs, ``first_phase`` first). In a phase the other stream is frozen
(``requires_grad`` off, BN in eval mode) and, for sample ``i``, the positives are its augmented
key plus the ``topk`` training videos nearest to ``i`` in the frozen stream's embedding space
(eqs. (2)-(5)); multi-positive InfoNCE against the queue; ``L2 = alpha * L_RF + beta * L_LTCL``
with LTCL on per stream (``ltcl_rgb``, ``ltcl_flow``; the paper keeps it for RGB only).

Memory banks (:mod:`vsslpipe.methods.membank`): at the start of every phase both banks are
recomputed (middle window, centre view): the frozen stream's with its query encoder (the space
mined in: matrix product + top-k on the GPU, FAISS on CPU), the trained stream's with its key encoder (the embeddings of the
mined positives, then overwritten by each step's keys). Queue entries of a mined video are
dropped from the denominator (they are positives already, not negatives). ``topk: 0`` is MoCo's
instance discrimination.

Loader views (:meth:`Cvtcl.make_sampler`) are cut in the workers; a co-training sample holds
only what its epoch's phase needs (the trained stream's views, the frozen stream's centre view).

The exported backbone is the ``modality`` stream; co-training writes the other stream's
checkpoint to ``export_other_to`` when the last epoch ends. Switches that reproduce the official
code (docs/methods.md): ``mining_source: queue``, ``same_source_positive``, ``drop_self_prob: 0.9``,
``wait_full_queue`` (CoCLR), ``ltcl_form: code`` and ``temperature: 0.1`` (CVTCL).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from ..data.augment import build_augment
from ..data.sampling import SameClipSampler
from ..data.twostream import CenterClipSampler, TwoStreamSampler, other_stream, trained_stream
from ..data.windows import IndependentWindowsSampler
from ..errors import ConfigError
from ..losses import info_nce, multi_positive_infonce
from ..models.checkpoint import load_checkpoint, save_checkpoint
from ..train import dist
from . import METHODS
from .base import Method, MethodSpec
from .cvtcl_config import MODALITIES, CoclrConfig, CvtclConfig  # noqa: F401  (re-exported)
from .mining import (drop_self_positive, make_bank_index, max_per_source, mine_topk,
                     mine_topk_in_queue, source_ids)
from .moco import queue_logit_logs
from .streams import Stream

def ltcl_on(cfg, modality: str) -> bool:
    """Whether the stream of ``modality`` trains with LTCL (init: always, when a term is on)."""
    on = getattr(cfg, f"ltcl_{modality}") if cfg.stage == "cotrain" else True
    return on and (cfg.use_local or cfg.use_lt)


def make_sampler(spec: MethodSpec, cfg):
    """Views cut in the workers: init ``clip0``/``clip1`` (+ ``clip_ltcl``: LTCL's key view of
    the query's window when the key comes from another window); co-training: the views of the
    stream each sample's epoch trains (:class:`~vsslpipe.data.twostream.TwoStreamSampler`).
    A function of the settings alone (benchmarks build it without the init checkpoints)."""
    length, stride = spec.clip_len, spec.stride
    two_windows = cfg.clips == "independent"
    spatial = {m: build_augment(spec.augment, modality=m, size=spec.size).spatial for m in MODALITIES}
    if cfg.stage == "cotrain":
        ltcl = tuple(m for m in MODALITIES if ltcl_on(cfg, m))
        return TwoStreamSampler(length, stride, spatial["rgb"], spatial["flow"],
                                cfg.epochs_per_phase, cfg.first_phase, two_windows, ltcl)
    if two_windows:
        extra = ("clip_ltcl",) if ltcl_on(cfg, spec.modality) else ()
        return IndependentWindowsSampler(length, stride, spatial=spatial[spec.modality], extra=extra)
    return SameClipSampler(length, stride, spatial=spatial[spec.modality])


@METHODS.register("cvtcl")
class Cvtcl(Method):
    Config = CvtclConfig

    def __init__(self, spec: MethodSpec):
        super().__init__(spec)
        self.cfg = self.parse_args(spec)
        cfg = self.cfg
        length = cfg.subclip_len or spec.clip_len // cfg.num_subclips
        if (cfg.use_local or cfg.use_lt) and (length < 1 or length * cfg.num_subclips > spec.clip_len):
            raise ConfigError(f"{cfg.num_subclips} sub-clips of {length} frames do not fit "
                              f"in clip_len {spec.clip_len}")
        self.cotrain = cfg.stage == "cotrain"
        # DDP: in co-training one stream gets no gradient per phase (engine passes this through)
        self.ddp_find_unused_parameters = self.cotrain or cfg.wait_full_queue
        mods = MODALITIES if self.cotrain else (spec.modality,)
        self.streams = nn.ModuleDict({m: Stream(spec, m, cfg) for m in mods})
        for m in mods:  # the engine finds ClipAugment attributes (channels_last on CUDA)
            setattr(self, f"augment_{m}", build_augment(spec.augment, modality=m, size=spec.size))
        self.register_buffer("bank_phase", torch.tensor(-1))
        # carries the graph of a step that must not update the encoders (wait_full_queue)
        self._idle = nn.Parameter(torch.zeros(())) if cfg.wait_full_queue else None
        self._pending: Optional[tuple] = None
        self._index = None
        self._mine_extra = 1     # bank rows a search skips per query (itself, or its source)
        self.phase, self.sources, self.labels = 0, None, None
        if self.cotrain:
            for m in MODALITIES:
                path = getattr(cfg, f"init_{m}")
                ckpt = load_checkpoint(path, expect_modality=m)
                state = ckpt.get("model_state", {})
                # a cvtcl/coclr init checkpoint nests the stream; a moco one does not
                nested = any(k.startswith(f"streams.{m}.") for k in state)
                prefix = f"streams.{m}." if nested else ""
                self.streams[m].load_init(state, prefix, path, with_queue=cfg.mining_source == "bank")

    # -- data ------------------------------------------------------------------------------
    def required_modalities(self) -> tuple[str, ...]:
        return MODALITIES if self.cotrain else (self.spec.modality,)

    def make_sampler(self):
        return make_sampler(self.spec, self.cfg)

    # -- schedule --------------------------------------------------------------------------
    @property
    def trained(self) -> str:
        if not self.cotrain:
            return self.spec.modality
        per = self.cfg.epochs_per_phase
        return trained_stream(self.phase * per, per, self.cfg.first_phase)

    @property
    def frozen(self) -> str:
        return "flow" if self.trained == "rgb" else "rgb"

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for s in self.streams.values() for p in s.query_parameters()]

    def on_train_start(self, ctx) -> None:
        self.labels = torch.tensor(np.asarray(ctx.labels), dtype=torch.long, device=ctx.device)
        sources = source_ids(ctx.labels, ctx.groups)
        self.sources = torch.from_numpy(sources).to(ctx.device)
        self._mine_extra = max_per_source(sources) if self.cfg.same_source_positive else 1
        if self.cotrain:
            expected = 2 * self.cfg.cycles * self.cfg.epochs_per_phase
            if ctx.epochs != expected:
                raise ConfigError(f"cvtcl/coclr cotrain: epochs must be 2 * cycles * "
                                  f"epochs_per_phase = {expected}, got {ctx.epochs}")
            for s in self.streams.values():
                if s.bank.num_videos != ctx.dataset_size:
                    s.bank.resize(ctx.dataset_size)
            if ctx.epoch >= ctx.epochs:   # resumed after the last epoch (killed before the end)
                self._export_other(ctx.epoch, ctx)

    def on_epoch_start(self, epoch: int, ctx) -> None:
        if not self.cotrain:
            return
        self.phase = epoch // self.cfg.epochs_per_phase
        for m, s in self.streams.items():
            s.set_trainable(m == self.trained)
        if int(self.bank_phase) != self.phase:       # a new phase (not a resume inside one)
            self._refresh_banks(ctx)
            if self.cfg.mining_source == "queue":
                self.streams[self.trained].queue.reset()
            self.bank_phase.fill_(self.phase)
        self._index = None

    @torch.no_grad()
    def _refresh_banks(self, ctx) -> None:
        """Frozen stream: query encoder in eval mode (as it embeds samples during the phase).
        Trained stream: key encoder in train mode (BN on batch statistics, as the keys that
        replace its bank entries during the phase), without gradient."""
        was_training = self.training
        for m, s in self.streams.items():
            trained = m == self.trained
            s.train(trained)
            # no shuffled BN here: rank shards of this pass may differ in size
            encode = (lambda x, s=s: s.key_head(s.key_backbone(x))) if trained else s.query
            aug = getattr(self, f"augment_{m}")
            loader = ctx.make_loader(CenterClipSampler(self.spec.clip_len, self.spec.stride, m,
                                                       aug.spatial))
            s.bank.refresh(lambda b, enc=encode, aug=aug: enc(aug.plain(b["clip"].to(ctx.device))),
                           loader)
        self.train(was_training)

    # -- step ------------------------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, batch):
        """Photometric augmentation of the worker's views (no phase state: it may run a batch
        ahead). Init: ``x1`` (view 0), ``x2`` (view 1), ``x2_ltcl``; co-training: the same for the
        batch's trained stream (``stream``) and ``z_in``, the frozen stream's centre view."""
        if "x1" in batch:
            return batch
        out = dict(batch)
        if self.cotrain:
            t = next(m for m in MODALITIES if m in batch)
            aug = getattr(self, f"augment_{t}")
            out.update(stream=t, x1=aug(batch[t], view=0), x2=aug(batch[f"{t}_key"], view=1))
            if f"{t}_ltcl" in batch:
                out["x2_ltcl"] = aug(batch[f"{t}_ltcl"], view=1)
            o = other_stream(t)
            out["z_in"] = getattr(self, f"augment_{o}").plain(batch[f"{o}_center"])
            return out
        aug = getattr(self, f"augment_{self.spec.modality}")
        out.update(x1=aug(batch["clip0"], view=0), x2=aug(batch["clip1"], view=1))
        if "clip_ltcl" in batch:
            out["x2_ltcl"] = aug(batch["clip_ltcl"], view=1)
        return out

    def forward(self, batch):
        batch = self.prepare(batch)
        return self._cotrain_step(batch) if self.cotrain else self._init_step(batch)

    def _ltcl_on(self, m: str) -> bool:
        return ltcl_on(self.cfg, m)

    def _ltcl(self, stream: Stream, x1, x2, on: bool, code_divisor: float):
        if not on or not (self.cfg.use_local or self.cfg.use_lt):
            return None, {}
        return stream.ltcl(x1, x2, self.cfg, code_divisor)

    def _init_step(self, batch):
        cfg, m = self.cfg, self.spec.modality
        stream = self.streams[m]
        x1, x2 = batch["x1"], batch["x2"]
        x2_ltcl = batch.get("x2_ltcl", x2)
        q, k = stream.query(x1), stream.key(x2)
        loss_nce, logits = info_nce(q, k, stream.queue.keys.clone().detach(), cfg.temperature)
        loss = cfg.alpha * loss_nce
        lt, parts = self._ltcl(stream, x1, x2_ltcl, True, 3.0)
        if lt is not None:
            loss = loss + cfg.beta * lt
        self._pending = (k.detach(), batch["index"], None)
        return loss, self._logs(logits, loss_nce, parts)

    def _cotrain_step(self, batch):
        cfg, t = self.cfg, self.trained
        if batch["stream"] != t:
            raise RuntimeError(f"a batch for the {batch['stream']} phase reached the {t} phase "
                               "(the sampler's schedule and the method's disagree)")
        st, sf = self.streams[t], self.streams[self.frozen]
        sf.eval()                                         # the frozen stream is a fixed sampler
        idx = batch["index"].long()
        x1, x2 = batch["x1"], batch["x2"]
        x2_ltcl = batch.get("x2_ltcl", x2)
        q, k = st.query(x1), st.key(x2)
        with torch.no_grad():
            z_other = sf.query(batch["z_in"])
        queue = st.queue
        negatives = queue.keys.clone().detach()
        b, n_q = q.shape[0], negatives.shape[0]
        filled = queue.index >= 0
        same_source = torch.zeros(b, n_q, dtype=torch.bool, device=q.device)
        if cfg.same_source_positive:
            q_src = torch.where(filled, self.sources[queue.index.clamp(min=0)], -1)
            same_source = q_src[None] == self.sources[idx][:, None]
        self_pos = (q * k).sum(1, keepdim=True)
        if cfg.mining_source == "bank":
            if self._index is None:                   # once per epoch: the bank is fixed
                self._index = make_bank_index(sf.bank.emb)
            mined = mine_topk(self._index, z_other, cfg.topk, idx,
                              self.sources if cfg.same_source_positive else None,
                              extra=self._mine_extra)                                # (B, K)
            mined_emb = st.bank.emb[mined]                                           # (B, K, D)
            logits = torch.cat([self_pos, torch.einsum("bd,bkd->bk", q, mined_emb),
                                q @ negatives.t()], 1) / cfg.temperature
            ones = torch.ones(b, 1 + mined.shape[1], dtype=torch.bool, device=q.device)
            pos = torch.cat([ones, same_source], 1)
            stale = (queue.index[None, None, :] == mined[:, :, None]).any(1)        # (B, Q)
            valid = torch.cat([ones, ~stale], 1)
            mined_labels = self.labels[mined]
        else:
            logits = torch.cat([self_pos, q @ negatives.t()], 1) / cfg.temperature
            mined_mask = torch.zeros_like(same_source)
            if queue.full:
                exclude = ~filled[None] | same_source | (queue.index[None] == idx[:, None])
                mined_mask = mine_topk_in_queue(z_other, queue.other, cfg.topk, exclude)
            pos = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=q.device),
                             mined_mask | same_source], 1)
            valid = None
            mined_labels = torch.where(mined_mask, self.labels[queue.index.clamp(min=0)][None], -1)
        pos = drop_self_positive(pos, cfg.drop_self_prob)
        loss_rf = multi_positive_infonce(logits, pos, valid)
        code = cfg.ltcl_form == "code"
        lt, parts = self._ltcl(st, x1, x2_ltcl, getattr(cfg, f"ltcl_{t}"), 1.0 if code else 3.0)
        loss = cfg.alpha * loss_rf + (cfg.beta * lt if lt is not None else 0.0)
        if code and lt is not None:   # the released co-training script: (L_RF + local + LT) / 3
            loss = loss / 3.0
        self._pending = (k.detach(), idx, z_other.detach())
        if cfg.wait_full_queue and not queue.full:   # CoCLR's code: enqueue only, no update
            loss = self._idle * 0.0
        # the self-positive and the queue columns, by slices (a list index is host data)
        logs = self._logs(torch.cat([logits[:, :1], logits[:, logits.shape[1] - n_q:]], 1),
                          loss_rf, parts)
        # monitoring only (CoCLR's "sampling accuracy"): labels never enter the loss
        hits = (mined_labels == self.labels[idx][:, None]).float().sum()
        logs["mined_precision"] = hits / (mined_labels >= 0).sum().clamp(min=1)
        logs["rgb_phase"] = float(t == "rgb")
        return loss, logs

    def _logs(self, logits: torch.Tensor, loss_nce: torch.Tensor, parts: dict) -> dict:
        return {"loss_nce": loss_nce.detach(), **parts,
                **queue_logit_logs(logits, self.cfg.temperature)}

    def after_step(self, step: int, ctx) -> None:
        if self._pending is None:
            return
        k, idx, other = self._pending
        self._pending = None
        stream = self.streams[self.trained]
        stream.momentum_update(self.cfg.momentum)
        keys, index = dist.concat_all_gather(k), dist.concat_all_gather(idx)
        stream.queue.enqueue(keys, index, None if other is None else dist.concat_all_gather(other))
        if self.cotrain:
            stream.bank.update(index, keys, gather=False)   # already gathered

    # -- export ----------------------------------------------------------------------------
    def export_backbone(self) -> nn.Module:
        return self.streams[self.spec.modality].backbone

    def on_epoch_end(self, epoch: int, ctx) -> None:
        if epoch + 1 == ctx.epochs:
            self._export_other(epoch + 1, ctx)

    def _export_other(self, epoch: int, ctx) -> None:
        """Co-training: the stream that is not ``modality`` as a checkpoint of its own."""
        path = self.cfg.export_other_to
        if self.cotrain and path and ctx.rank == 0:
            other = "flow" if self.spec.modality == "rgb" else "rgb"
            save_checkpoint(path, {
                "method": self.spec.name, "modality": other,
                "backbone": self.spec.backbone_spec(other),
                "backbone_state": self.streams[other].backbone.state_dict(),
                "clip": {"clip_len": self.spec.clip_len, "stride": self.spec.stride,
                         "size": self.spec.size},
                "config": {"method": self.spec.name, "modality": other,
                           "backbone": self.spec.backbone, "method_args": dict(self.spec.args)},
                "epoch": epoch})
