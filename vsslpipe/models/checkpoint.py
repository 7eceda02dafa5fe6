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


EXPORT_NEEDS = "export needs a video encoder's checkpoint from `vsslpipe pretrain` (models/<experiment>/final.pt)"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    expect_method: Optional[str] = None,
                    expect_modality: Optional[str] = None,
                    needs: Optional[str] = None) -> dict[str, Any]:
    """Load a vsslpipe checkpoint safely (``weights_only=True``); clear errors on mismatch.
    A file that is not a checkpoint is named with what it is, and ``needs`` (what the caller
    wanted, e.g. :data:`EXPORT_NEEDS`) is appended."""
    path = Path(path)
    hint = f"; {needs}" if needs else ""
    if path.is_dir():
        raise DataError(f"{path}: a folder, not a checkpoint file{hint}")
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found{hint}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise DataError(f"{path}: not a vsslpipe checkpoint: it is {_describe(path, exc)}{hint}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(f"{path}: not a vsslpipe checkpoint: it is a PyTorch file without the "
                        f"{FORMAT!r} format key (not written by vsslpipe){hint}")
    if expect_method is not None and ckpt.get("method") != expect_method:
        raise DataError(f"{path}: checkpoint of method {ckpt.get('method')!r}, "
                        f"expected {expect_method!r}")
    if expect_modality is not None and ckpt.get("modality") != expect_modality:
        raise DataError(f"{path}: checkpoint of modality {ckpt.get('modality')!r}, "
                        f"expected {expect_modality!r}")
    return ckpt


def _describe(path: Path, exc: Exception) -> str:
    from ..eval.features import describe_file   # torch-free; only needed on this error path

    kind = describe_file(path)
    if kind == "a PyTorch checkpoint":   # loadable by torch, but not safely: not ours
        return f"a PyTorch file that does not load with weights_only ({exc.__class__.__name__})"
    return kind


def check_video_encoder(ckpt: dict[str, Any], path: str | Path) -> None:
    """DataError for a checkpoint whose backbone is not a video encoder (``pretrain-frames``'
    frame CNN: a 2D image encoder that export, fine-tuning and retrieval cannot use as one)."""
    spec = ckpt.get("backbone") or {}
    if spec.get("name") == "frame_cnn" or ckpt.get("method") == "image_moco":
        raise DataError(
            f"{path}: a frame-CNN checkpoint (method {ckpt.get('method')!r}, backbone "
            f"{spec.get('name')!r}, from `vsslpipe pretrain-frames`): a 2D image encoder, not a "
            f"video encoder; {EXPORT_NEEDS}")


def load_backbone(path: str | Path, map_location: str | torch.device = "cpu",
                  expect_modality: Optional[str] = None,
                  needs: Optional[str] = EXPORT_NEEDS) -> tuple[nn.Module, dict[str, Any]]:
    """The trained video backbone of a checkpoint (eval mode) and the checkpoint's metadata;
    a frame-CNN checkpoint is refused (:func:`check_video_encoder`)."""
    ckpt = load_checkpoint(path, map_location, expect_modality=expect_modality, needs=needs)
    check_video_encoder(ckpt, path)
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
