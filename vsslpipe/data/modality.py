"""How each modality becomes network input (one convention for training and evaluation).

RGB: uint8 -> [0, 1] -> ImageNet mean/std (as CoCLR does); 3 channels.
Flow: pixels / bound -> [-1, 1] (bound 20, the quantisation bound); 2 channels (x, y).
Clips are (B, C, T, H, W) float tensors.
"""
from __future__ import annotations

import torch

from .flowstore import DEFAULT_BOUND

MODALITIES = ("rgb", "flow")
CHANNELS = {"rgb": 3, "flow": 2}
RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)


_CONSTANTS: dict = {}


def constant(values, like: torch.Tensor) -> torch.Tensor:
    """``values`` as a tensor on ``like``'s device and dtype, made once per device: a fresh
    host-to-device copy every step would synchronise with the GPU."""
    key = (tuple(values), like.device, like.dtype)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.tensor(values, dtype=like.dtype, device=like.device)
    return _CONSTANTS[key]


def normalize_rgb(clip01: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) in [0, 1] -> normalised."""
    mean = constant(RGB_MEAN, clip01).view(1, 3, 1, 1, 1)
    std = constant(RGB_STD, clip01).view(1, 3, 1, 1, 1)
    return (clip01 - mean) / std


def normalize_flow(flow_px: torch.Tensor, bound: float = DEFAULT_BOUND) -> torch.Tensor:
    """(B, 2, T, H, W) in pixels -> [-1, 1]."""
    return (flow_px / bound).clamp(-1.0, 1.0)


def view_to_input(views: torch.Tensor, modality: str, bound: float = DEFAULT_BOUND,
                  memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Un-augmented network input from uint8 training views ``(B, T, S, S, C)`` (the centre
    view): ``(B, C, T, S, S)`` float, normalised."""
    x = views.permute(0, 4, 1, 2, 3).float()
    if modality == "rgb":
        x = normalize_rgb(x / 255.0)
    else:
        x = normalize_flow(x * (2.0 * bound / 255.0) - bound, bound)
    return x.contiguous(memory_format=memory_format)
