"""CACL end to end on a tiny store: `vsslpipe pretrain-frames`, then `vsslpipe pretrain` (cacl)."""
from __future__ import annotations

import pytest
import torch
import yaml
from typer.testing import CliRunner

from vsslpipe.models.checkpoint import load_backbone, load_checkpoint
from vsslpipe.stages.cli import app

pytestmark = pytest.mark.slow


def test_frames_then_cacl_through_the_cli(tiny_frames, tmp_path):
    frames, manifest = tiny_frames
    common = dict(out_dir=str(tmp_path / "models"), live_dir=str(tmp_path / "dvclive"), workers=0,
                  threads=1, device="cpu", size=24)
    weights = tmp_path / "models/frames_moco/final.pt"
    params = {
        "data": {"frames": str(frames), "manifest": str(manifest)},
        "pretrain_frames": {"arch": "tiny2d", "epochs": 2, "batch_size": 3, **common,
                            "method_args": {"image_moco": {"queue_size": 16, "frames_per_video": 2}}},
        "pretrain": {"defaults": {
            "method": "cacl", "backbone": "tiny3d", "backbone_args": {"width": 4}, "clip_len": 8,
            "stride": 1, "epochs": 2, "batch_size": 3, "lr": 0.003, **common,
            "method_args": {"cacl": {"queue_size": 16, "proj_hidden": 16, "sdp_hidden": 16,
                                     "momentum": 0.9, "transformer": {
                                         "frame_cnn": "tiny2d", "frame_weights": str(weights),
                                         "token_dim": 16, "layers": 1, "heads": 2}}}},
            "experiments": {"cacl_rgb": {}}},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    runner = CliRunner()
    result = runner.invoke(app, ["pretrain-frames", "--params", str(path)])
    assert result.exit_code == 0, result.output
    frame_ckpt = load_checkpoint(weights)
    assert frame_ckpt["backbone"] == {"name": "frame_cnn", "kwargs": {"arch": "tiny2d", "in_channels": 3}}

    result = runner.invoke(app, ["pretrain", "--params", str(path), "-e", "cacl_rgb"])
    assert result.exit_code == 0, result.output
    final = tmp_path / "models/cacl_rgb/final.pt"
    ckpt = load_checkpoint(final, expect_method="cacl")
    assert len(ckpt["history"]) == 2 and "sdp_acc" in ckpt["history"][-1]
    # the transformer's frozen frame CNN is exactly the image-MoCo backbone
    for k, v in frame_ckpt["backbone_state"].items():
        assert torch.equal(ckpt["model_state"][f"transformer.frame_cnn.{k}"], v), k
    net, meta = load_backbone(final)          # only the 3D CNN is exported
    assert meta["backbone"]["name"] == "tiny3d"
    assert net(torch.zeros(1, 3, 8, 24, 24)).shape == (1, 32)


def test_pretrain_frames_rejects_fixed_keys(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"pretrain_frames": {"arch": "tiny2d", "clip_len": 4}}))
    result = CliRunner().invoke(app, ["pretrain-frames", "--params", str(path)])
    assert result.exit_code == 1 and "cannot be set" in result.output
