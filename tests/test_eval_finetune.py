"""Fine-tuning's training view: crop sizes, flip probability, flow sign, and its settings."""
import pytest
import torch

from vsslpipe.config import ConfigError
from vsslpipe.eval.clips import random_view
from vsslpipe.eval.finetune_config import FinetuneSettings


def _ramp_clip(channels: int) -> torch.Tensor:
    # x increases left to right, so a flip is visible as a decreasing row.
    x = torch.arange(32, dtype=torch.float32).expand(channels, 4, 24, 32).clone()
    return x


def _flipped(view: torch.Tensor) -> bool:
    row = view[-1, 0, 0]
    return bool(row[0] > row[-1])


def test_no_flip_when_flip_p_is_zero():
    clip = _ramp_clip(3)
    for seed in range(40):
        view = random_view(clip, 16, "rgb", torch.Generator().manual_seed(seed), flip_p=0.0)
        assert view.shape == (3, 4, 16, 16)
        assert not _flipped(view)


def test_flip_rate_and_flow_x_negated():
    clip = _ramp_clip(2)
    clip[0] = 1.0   # flow x: +1 everywhere; a flip must make it -1
    flips = 0
    for seed in range(200):
        view = random_view(clip, 16, "flow", torch.Generator().manual_seed(seed), flip_p=0.5)
        if _flipped(view):
            flips += 1
            assert torch.allclose(view[0], torch.full_like(view[0], -1.0), atol=1e-5)
        else:
            assert torch.allclose(view[0], torch.ones_like(view[0]), atol=1e-5)
    assert 70 <= flips <= 130   # Binomial(200, 0.5): 5 sigma either side


@pytest.mark.parametrize("bad", [{"flip_p": 1.5}, {"min_area": 0.0}, {"epochs": 0}, {"dropout": 1.0}])
def test_settings_validation(bad):
    with pytest.raises(ConfigError):
        FinetuneSettings(**bad).validate()
