"""Clip augmentation: one draw per clip, per-frame switch, flow flip sign, colour ops."""
import torch
from torchvision.transforms.v2 import functional as TF

from vsslpipe.data.augment import AugmentConfig, build_augment
from vsslpipe.data.flowstore import quantize_flow

import numpy as np


def _static_clip(b=4, t=6, h=24, w=32):
    """Every frame identical: a consistent augmentation must keep them identical."""
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (b, 1, h, w, 3), dtype=torch.uint8)
    return frame.expand(b, t, h, w, 3).contiguous()


def test_consistent_augmentation_is_identical_across_frames():
    aug = build_augment(AugmentConfig(preset="cvrl"), "rgb", size=16)
    for view in (0, 1):
        out = aug(_static_clip(), view=view)
        assert out.shape == (4, 3, 6, 16, 16)
        assert torch.allclose(out, out[:, :, :1].expand_as(out), atol=1e-5)


def test_per_frame_variant_differs_across_frames():
    aug = build_augment(AugmentConfig(preset="cvrl", consistent=False), "rgb", size=16)
    out = aug(_static_clip(), view=0)
    assert not torch.allclose(out, out[:, :, :1].expand_as(out), atol=1e-3)


def test_clips_get_different_draws():
    aug = build_augment(AugmentConfig(), "rgb", size=16)
    clip = _static_clip(b=1).expand(6, -1, -1, -1, -1)
    out = aug(clip)
    assert not torch.allclose(out[0], out[1])


def _flow_clip(fx, fy, b=8, t=3, h=16, w=16):
    flow = np.zeros((b, t, h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = fx, fy
    return torch.from_numpy(quantize_flow(flow))


def test_flow_flip_negates_x_only():
    cfg = AugmentConfig(overrides={"flip_p": 0.5, "area": [1.0, 1.0], "aspect": [1.0, 1.0]})
    aug = build_augment(cfg, "flow", size=16)
    torch.manual_seed(1)
    clips = _flow_clip(8.0, -4.0)
    params = aug.draw(8, 16, 16, 0, torch.device("cpu"))
    out = aug(clips, params=params)
    assert out.shape == (8, 2, 3, 16, 16)
    flip = params["flip"]
    assert flip.any() and (~flip).any()
    x_mean = out[:, 0].mean(dim=(1, 2, 3))
    assert torch.allclose(x_mean[flip], torch.full_like(x_mean[flip], -8 / 20), atol=0.01)
    assert torch.allclose(x_mean[~flip], torch.full_like(x_mean[~flip], 8 / 20), atol=0.01)
    assert torch.allclose(out[:, 1], torch.full_like(out[:, 1], -4 / 20), atol=0.01)


def test_flow_compat_does_not_negate():
    cfg = AugmentConfig(flow_compat=True, overrides={"flip_p": 1.0, "jitter_p": 0.0,
                                                     "area": [1.0, 1.0], "aspect": [1.0, 1.0]})
    out = build_augment(cfg, "flow", size=16)(_flow_clip(8.0, 0.0))
    assert torch.allclose(out[:, 0], torch.full_like(out[:, 0], 8 / 20), atol=0.01)


def test_flip_mirrors_pixels():
    cfg = AugmentConfig(overrides={"flip_p": 1.0, "area": [1.0, 1.0], "aspect": [1.0, 1.0],
                                   "jitter_p": 0.0, "gray_p": 0.0, "blur_p": [0.0, 0.0]})
    aug = build_augment(cfg, "rgb", size=16)
    clip = _static_clip(b=2, h=16, w=16)
    plain = build_augment(AugmentConfig(overrides={**cfg.overrides, "flip_p": 0.0}), "rgb", 16)
    assert torch.allclose(aug(clip), plain(clip).flip(-1), atol=1e-5)


def test_color_ops_match_torchvision():
    aug = build_augment(AugmentConfig(), "rgb", size=8)
    torch.manual_seed(2)
    x = torch.rand(3, 1, 3, 8, 8)
    f = torch.tensor([0.7, 1.3, 0.5])
    for k, ref in [(0, TF.adjust_brightness), (1, TF.adjust_contrast), (2, TF.adjust_saturation)]:
        ours = aug._jitter_op(x, k, f)
        theirs = torch.stack([ref(x[i, 0], float(f[i])) for i in range(3)])[:, None]
        assert torch.allclose(ours, theirs, atol=1e-5), k
    # Hue is a YIQ rotation (DALI's formulation): identity at 0, keeps luma and greys, and a
    # full turn is the identity; a third of a turn maps pure red near pure green.
    gray = torch.full((1, 1, 3, 2, 2), 0.4)
    assert torch.allclose(aug._jitter_op(gray, 3, torch.tensor([0.3])), gray, atol=1e-5)
    assert torch.allclose(aug._jitter_op(x, 3, torch.zeros(3)), x, atol=1e-5)
    mid = 0.25 + 0.5 * x
    rotated = aug._jitter_op(mid, 3, torch.tensor([0.1, -0.2, 0.05]))
    luma = lambda t: (torch.tensor([0.299, 0.587, 0.114]).view(1, 1, 3, 1, 1) * t).sum(2)  # noqa: E731
    assert torch.allclose(luma(rotated), luma(mid), atol=1e-4)
    assert not torch.allclose(rotated, mid, atol=1e-2)


def test_blur_preserves_constant_and_sigma_smooths():
    aug = build_augment(AugmentConfig(), "rgb", size=16)
    x = torch.rand(2, 1, 3, 16, 16)
    y = aug._blur(x, torch.tensor([2.0, 0.3]))
    assert y[0].std() < y[1].std() < x[1].std()               # more sigma, smoother
    const = torch.full((1, 1, 3, 16, 16), 0.3)
    assert torch.allclose(aug._blur(const, torch.tensor([1.5])), const, atol=1e-6)
