"""Fine-tuning's training view (uint8, in the worker): crop sizes, flip probability, flow sign,
the window it reads, and its settings."""
import numpy as np
import pytest
import torch

from vsslpipe.config import ConfigError
from vsslpipe.data.flowstore import dequantize_flow
from vsslpipe.eval.clips import random_view, to_input
from vsslpipe.eval.finetune_config import FinetuneSettings


def _ramp_window(channels: int) -> np.ndarray:
    # x increases left to right, so a flip is visible as a decreasing row.
    x = np.broadcast_to((np.arange(32) * 8).astype(np.uint8)[None, None, :, None], (4, 24, 32, channels))
    return np.ascontiguousarray(x)


def _flipped(view: torch.Tensor) -> bool:
    row = view[0, 0, :, -1].int()
    return bool(row[0] > row[-1])


def test_no_flip_when_flip_p_is_zero():
    window = _ramp_window(3)
    for seed in range(40):
        view = random_view(window, 16, "rgb", torch.Generator().manual_seed(seed), flip_p=0.0)
        assert view.shape == (4, 16, 16, 3) and view.dtype == torch.uint8
        assert not _flipped(view)


def test_flip_rate_and_flow_x_negated():
    window = _ramp_window(2)
    window[..., 0] = 200   # flow x: one value everywhere; a flip must negate it
    positive = float(dequantize_flow(np.uint8(200)))
    flips = 0
    for seed in range(200):
        view = random_view(window, 16, "flow", torch.Generator().manual_seed(seed), flip_p=0.5)
        x = to_input(view[None], "flow", 20.0)[0, 0] * 20.0   # back to pixels
        if _flipped(view):
            flips += 1
            assert torch.allclose(x, torch.full_like(x, -positive), atol=1e-4)
        else:
            assert torch.allclose(x, torch.full_like(x, positive), atol=1e-4)
    assert 70 <= flips <= 130   # Binomial(200, 0.5): 5 sigma either side


def test_uint8_negation_is_the_flow_sign_flip():
    q = np.arange(256, dtype=np.uint8)
    assert np.allclose(dequantize_flow(255 - q), -dequantize_flow(q), atol=1e-5)


def test_crop_keeps_its_area_range_and_resizes_like_float():
    rng = np.random.default_rng(0)
    window = rng.integers(0, 256, (3, 40, 50, 3)).astype(np.uint8)
    gen = torch.Generator().manual_seed(5)
    view = random_view(window, 20, "rgb", gen, min_area=1.0, flip_p=0.0)
    # min_area 1: the crop is a full short-side square; resized from 40 to 20 px
    gen = torch.Generator().manual_seed(5)
    gen_area = float(torch.empty(1).uniform_(1.0, 1.0, generator=gen))
    top = int(torch.randint(0, 1, (1,), generator=gen))
    left = int(torch.randint(0, 50 - 40 + 1, (1,), generator=gen))
    assert gen_area == 1.0 and top == 0
    crop = torch.from_numpy(window[:, :, left:left + 40]).permute(0, 3, 1, 2).float()
    ref = torch.nn.functional.interpolate(crop, size=(20, 20), mode="bilinear", antialias=True)
    assert (view.permute(0, 3, 1, 2).float() - ref).abs().max() <= 1.0   # uint8 rounding


@pytest.mark.parametrize("bad", [{"flip_p": 1.5}, {"min_area": 0.0}, {"epochs": 0}, {"dropout": 1.0}])
def test_settings_validation(bad):
    with pytest.raises(ConfigError):
        FinetuneSettings(**bad).validate()


def test_epoch_metrics_accumulated_on_the_device_match_the_steps(tmp_path, monkeypatch):
    """Loss and accuracy are summed on the device and read once per epoch: the history must
    equal the per-step values (recorded here, on the host) weighted by batch size."""
    import vsslpipe.eval.finetune as ft
    from test_eval_windows import write_stores
    from vsslpipe.eval.protocols import get_protocol
    from vsslpipe.models import build_backbone

    manifest = write_stores(tmp_path)
    steps = []
    real = torch.nn.functional.cross_entropy

    def recording(logits, y):
        loss = real(logits, y)
        steps.append((float(loss.detach()), int((logits.argmax(1) == y).sum()), len(y)))
        return loss

    monkeypatch.setattr(ft.nn.functional, "cross_entropy", recording)
    torch.manual_seed(0)
    net = build_backbone("tiny3d", in_channels=3, width=4)
    result = ft.finetune(net, "rgb", tmp_path / "frames.h5", manifest, get_protocol("coclr"),
                         {"clip_len": 4, "stride": 2, "size": 16},
                         FinetuneSettings(epochs=1, batch_size=2), torch.device("cpu"))
    seen = sum(n for _, _, n in steps)
    assert seen == 2   # 3 training videos, batches of 2: the partial batch of 1 is dropped
    hist = result["history"][0]
    assert hist["loss"] == pytest.approx(sum(l * n for l, _, n in steps) / seen, rel=1e-6)
    assert hist["train_top1"] == pytest.approx(100.0 * sum(c for _, c, _ in steps) / seen)
    assert result["num_test"] == 3 and 0 <= result["top1"] <= 100
