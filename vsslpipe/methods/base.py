"""The method interface: what a self-supervised method gives the training engine.

A *method* is one ``nn.Module`` (subclass of :class:`Method`) registered by name in
:data:`vsslpipe.methods.METHODS`. The engine (``vsslpipe.train``) knows nothing else about it.
Implement a new method against this docstring alone:

1. **Construction.** ``cls(spec: MethodSpec)``. ``spec`` carries the modality, the backbone
   name/kwargs (``spec.build_backbone()`` builds one, ``spec.backbone_spec()`` is what goes in
   the checkpoint), the clip settings (``clip_len``, ``stride``, ``size``), the augmentation
   settings (``spec.augment``: an :class:`~vsslpipe.data.augment.AugmentConfig`) and
   ``spec.args``: this method's hyper-parameters from ``params.yaml``
   (``pretrain.defaults.method_args.<name>`` deep-merged with the experiment's overrides).
   Declare them as a frozen dataclass in the class attribute ``Config`` and read them with
   ``self.cfg = self.parse_args(spec)`` (unknown keys / bad types -> ``ConfigError`` naming the
   key). Name keys exactly like the paper's / MoCo builder's arguments (``temperature``,
   ``queue_size``, ``momentum``...).

2. **What a training sample holds** — ``make_sampler() -> sampler``. A sampler is a small
   picklable object (no tensors, no open files) called inside DataLoader workers as
   ``sampler(video: VideoSource, rng: numpy.random.Generator) -> dict``. ``video`` gives
   ``video.num_frames`` (frames usable by every modality the method requests: for flow the number
   of frame pairs), ``video.read(start, stop, step, modality=None)`` -> raw ``(T, H, W, C)``
   uint8 (RGB frames, or quantised flow with C=2; one contiguous read subsampled in memory),
   ``video.index`` (the video's index in the training set, ``0..len(dataset)-1``, stable across
   epochs: use it for memory banks), ``video.label``, ``video.group``, ``video.video_id`` and
   ``video.epoch`` (the sample's epoch). The sampler picks the temporal windows
   (:class:`~vsslpipe.data.views.Window`; past the last frame the last frame repeats) and cuts
   each into training views with :func:`~vsslpipe.data.views.take_views` and the spatial setting
   ``self.augment.spatial``: uint8 ``(T, size, size, C)``, each view its own random-resized crop
   and flip drawn from ``rng`` (so videos of any frame size batch together, and only
   training-size bytes leave the worker). Return a dict of views, numpy arrays and ints; keys are
   yours (``"clip0"``, ``"clip1"``, ``"perm"``, ``"sdp_label"``...). The dataset adds ``"index"``
   and ``"label"``. Samples are collated and moved to the training device unchanged (uint8 stays
   uint8: the bytes cross the bus, not floats); with ``decode: gpu`` the engine decodes JPEG views
   on the device before ``prepare`` (:func:`~vsslpipe.data.views.decode_views`), so a method sees
   the same views either way. Ready-made samplers live in :mod:`vsslpipe.data.sampling`
   (``TwoClipSampler`` with the CVRL gap distributions, ``SameClipSampler``). Which stores are
   opened is given by ``required_modalities()`` (default: ``(spec.modality,)``; a two-stream
   method returns ``("rgb", "flow")`` and passes ``modality=`` to the windows).

3. **Photometric augmentation on the device, in batches.** ``self.augment`` (built from
   ``spec.augment`` by :meth:`Method.__init__`) maps a uint8 batch of views ``(B, T, S, S, C)`` to
   the normalised network input ``(B, C, T, S, S)`` with one random draw per clip (per frame if
   ``augment.consistent`` is false): ``self.augment(batch["clip0"], view=0)``; ``view`` selects
   the per-view probabilities (CVRL: blur p 1.0 / 0.1, solarise 0 / 0.2);
   ``self.augment.plain(views)`` normalises without augmenting (centre views). For a two-stream
   method build a second one with ``build_augment(spec.augment, modality="flow", size=...)``.
   To apply the *same* photometric draw to two tensors, call ``self.augment(x, view, params=p)``
   with ``p = self.augment.draw(n, view, device)`` (CACL instead permutes the augmented clip).

   *Recommended:* do the augmentation in ``prepare(batch) -> batch`` (no grad, must not touch
   module state or the global RNG, and must not depend on the epoch: it may run before the
   epoch's hooks) instead of in ``forward``: the engine may run ``prepare`` for the next batch in
   a background thread while the current step computes (on CPU this hides the augmentation
   cost). ``self.augment`` draws from a generator the engine seeds per batch, so this stays
   deterministic. The default ``prepare`` returns the batch unchanged, so methods that augment
   inside ``forward`` keep working.

4. **The step.** ``forward(batch) -> (loss, logs)``: ``batch`` is the collated dict on the
   device; ``loss`` a scalar tensor to back-propagate; ``logs`` a dict of floats or 0-d tensors
   (the engine averages them per epoch and logs them with dvclive). Log at least ``pos_sim`` and
   ``neg_sim`` (mean cosine similarity of positive pairs / negatives) where meaningful: the
   engine plots their gap. Nothing in the step may wait for the device (no ``.item()``,
   ``int(tensor)``, ``bool(tensor)``, ``.cpu()``, ``nonzero`` or boolean-mask indexing, no
   ``torch.tensor(..., device=cuda)`` of host values): keep counters such as queue pointers on
   the host (:func:`vsslpipe.train.syncs.step_syncs` checks a step on a GPU).

5. **Hooks** (all optional, default no-ops), called by the engine on every rank:
   ``on_train_start(ctx)`` once (after a resume too); ``on_epoch_start(epoch, ctx)`` before the
   epoch's first step (memory-bank refresh: ``ctx.make_loader(sampler)`` gives an ordered,
   non-shuffled, non-dropping loader over the training set, on this rank's shard under DDP);
   ``after_step(step, ctx)`` after ``optimizer.step()`` under ``torch.no_grad()`` (momentum update,
   enqueue); ``on_epoch_end(epoch, ctx)``. ``ctx`` is a :class:`TrainContext`.

6. **Parameters and state.** The optimiser gets ``trainable_parameters()`` (default: every
   parameter with ``requires_grad``; freeze a momentum encoder with ``requires_grad_(False)``).
   Everything that must survive a resume is in ``state_dict()``: register queues, pointers and
   memory banks as *buffers* (``register_buffer``); plain Python state goes through
   ``get_extra_state`` / ``set_extra_state`` (nn.Module's own mechanism). A counter the step
   needs on the host (a queue's write pointer) lives in Python and is mirrored into its buffer
   with ``fill_`` (:class:`~vsslpipe.methods.moco.HostPointer`), read back only when a state
   dict is loaded. Never keep state in sampler objects.

7. **Export.** ``export_backbone()`` returns the sub-module whose weights become the checkpoint's
   ``backbone_state`` (default ``self.backbone``); ``export_spec()`` returns
   ``{"name", "kwargs"}`` to rebuild it (default: ``spec.backbone_spec()``); ``export_modality``
   is the modality it takes (default ``spec.modality``).

8. **Distributed.** Use :mod:`vsslpipe.train.dist` (``concat_all_gather``, ``shuffle_bn``
   helpers): every function is a no-op at world size 1, so single-device runs take the same path.

Register with::

    @METHODS.register("mymethod")
    class MyMethod(Method): ...
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol

import numpy as np
import torch
from torch import nn

from ..config import from_dict
from ..data.augment import AugmentConfig, build_augment
from ..data.modality import CHANNELS

Logs = dict[str, Any]


class VideoSource(Protocol):
    """One training video as a sampler sees it inside a loader worker."""

    video_id: str
    index: int          # position in the training set (stable; memory-bank slot)
    label: int
    group: str
    num_frames: int     # usable frames (flow: frame pairs; several modalities: the minimum)

    def read(self, start: int, stop: int, step: int = 1,
             modality: Optional[str] = None) -> np.ndarray:
        """Raw ``(T, H, W, C)`` uint8 (RGB or quantised flow), frames ``[start:stop:step]``."""


Sampler = Callable[[VideoSource, np.random.Generator], dict]


@dataclass(frozen=True)
class MethodSpec:
    """Everything a method is built from (resolved from ``params.yaml``)."""

    name: str
    modality: str
    backbone: str
    backbone_args: dict
    clip_len: int
    stride: int
    size: int
    augment: AugmentConfig
    args: dict = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return CHANNELS[self.modality]

    def backbone_spec(self, modality: Optional[str] = None) -> dict:
        kwargs = dict(self.backbone_args)
        kwargs["in_channels"] = CHANNELS[modality or self.modality]
        return {"name": self.backbone, "kwargs": kwargs}

    def build_backbone(self, modality: Optional[str] = None) -> nn.Module:
        from ..models import build_backbone

        spec = self.backbone_spec(modality)
        return build_backbone(spec["name"], **spec["kwargs"])


@dataclass
class TrainContext:
    """What hooks may use. ``make_loader(sampler)`` -> ordered loader over the training set."""

    device: torch.device
    epoch: int
    step: int
    epochs: int
    steps_per_epoch: int
    dataset_size: int
    labels: np.ndarray          # (dataset_size,) int, training-set order
    groups: list                # (dataset_size,) str, e.g. UCF101 'gXX'
    rank: int
    world_size: int
    make_loader: Callable[..., Iterable[dict]]
    log: Callable[[str], None] = print


class Method(nn.Module):
    """Base class; see the module docstring for the contract."""

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, spec: MethodSpec):
        super().__init__()
        self.spec = spec
        self.augment = build_augment(spec.augment, modality=spec.modality, size=spec.size)

    # -- construction helpers ------------------------------------------------------------
    def parse_args(self, spec: MethodSpec) -> Any:
        return from_dict(self.Config, spec.args or {}, f"pretrain.method_args.{spec.name}")

    # -- data ----------------------------------------------------------------------------
    def required_modalities(self) -> tuple[str, ...]:
        return (self.spec.modality,)

    def make_sampler(self) -> Sampler:
        raise NotImplementedError

    # -- step ----------------------------------------------------------------------------
    def prepare(self, batch: dict) -> dict:
        """Device-side, no-grad preprocessing (augmentation); may run ahead in a thread."""
        return batch

    def augmenters(self) -> list:
        """Every ClipAugment this method owns (the engine seeds and checkpoints them)."""
        from ..data.augment import ClipAugment

        return [v for _, v in sorted(vars(self).items()) if isinstance(v, ClipAugment)]

    def forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, Logs]:
        raise NotImplementedError

    # -- hooks ---------------------------------------------------------------------------
    def on_train_start(self, ctx: TrainContext) -> None:
        pass

    def on_epoch_start(self, epoch: int, ctx: TrainContext) -> None:
        pass

    def after_step(self, step: int, ctx: TrainContext) -> None:
        pass

    def on_epoch_end(self, epoch: int, ctx: TrainContext) -> None:
        pass

    # -- parameters and export -------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def export_backbone(self) -> nn.Module:
        return self.backbone  # type: ignore[attr-defined]

    def export_spec(self) -> dict:
        return self.spec.backbone_spec(self.export_modality)

    @property
    def export_modality(self) -> str:
        return self.spec.modality


def config_fields(cls: type) -> list[str]:
    """Names of a method's hyper-parameters (for help and docs)."""
    return [f.name for f in dataclasses.fields(cls.Config)]
