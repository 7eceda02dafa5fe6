"""Photometric augmentation on the device: one draw per clip, per-frame switch, colour ops against
torchvision, the batched (no-nonzero) form against the earlier per-subset form, no host reads."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from vsslpipe.data.augment import AugmentConfig, _gray, _hue_matrices, build_augment
from vsslpipe.data.flowstore import quantize_flow

from dispatch_check import host_reads


def _static_clip(b=4, t=6, s=16):
    """Every frame identical: a consistent augmentation must keep them identical."""
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (b, 1, s, s, 3), dtype=torch.uint8)
    return frame.expand(b, t, s, s, 3).contiguous()


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


def test_clips_get_different_draws_and_views_must_have_the_training_size():
    aug = build_augment(AugmentConfig(), "rgb", size=16)
    clip = _static_clip(b=1).expand(6, -1, -1, -1, -1)
    out = aug(clip)
    assert not torch.allclose(out[0], out[1])
    with pytest.raises(ValueError, match=r"training views \(B, T, 16, 16, C\)"):
        aug(torch.zeros(2, 4, 20, 24, 3, dtype=torch.uint8))


def test_flow_is_dequantised_and_normalised_and_compat_jitters():
    flow = np.zeros((2, 3, 16, 16, 2), np.float32)
    flow[..., 0], flow[..., 1] = 8.0, -4.0
    q = torch.from_numpy(quantize_flow(flow))
    out = build_augment(AugmentConfig(), "flow", size=16)(q)
    assert out.shape == (2, 2, 3, 16, 16)
    assert torch.allclose(out[:, 0], torch.full_like(out[:, 0], 8 / 20), atol=0.005)
    assert torch.allclose(out[:, 1], torch.full_like(out[:, 1], -4 / 20), atol=0.005)
    compat = build_augment(AugmentConfig(flow_compat=True, overrides={"jitter_p": 1.0}), "flow", 16)
    torch.manual_seed(0)
    assert not torch.allclose(compat(q)[:, 0], out[:, 0], atol=0.01)   # brightness/contrast on q


def _params(aug, n, order_first, factors):
    """Jitter with op ``order_first`` first and the given factors, nothing else."""
    p = aug.draw(n, 0, torch.device("cpu"))
    p["jitter"] = torch.ones(n, dtype=torch.bool)
    p["order"] = torch.tensor([order_first] + [k for k in range(4) if k != order_first]).repeat(n, 1)
    p["factors"] = factors
    for k in ("gray", "blur", "solarize"):
        p[k] = torch.zeros(n, dtype=torch.bool)
    return p


def test_each_colour_op_matches_torchvision():
    aug = build_augment(AugmentConfig(), "rgb", size=8)
    torch.manual_seed(2)
    x = torch.rand(3, 1, 3, 8, 8)
    f = torch.tensor([0.7, 1.3, 0.5])
    for k, ref in [(0, TF.adjust_brightness), (1, TF.adjust_contrast), (2, TF.adjust_saturation)]:
        factors = torch.tensor([1.0, 1.0, 1.0, 0.0]).repeat(3, 1)   # the others: identity
        factors[:, k] = f
        ours = aug._color_jitter(x.clone(), _params(aug, 3, k, factors))
        theirs = torch.stack([ref(x[i, 0], float(f[i])) for i in range(3)])[:, None]
        assert torch.allclose(ours, theirs, atol=1e-5), k
    # Hue is a YIQ rotation (DALI's formulation): identity at 0, keeps luma and greys, a full
    # turn is the identity.
    eye = torch.eye(3).expand(2, 3, 3)
    assert torch.allclose(_hue_matrices(torch.tensor([0.0, 1.0])), eye, atol=1e-5)
    gray = torch.full((1, 1, 3, 2, 2), 0.4)
    hue = lambda v, h: aug._color_jitter(v.clone(), _params(aug, v.shape[0], 3, torch.tensor(  # noqa: E731
        [[1.0, 1.0, 1.0, hh] for hh in h])))
    assert torch.allclose(hue(gray, [0.3]), gray, atol=1e-5)
    mid = 0.25 + 0.5 * x
    rotated = hue(mid, [0.1, -0.2, 0.05])
    luma = lambda t: (torch.tensor([0.299, 0.587, 0.114]).view(1, 1, 3, 1, 1) * t).sum(2)  # noqa: E731
    assert torch.allclose(luma(rotated), luma(mid), atol=1e-4)
    assert not torch.allclose(rotated, mid, atol=1e-2)


def test_blur_preserves_constant_sigma_smooths_and_off_is_identity():
    aug = build_augment(AugmentConfig(), "rgb", size=16)
    x = torch.rand(3, 1, 3, 16, 16)
    y = aug._blur(x, torch.tensor([2.0, 0.3, 2.0]), torch.tensor([True, True, False]))
    assert y[0].std() < y[1].std() < x[1].std()               # more sigma, smoother
    assert torch.equal(y[2], x[2])                            # delta kernel: unchanged
    const = torch.full((1, 1, 3, 16, 16), 0.3)
    assert torch.allclose(aug._blur(const, torch.tensor([1.5])), const, atol=1e-6)


# -- the earlier implementation: ops on the subsets of clips that drew them (torch.nonzero) -----
def _old_jitter_op(x, k, f):
    fb = f.view(-1, 1, 1, 1, 1)
    if k == 0:
        return (x * fb).clamp_(0, 1)
    if k == 1:
        return (fb * x + (1 - fb) * _gray(x).mean(dim=(-2, -1), keepdim=True)).clamp_(0, 1)
    if k == 2:
        return (fb * x + (1 - fb) * _gray(x)).clamp_(0, 1)
    return torch.einsum("nij,ntjhw->ntihw", _hue_matrices(f), x).clamp_(0, 1)


def _old_blur(x, sigma, size):
    n, t, c, h, w = x.shape
    k = max(3, int(0.1 * size) // 2 * 2 + 1)
    r = torch.arange(k, dtype=x.dtype) - k // 2
    kern = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None] ** 2))
    kern = (kern / kern.sum(1, keepdim=True)).repeat_interleave(t * c, 0)
    y = x.reshape(1, n * t * c, h, w)
    y = F.conv2d(F.pad(y, (k // 2, k // 2, 0, 0), mode="reflect"), kern[:, None, None, :], groups=n * t * c)
    y = F.conv2d(F.pad(y, (0, 0, k // 2, k // 2), mode="reflect"), kern[:, None, :, None], groups=n * t * c)
    return y.view_as(x)


def _old_photometric(x, p, size):
    f = p["factors"]
    for pos in range(4):
        op = p["order"][:, pos]
        for k in range(4):
            idx = torch.nonzero((op == k) & p["jitter"]).flatten()
            if idx.numel():
                x[idx] = _old_jitter_op(x[idx], k, f[idx, k])
    idx = torch.nonzero(p["gray"]).flatten()
    if idx.numel():
        x[idx] = _gray(x[idx]).expand(-1, -1, 3, -1, -1)
    idx = torch.nonzero(p["blur"]).flatten()
    if idx.numel():
        x[idx] = _old_blur(x[idx], p["sigma"][idx], size)
    idx = torch.nonzero(p["solarize"]).flatten()
    if idx.numel():
        sub = x[idx]
        x[idx] = torch.where(sub >= 0.5, 1.0 - sub, sub)
    return x


@pytest.mark.parametrize("preset,view", [("cvrl", 0), ("cvrl", 1), ("coclr", 0)])
def test_batched_photometric_equals_the_per_subset_implementation(preset, view):
    cfg = AugmentConfig(preset=preset, overrides={"solarize_p": [0.5, 0.5], "gray_p": 0.3})
    aug = build_augment(cfg, "rgb", size=16)
    aug.generator = torch.Generator().manual_seed(11)
    x = torch.rand(12, 3, 3, 16, 16)
    p = aug.draw(12, view, torch.device("cpu"))
    for k in ("jitter", "gray", "blur", "solarize"):             # both kinds of unit present
        if p[k].all() or not p[k].any():
            p[k][:6] = ~p[k][:6]
    ours = aug.apply_photometric(x.clone(), p, view)
    theirs = _old_photometric(x.clone(), p, 16)
    assert torch.allclose(ours, theirs, atol=2e-5)


def test_augmentation_reads_nothing_back_from_the_device():
    """The dispatched ops of an augmentation call: no nonzero, no boolean-mask indexing, no
    scalar reads, no host data copied in (after the first call has made the constants)."""
    for modality, cfg in (("rgb", AugmentConfig(preset="cvrl")),
                          ("rgb", AugmentConfig(preset="coclr", consistent=False)),
                          ("flow", AugmentConfig(flow_compat=True))):
        aug = build_augment(cfg, modality, size=16)
        c = 3 if modality == "rgb" else 2
        views = torch.randint(0, 256, (4, 3, 16, 16, c), dtype=torch.uint8)
        aug(views, view=0)
        assert host_reads(lambda: (aug(views, view=0), aug(views, view=1), aug.plain(views))) == []
