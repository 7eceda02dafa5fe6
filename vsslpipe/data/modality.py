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


def normalize_rgb(clip01: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) in [0, 1] -> normalised."""
    mean = clip01.new_tensor(RGB_MEAN).view(1, 3, 1, 1, 1)
    std = clip01.new_tensor(RGB_STD).view(1, 3, 1, 1, 1)
    return (clip01 - mean) / std


def normalize_flow(flow_px: torch.Tensor, bound: float = DEFAULT_BOUND) -> torch.Tensor:
    """(B, 2, T, H, W) in pixels -> [-1, 1]."""
    return (flow_px / bound).clamp(-1.0, 1.0)
