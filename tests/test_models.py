"""Every registered backbone: forward/backward shapes for RGB and flow; heads; checkpoints."""
import pytest
import torch

from vsslpipe.errors import DataError
from vsslpipe.models import BACKBONES, build_backbone
from vsslpipe.models.checkpoint import load_backbone, load_checkpoint, save_checkpoint
from vsslpipe.models.heads import MLPHead

# Smallest input each architecture accepts (C3D pools time 4 times: 16 frames).
TINY = {"c3d": (16, 16), "s3d": (8, 32)}


@pytest.mark.parametrize("name", BACKBONES.names())
@pytest.mark.parametrize("channels", [3, 2])
def test_backbone_forward_backward(name, channels):
    torch.manual_seed(0)
    net = build_backbone(name, in_channels=channels)
    t, s = TINY.get(name, (4, 16))
    x = torch.randn(2, channels, t, s, s)
    y = net(x)
    assert y.shape == (2, net.feature_dim)
    y.square().mean().backward()
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)


@pytest.mark.parametrize("name", ["r3d_18", "s3d"])
def test_pooling_is_adaptive(name):
    net = build_backbone(name).eval()
    with torch.no_grad():
        for size in (24, 40):   # stand-ins for 112 / 128 at a tenth of the cost
            assert net(torch.randn(1, 3, 8, size, size)).shape == (1, net.feature_dim)


def test_mlp_head_normalised():
    head = MLPHead(16, 32, 8, layers=3)
    z = head(torch.randn(4, 16))
    assert z.shape == (4, 8)
    assert torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-5)


def test_checkpoint_roundtrip_and_mismatch(tmp_path):
    net = build_backbone("tiny3d", in_channels=2, width=4)
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"method": "cvrl", "modality": "flow",
                           "backbone": {"name": "tiny3d", "kwargs": {"in_channels": 2, "width": 4}},
                           "backbone_state": net.state_dict(), "clip": {"clip_len": 8}})
    loaded, meta = load_backbone(path)
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert meta["modality"] == "flow"
    with pytest.raises(DataError, match="method 'cvrl', expected 'moco'"):
        load_checkpoint(path, expect_method="moco")
    with pytest.raises(DataError, match="modality 'flow', expected 'rgb'"):
        load_checkpoint(path, expect_modality="rgb")
