"""Export: window choice per protocol, clip averaging, the features file schema."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from vsslpipe.data.framestore import encode_jpeg, write_video_group
from vsslpipe.data.h5parts import merge_parts, write_part
from vsslpipe.data.modality import normalize_rgb
from vsslpipe.eval.export import export_splits, load_encoder
from vsslpipe.eval.features import read_features, write_features
from vsslpipe.eval.protocols import get_protocol, window_starts
from vsslpipe.models import build_backbone
from vsslpipe.models.checkpoint import save_checkpoint


def test_window_starts():
    assert window_starts(32, 15, "middle") == [8]
    assert window_starts(32, 15, "sliding", step=15) == [0, 15]
    assert window_starts(60, 32, "sliding", step=15) == [0, 15]
    assert window_starts(32, 16, "even", num_clips=5) == [0, 4, 8, 12, 16]
    assert window_starts(10, 16, "sliding") == [0]           # short video: one padded clip
    assert window_starts(10, 16, "even", num_clips=3) == [0, 0, 0]


class FrameIndexBackbone(nn.Module):
    """Feature = (mean of channel 0 over the clip, 1): reveals which frames a clip holds."""
    in_channels = 3
    feature_dim = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 0].mean(dim=(1, 2, 3)), torch.ones(len(x))], dim=1)


def _ramp_store(path, n_frames=20, h=16, w=20):
    """One video per class whose frame t has red value 10 * t (a known per-frame signal)."""
    parts, rows = [], []
    for i, (cls, split) in enumerate([("A", "train"), ("B", "train"), ("A", "test")]):
        vid = f"{cls}/v_{cls}_{i}"
        frames = np.zeros((n_frames, h, w, 3), np.uint8)
        frames[..., 2] = (10 * np.arange(n_frames))[:, None, None]  # BGR: index 2 is red
        jpegs = [encode_jpeg(f, 100) for f in frames]
        parts.append((vid, write_part(path.parent / "parts", vid,
                                      lambda g, j=jpegs: write_video_group(g, j, h, w, 25.0, vid))))
        rows.append({"video_id": vid, "path": vid + ".avi", "class_name": cls,
                     "label": ord(cls) - 65, "split": split, "group": f"g0{i}"})
    merge_parts(parts, path, {"schema": "vsslpipe-frames", "schema_version": 1, "settings": "{}"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("protocol", ["coclr", "vcop"])
def test_clip_averaging_matches_an_independent_computation(tmp_path, protocol):
    store = tmp_path / "frames.h5"
    manifest = _ramp_store(store)
    clip = {"clip_len": 4, "stride": 2, "size": 16}
    preset = get_protocol(protocol)
    splits = export_splits(FrameIndexBackbone(), "rgb", store, manifest, preset, clip, "cpu",
                           batch_size=3)
    red = normalize_rgb(torch.full((1, 3, 1, 1, 1), 1.0))[0, 0].item()  # slope per unit value
    zero = normalize_rgb(torch.zeros(1, 3, 1, 1, 1))[0, 0].item()
    for split, mode in (("train", preset.train_windows), ("test", preset.test_windows)):
        starts = window_starts(20, 7, mode, preset.window_step, preset.num_clips)
        clip_feats = np.array([[zero + (red - zero) * np.mean([10 * (s + 2 * j) for j in range(4)]) / 255, 1.0]
                               for s in starts])
        if preset.clip_l2_normalize:
            clip_feats /= np.linalg.norm(clip_feats, axis=1, keepdims=True)
        expected = clip_feats.mean(axis=0)
        got = splits[split]
        assert (got.num_clips == len(starts)).all()
        assert np.allclose(got.features, expected, atol=0.02), (split, got.features, expected)


def test_features_schema_roundtrip(tmp_path):
    from vsslpipe.eval.features import SplitFeatures

    splits = {s: SplitFeatures(np.random.rand(n, 5), np.arange(n) % 2, [f"c/v{i}" for i in range(n)],
                               [f"g{i}" for i in range(n)], np.full(n, 3))
              for s, n in (("train", 4), ("test", 2))}
    path = tmp_path / "f.h5"
    write_features(path, splits, ["a", "b"], {"experiment": "x", "modality": "rgb",
                                               "clip": {"clip_len": 8}, "init": "random"})
    with h5py.File(path) as f:
        assert f.attrs["schema"] == "vsslpipe-features"
        assert json.loads(f.attrs["clip"]) == {"clip_len": 8}
        for s, n in (("train", 4), ("test", 2)):
            assert f[s]["features"].dtype == np.float32 and f[s]["features"].shape == (n, 5)
            assert f[s]["labels"].dtype == np.int64
            assert h5py.check_string_dtype(f[s]["ids"].dtype).encoding == "utf-8"
    back = read_features(path)
    assert back.test.ids == ["c/v0", "c/v1"] and back.class_names == ["a", "b"]
    assert back.attrs["init"] == "random"


def test_random_init_is_seeded_and_keeps_the_architecture(tmp_path):
    trained = build_backbone("tiny3d", in_channels=2, width=4)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, {"method": "cvrl", "modality": "flow",
                           "backbone": {"name": "tiny3d", "kwargs": {"in_channels": 2, "width": 4}},
                           "backbone_state": trained.state_dict(),
                           "clip": {"clip_len": 4, "stride": 1, "size": 16}, "config": {}})
    a, meta = load_encoder(ckpt, "random", seed=3)
    b, _ = load_encoder(ckpt, "random", seed=3)
    p, pmeta = load_encoder(ckpt, "pretrained")
    assert meta["init"] == "random" and meta["modality"] == "flow" and meta["clip"]["clip_len"] == 4
    assert pmeta["init"] == "pretrained"
    wa, wb, wp = (next(m.parameters()) for m in (a, b, p))
    assert wa.shape == wp.shape and torch.equal(wa, wb) and not torch.equal(wa, wp)


def test_tclr_keeps_the_time_axis(tmp_path):
    store = tmp_path / "frames.h5"
    manifest = _ramp_store(store)
    backbone = build_backbone("tiny3d", in_channels=3, width=4).eval()
    splits = export_splits(backbone, "rgb", store, manifest, get_protocol("tclr"),
                           {"clip_len": 8, "stride": 1, "size": 16}, "cpu")
    # tiny3d halves time three times: 8 frames -> 1 step; width 4 -> 32 channels
    assert splits["train"].features.shape == (2, 32 * 1)
    splits16 = export_splits(backbone, "rgb", store, manifest, get_protocol("tclr"),
                             {"clip_len": 16, "stride": 1, "size": 16}, "cpu")
    assert splits16["test"].features.shape == (1, 32 * 2)
