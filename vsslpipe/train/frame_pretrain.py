"""Image MoCo on the training split's frames: the frozen frame CNN of CACL's video transformer.

CACL (Guo et al. 2022, Sec. 3.1) pre-trains its ResNet-50 frame encoder with MoCo on UCF101
training frames and freezes it; the weights were never released, so the pipeline offers the step.
It is MoCo v2 run through the ordinary training engine: the ``image_moco`` method
(:mod:`vsslpipe.methods.image_moco`: ``frames_per_video`` random frames of each training video per
epoch, each frame its own instance) with the ``frame_cnn`` backbone (a 2D CNN,
:class:`vsslpipe.models.video_transformer.FrameCNN`), so resume, checkpoints, dvclive curves and
DDP come with it.

``params.yaml`` section ``pretrain_frames``: ``arch`` (``resnet50`` as the paper, ``tiny2d`` on
CPU) plus any ``pretrain`` key except the fixed ones below; unspecified keys take MoCo v2's
image recipe (:data:`DEFAULTS`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from ..config import cli_origin, from_dict, load_params
from ..errors import ConfigError
from .config import PretrainConfig, deep_merge

SECTION = "pretrain_frames"
EXPERIMENT = "frames_moco"
FIXED = {"method": "image_moco", "modality": "rgb", "backbone": "frame_cnn", "clip_len": 1, "stride": 1}
# MoCo v2 (Chen et al. 2020): SGD lr 0.03, tau 0.2, 2-layer MLP head, its augmentation (crop
# 0.2-1, jitter .4/.4/.4/.1 p .8, gray .2, blur p .5 = our "coclr" preset), cosine schedule.
DEFAULTS: dict[str, Any] = {
    "optimizer": "sgd", "lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4,
    "augment": {"preset": "coclr"},
    "method_args": {"image_moco": {"temperature": 0.2, "queue_size": 4096, "momentum": 0.999,
                                   "proj_dim": 128, "proj_layers": 2, "frames_per_video": 8}},
    "out_dir": "models", "live_dir": "dvclive",
}


def load_frame_moco_config(params: Any, overrides: Optional[Mapping[str, Any]] = None,
                           section_name: str = SECTION) -> PretrainConfig:
    """The ``pretrain_frames`` section (or another of that shape) as a :class:`PretrainConfig`."""
    loaded = load_params(params)
    label = loaded.label(section_name)
    raw = loaded.data.get(section_name)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"--section: no {section_name!r} section in {label}")
    section = dict(raw)
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    section.update(cli)
    fixed = sorted(set(section) & set(FIXED))
    if fixed:
        raise ConfigError(f"{label}: {section_name}.{fixed[0]} cannot be set "
                          f"(image MoCo is {FIXED})")
    arch = section.pop("arch", "resnet50")
    merged = deep_merge(DEFAULTS, section)
    merged.update(FIXED)
    merged["backbone_args"] = {"arch": arch}
    return from_dict(PretrainConfig, merged, cli_origin(f"{label}: {section_name}", cli))


def weights_path(cfg: PretrainConfig) -> Path:
    """Where the final frame-CNN checkpoint goes (the transformer's ``frame_weights``)."""
    return cfg.out_dir / EXPERIMENT / "final.pt"
