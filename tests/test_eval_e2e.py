"""End to end: export -> retrieve -> linear -> summary (and finetune) through the CLI on a tiny
generated dataset with tiny3d checkpoints, RGB and flow, pretrained and random-initialised."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from vsslpipe.data.flowstore import quantize_flow, write_flow_group
from vsslpipe.data.framestore import FrameStore
from vsslpipe.data.h5parts import merge_parts, write_part
from vsslpipe.models import build_backbone
from vsslpipe.models.checkpoint import save_checkpoint
from vsslpipe.stages.cli import app

pytestmark = pytest.mark.slow


def _flow_store(frames: FrameStore, out):
    """A flow store for every video of the frame store: a constant motion per class."""
    rng = np.random.default_rng(0)
    parts = []
    for vid in frames.video_ids():
        n = frames.num_frames(vid) - 1
        h, w = frames.video_attrs(vid)["height"], frames.video_attrs(vid)["width"]
        direction = (hash(vid.split("/")[0]) % 7) - 3
        flow = np.full((n, h, w, 2), float(direction), np.float32) + rng.normal(0, 0.5, (n, h, w, 2))
        q = quantize_flow(flow)
        parts.append((vid, write_part(out.parent / "flowparts", vid, lambda g, q=q: write_flow_group(g, q))))
    merge_parts(parts, out, {"schema": "vsslpipe-flow", "schema_version": 1, "bound": 20.0})


def _checkpoint(path, modality):
    ch = 3 if modality == "rgb" else 2
    net = build_backbone("tiny3d", in_channels=ch, width=4)
    save_checkpoint(path, {"method": "cvrl", "modality": modality,
                           "backbone": {"name": "tiny3d", "kwargs": {"in_channels": ch, "width": 4}},
                           "backbone_state": net.state_dict(),
                           "clip": {"clip_len": 4, "stride": 2, "size": 24}, "config": {}})


def _run(args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_evaluation_end_to_end(tiny_frames, tmp_path):
    frames, manifest = tiny_frames
    flow = tmp_path / "flow.h5"
    _flow_store(FrameStore(frames), flow)
    for m in ("rgb", "flow"):
        _checkpoint(tmp_path / f"{m}.pt", m)
    ev = tmp_path / "eval"
    encoders = {"cvrl_rgb": {"checkpoint": str(tmp_path / "rgb.pt"), "init": "pretrained"},
                "cvrl_flow": {"checkpoint": str(tmp_path / "flow.pt"), "init": "pretrained"},
                "random_rgb": {"checkpoint": str(tmp_path / "rgb.pt"), "init": "random"}}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "evaluate": {"rgb": {k: v for k, v in encoders.items() if "flow" not in k},
                     "flow": {k: v for k, v in encoders.items() if "flow" in k}},
        "data": {"frames": str(frames), "flow": str(flow), "manifest": str(manifest)},
        "export": {"workers": 0, "batch_size": 4, "device": "cpu"},
        "retrieve": {"ks": [1, 2, 5]},
        "linear": {"weight_decays": [0.01, 1.0]},
        "finetune": {"epochs": 1, "batch_size": 3, "device": "cpu"},
        "summary": {"eval_dir": str(ev), "out": str(tmp_path / "summary.csv"),
                    "metrics": str(tmp_path / "summary.json"), "plots": str(tmp_path / "plots"),
                    "gallery_queries": 2, "gallery_frames": 3}}))
    for name, spec in encoders.items():
        out = ev / name
        _run(["export", "--params", params, "--checkpoint", spec["checkpoint"], "--init",
              spec["init"], "--name", name, "--out", out / "features.h5"])
        _run(["retrieve", "--params", params, "--features", out / "features.h5",
              "--out", out / "retrieval.json"])
        _run(["linear", "--params", params, "--features", out / "features.h5",
              "--out", out / "linear.json"])
    with h5py.File(ev / "cvrl_flow" / "features.h5") as f:
        assert f.attrs["modality"] == "flow" and f["train/features"].shape == (6, 32)
        assert f["test/features"].shape == (3, 32) and f.attrs["init"] == "pretrained"
    retrieval = json.loads((ev / "cvrl_rgb" / "retrieval.json").read_text())
    assert set(retrieval) >= {"R@1", "R@2", "R@5", "queries", "database"}
    assert retrieval["queries"] == 3 and retrieval["database"] == 6
    assert all(0 <= retrieval[k] <= 100 for k in ("R@1", "R@2", "R@5"))
    assert retrieval["R@5"] >= retrieval["R@2"] >= retrieval["R@1"]
    topk = pd.read_csv(ev / "cvrl_rgb" / "retrieval_topk.csv")
    assert len(topk) == 3 and all(len(s.split(";")) == 5 for s in topk["neighbour_ids"])
    linear = json.loads((ev / "cvrl_rgb" / "linear.json").read_text())
    assert 0 <= linear["top1"] <= 100 and linear["selection"]["held_out"] == "groups"
    assert [g["weight_decay"] for g in linear["selection"]["grid"]] == [0.01, 1.0]

    # Two-stream fusion: the RGB and flow features of the same videos.
    _run(["retrieve", "--params", params, "--features", ev / "cvrl_rgb" / "features.h5",
          "--features", ev / "cvrl_flow" / "features.h5", "--out", tmp_path / "fused.json"])
    assert json.loads((tmp_path / "fused.json").read_text())["streams"] == ["rgb", "flow"]

    _run(["summary", "--params", params])
    table = pd.read_csv(tmp_path / "summary.csv")
    assert sorted(table["experiment"]) == sorted(encoders)
    assert table.set_index("experiment").loc["random_rgb", "init"] == "random"
    assert not np.isnan(table.set_index("experiment").loc["cvrl_rgb", "R@1_gain_over_random"])
    assert (tmp_path / "plots" / "recall_at_k_synth.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "gallery_cvrl_flow.png").stat().st_size > 1000

    _run(["finetune", "--params", params, "--checkpoint", tmp_path / "flow.pt",
          "--out", tmp_path / "finetune.json"])
    ft = json.loads((tmp_path / "finetune.json").read_text())
    assert ft["num_test"] == 3 and 0 <= ft["top1"] <= 100 and len(ft["history"]) == 1
    assert np.isfinite(ft["history"][0]["loss"])


def test_user_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(app, ["retrieve", "--features", str(tmp_path / "missing.h5"),
                                      "--out", str(tmp_path / "r.json"), "--params",
                                      str(tmp_path / "p.yaml")])
    assert result.exit_code == 1
