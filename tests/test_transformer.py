"""CACL's video transformer: shapes, the frozen frame CNN, temporal order, frame-CNN weights."""
from __future__ import annotations

import copy

import pytest
import torch

from vsslpipe.errors import ConfigError
from vsslpipe.models import build_backbone
from vsslpipe.models.checkpoint import save_checkpoint
from vsslpipe.models.video_transformer import FrameCNN, VideoTransformer

SMALL = dict(frame_cnn="tiny2d", token_dim=32, layers=2, heads=4, max_frames=16, dropout=0.0)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_forward_shape(pooling):
    torch.manual_seed(0)
    model = build_backbone("video_transformer", in_channels=3, pooling=pooling, **SMALL)
    out = model(torch.randn(3, 3, 8, 32, 32))
    assert out.shape == (3, 32) and model.feature_dim == 32


def test_frame_cnn_is_frozen_and_gets_no_gradient():
    torch.manual_seed(0)
    model = VideoTransformer(**SMALL).train()
    assert not model.frame_cnn.training                     # BN keeps its statistics
    frozen = copy.deepcopy(model.frame_cnn.state_dict())
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 3, 8, 32, 32)).pow(2).sum().backward()
        opt.step()
    assert all(p.grad is None and not p.requires_grad for p in model.frame_cnn.parameters())
    assert all(p.grad is not None for p in model.temporal.parameters()
               if p.requires_grad and p is not model.temporal.pos_embed)
    for k, v in model.frame_cnn.state_dict().items():   # weights and BN running stats unchanged
        assert torch.equal(v, frozen[k]), k
    assert model.temporal.pos_embed.grad is not None


def test_temporal_position_embedding_makes_order_matter():
    torch.manual_seed(0)
    model = VideoTransformer(**SMALL).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    perm = torch.tensor([1, 0, 3, 2, 5, 4, 7, 6])
    with torch.no_grad():
        a, b = model(x), model(x[:, :, perm])
        feats = model.frame_features(x)
    assert not torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(model.frame_features(x[:, :, perm]), feats[:, perm], atol=1e-5)


def test_frame_weights_load_from_a_frame_cnn_checkpoint(tmp_path):
    torch.manual_seed(1)
    trained = FrameCNN(3, "tiny2d")
    path = tmp_path / "frames.pt"
    save_checkpoint(path, {"method": "moco", "modality": "rgb",
                           "backbone": {"name": "frame_cnn", "kwargs": {"in_channels": 3, "arch": "tiny2d"}},
                           "backbone_state": trained.state_dict()})
    model = VideoTransformer(frame_weights=str(path), **SMALL)
    for k, v in trained.state_dict().items():
        assert torch.equal(model.frame_cnn.state_dict()[k], v)
    with pytest.raises(ConfigError, match="arch"):
        VideoTransformer(frame_weights=str(path), **{**SMALL, "frame_cnn": "resnet18"})


def test_bad_sizes_are_config_errors():
    with pytest.raises(ConfigError):
        VideoTransformer(**{**SMALL, "token_dim": 30, "heads": 4})
    with pytest.raises(ConfigError):
        VideoTransformer(**{**SMALL, "frame_cnn": "vgg"})
