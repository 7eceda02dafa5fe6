"""Checkpoint files: plain dicts of state dicts and Python values (``weights_only`` loadable).

Every checkpoint carries what export needs to rebuild the backbone without the training code::

    {"format": "vsslpipe-checkpoint", "format_version": 1,
     "method": "moco", "modality": "rgb" | "flow",
     "backbone": {"name": "r3d_18", "kwargs": {"in_channels": 3, ...}},
     "backbone_state": <state dict of the query backbone>,
     "clip": {"clip_len": 16, "stride": 2, "size": 112},   # the input the backbone was trained on
     "config": <the resolved pretrain config as a plain dict>,
     ... training state (model, optimiser, scheduler, RNG, epoch) for resuming ...}
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import DataError
from . import build_backbone

FORMAT = "vsslpipe-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (with format keys added) atomically."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    expect_method: Optional[str] = None,
                    expect_modality: Optional[str] = None) -> dict[str, Any]:
    """Load a vsslpipe checkpoint safely (``weights_only=True``); clear errors on mismatch."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise DataError(f"{path}: not a loadable checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(f"{path}: not a vsslpipe checkpoint")
    if expect_method is not None and ckpt.get("method") != expect_method:
        raise DataError(f"{path}: checkpoint of method {ckpt.get('method')!r}, "
                        f"expected {expect_method!r}")
    if expect_modality is not None and ckpt.get("modality") != expect_modality:
        raise DataError(f"{path}: checkpoint of modality {ckpt.get('modality')!r}, "
                        f"expected {expect_modality!r}")
    return ckpt


def load_backbone(path: str | Path, map_location: str | torch.device = "cpu",
                  expect_modality: Optional[str] = None) -> tuple[nn.Module, dict[str, Any]]:
    """The trained backbone of a checkpoint (eval mode) and the checkpoint's metadata."""
    ckpt = load_checkpoint(path, map_location, expect_modality=expect_modality)
    spec = ckpt["backbone"]
    backbone = build_backbone(spec["name"], **spec.get("kwargs", {}))
    try:
        backbone.load_state_dict(ckpt["backbone_state"])
    except RuntimeError as exc:
        raise DataError(f"{path}: backbone weights do not match {spec['name']!r} "
                        f"({str(exc).splitlines()[0]})") from None
    backbone.eval()
    meta = {k: v for k, v in ckpt.items() if k in ("method", "modality", "backbone", "clip", "config", "epoch")}
    return backbone, meta
