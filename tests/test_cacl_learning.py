"""A short CPU run of CACL (all pairs): the losses fall and SDP accuracy rises above chance."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from vsslpipe.data.augment import AugmentConfig
from vsslpipe.methods import METHODS
from vsslpipe.methods.base import MethodSpec

pytestmark = pytest.mark.slow

CLIP_LEN = 6   # distances {0, 2..6}: 6 classes, chance 1/6


class _Video:
    def __init__(self, frames):
        self.frames, self.num_frames = frames, len(frames)

    def read(self, start, stop, step=1, modality=None):
        return self.frames[start:stop:step]


def _videos(n, frames=12, size=16, seed=0):
    """Each video: its own random background, brightening steadily over time (order is visible)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 180, frames)[:, None, None, None]
    return [_Video(np.clip(rng.integers(0, 60, (1, size, size, 3)) + ramp
                           + rng.integers(0, 20, (frames, size, size, 3)), 0, 255).astype(np.uint8))
            for _ in range(n)]


def test_short_run_losses_fall_and_sdp_beats_chance():
    torch.manual_seed(0)
    mild = {"flip_p": 0.0, "jitter_p": 0.0, "gray_p": 0.0, "blur_p": [0.0, 0.0],
            "solarize_p": [0.0, 0.0], "area": [0.7, 1.0]}
    spec = MethodSpec(name="cacl", modality="rgb", backbone="tiny3d", backbone_args={"width": 8},
                      clip_len=CLIP_LEN, stride=1, size=16, augment=AugmentConfig(overrides=mild),
                      args={"pairs": "all", "queue_size": 64, "momentum": 0.9, "proj_hidden": 32,
                            "sdp_hidden": 64, "transformer": {"frame_cnn": "tiny2d", "token_dim": 16,
                                                              "layers": 1, "heads": 2, "dropout": 0.0}})
    method = METHODS.build("cacl", spec=spec).train()
    opt = torch.optim.Adam(method.trainable_parameters(), 3e-3)
    videos = _videos(32)
    sampler = method.make_sampler()
    rng = np.random.default_rng(0)
    history = []
    for step in range(120):
        batch = default_collate([sampler(videos[j], rng) for j in rng.choice(32, 16, replace=False)])
        loss, logs = method(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            method.after_step(step, None)
        history.append({k: float(v) for k, v in logs.items()})
    first = {k: np.mean([h[k] for h in history[:20]]) for k in history[0]}
    last = {k: np.mean([h[k] for h in history[-20:]]) for k in history[0]}
    assert last["loss_contrastive"] < first["loss_contrastive"] - 0.3
    assert last["loss_sdp"] < first["loss_sdp"] - 0.3
    assert np.mean([h["sdp_acc"] for h in history[-40:]]) > 1 / CLIP_LEN + 0.15
