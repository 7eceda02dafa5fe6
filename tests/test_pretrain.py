"""Pre-training end to end on a tiny store: loss falls, resume is exact, flow, DDP, CLI."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from vsslpipe.data.flowstore import write_flow_group
from vsslpipe.data.framestore import FrameStore
from vsslpipe.data.h5parts import merge_parts, write_part
from vsslpipe.errors import DataError
from vsslpipe.models.checkpoint import load_backbone, load_checkpoint
from vsslpipe.stages.cli import app
from vsslpipe.train.config import load_experiment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_flow(tiny_frames, tmp_path_factory):
    """A flow store for the tiny frame store, written with the schema's own helpers."""
    frames, _ = tiny_frames
    out = tmp_path_factory.mktemp("flow")
    store = FrameStore(frames)
    rng = np.random.default_rng(0)
    parts = []
    for vid in store.video_ids():
        n = store.num_frames(vid) - 1
        flow = rng.integers(0, 256, (n, 32, 40, 2), dtype=np.uint8)
        parts.append((vid, write_part(out / "parts", vid, lambda g, f=flow: write_flow_group(g, f))))
    merge_parts(parts, out / "flow.h5", {"schema": "vsslpipe-flow", "schema_version": 1, "bound": 20.0})
    return out / "flow.h5"


def write_params(tmp: Path, frames, manifest, flow=None, **defaults) -> Path:
    base = dict(method="cvrl", modality="rgb", backbone="tiny3d", backbone_args={"width": 4},
                clip_len=4, stride=2, size=16, epochs=4, batch_size=3, lr=0.003, workers=0,
                threads=1, checkpoint_every=1, out_dir=str(tmp / "models"),
                live_dir=str(tmp / "dvclive"),
                method_args={"moco": {"queue_size": 12, "momentum": 0.9}})
    base.update(defaults)
    params = {"data": {"frames": str(frames), "manifest": str(manifest),
                       "flow": str(flow or tmp / "none.h5")},
              "pretrain": {"defaults": base, "experiments": {
                  "cvrl_rgb": {}, "moco_rgb": {"method": "moco"}, "cvrl_flow": {"modality": "flow"}}}}
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def train(params: Path, name: str, stop_after=None):
    """The engine on experiment ``name`` of ``params`` (its ``data`` section's inputs): resumes
    from ``<out_dir>/.scratch/<name>``, writes ``<out_dir>/<name>/final.pt`` when finished."""
    from vsslpipe.data.clips import train_table
    from vsslpipe.data.manifest import read_manifest
    from vsslpipe.train.engine import Trainer, seeded_method

    data = yaml.safe_load(Path(params).read_text())["data"]
    cfg = load_experiment(params, name)
    method = seeded_method(cfg)
    stores = {m: Path(data["frames"] if m == "rgb" else data["flow"])
              for m in method.required_modalities()}
    table = train_table(read_manifest(Path(data["manifest"])), cfg.split)
    trainer = Trainer(cfg, name, cfg.out_dir / ".scratch" / name, method=method, table=table,
                      stores=stores, stop_after_epochs=stop_after, progress=False)
    try:
        trainer.run()
        if trainer.epoch >= cfg.epochs:
            trainer.save_final(cfg.out_dir / name / "final.pt")
    finally:
        trainer.close()
    return trainer


def test_loss_falls_and_outputs(tiny_frames, tmp_path):
    mild = {"area": [0.8, 1.0], "jitter_p": 0.0, "gray_p": 0.0, "blur_p": [0.0, 0.0],
            "solarize_p": [0.0, 0.0]}
    params = write_params(tmp_path, *tiny_frames, epochs=12, batch_size=6,
                          augment={"overrides": mild})
    train(params, "cvrl_rgb")
    ckpt = load_checkpoint(tmp_path / "models/cvrl_rgb/final.pt", expect_method="cvrl")
    losses = [h["loss"] for h in ckpt["history"]]
    assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1
    assert ckpt["clip"] == {"clip_len": 4, "stride": 2, "size": 16}
    assert ckpt["config"]["method"] == "cvrl" and ckpt["modality"] == "rgb"
    net, meta = load_backbone(tmp_path / "models/cvrl_rgb/final.pt")
    assert net(torch.zeros(1, 3, 4, 16, 16)).shape == (1, 32)
    assert (tmp_path / "dvclive/cvrl_rgb/metrics.json").is_file()
    plots = tmp_path / "dvclive/cvrl_rgb/plots/metrics/train"
    assert {"loss.tsv", "lr.tsv", "clips_per_s.tsv", "sim_gap.tsv"} <= {p.name for p in plots.iterdir()}


def _states(path):
    return load_checkpoint(path)["model_state"]


@pytest.mark.parametrize("method", ["moco", "cvrl"])
def test_resume_is_bit_identical(tiny_frames, tmp_path, method):
    name = f"{method}_rgb"
    full = write_params(tmp_path / "a", *tiny_frames) if (tmp_path / "a").mkdir() is None else None
    train(full, name)
    (tmp_path / "b").mkdir()
    split = write_params(tmp_path / "b", *tiny_frames)
    train(split, name, stop_after=2)                         # "killed" after epoch 2
    assert not (tmp_path / f"b/models/{name}/final.pt").exists()
    assert train(split, name).history[0]["epoch"] == 1       # resumed at epoch 3, history kept
    a, b = _states(tmp_path / f"a/models/{name}/final.pt"), _states(tmp_path / f"b/models/{name}/final.pt")
    assert a.keys() == b.keys()
    if method == "moco":
        assert "queue.keys" in a and "key_backbone.features.0.0.weight" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    hist = load_checkpoint(tmp_path / f"b/models/{name}/final.pt")["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]


def test_flow_experiment_and_modality_check(tiny_frames, tiny_flow, tmp_path):
    params = write_params(tmp_path, *tiny_frames, flow=tiny_flow, epochs=1)
    train(params, "cvrl_flow")
    path = tmp_path / "models/cvrl_flow/final.pt"
    net, meta = load_backbone(path, expect_modality="flow")
    assert meta["backbone"]["kwargs"]["in_channels"] == 2
    with pytest.raises(DataError, match="modality 'flow', expected 'rgb'"):
        load_backbone(path, expect_modality="rgb")


def test_decode_gpu_trains_through_workers(tiny_frames, tmp_path):
    """decode: gpu on a CPU machine runs the same code: a worker sends JPEG bytes and boxes, the
    training process decodes and cuts them; the run matches decode: cpu up to that rounding."""
    finals = {}
    for decode in ("cpu", "gpu"):
        params = write_params(tmp_path / decode, *tiny_frames, epochs=2, workers=1, decode=decode,
                              augment={"overrides": {"flip_p": 0.5}}) \
            if (tmp_path / decode).mkdir() is None else None
        trainer = train(params, "moco_rgb")
        assert trainer.decode == decode
        finals[decode] = load_checkpoint(tmp_path / decode / "models/moco_rgb/final.pt")
    a, b = (finals[d]["history"] for d in ("cpu", "gpu"))
    assert [h["epoch"] for h in b] == [1, 2]
    # the same clips and draws; views differ by at most one level: the losses stay close
    assert abs(a[0]["loss"] - b[0]["loss"]) < 0.05 * abs(a[0]["loss"])


def test_cli_config_errors(tiny_frames, tmp_path):
    params = write_params(tmp_path, *tiny_frames, epochs=1)
    runner = CliRunner()
    res = runner.invoke(app, ["pretrain", "--params", str(params), "-e", "nope"])
    assert res.exit_code == 1 and "unknown pretrain experiment 'nope'" in res.output
    bad = write_params(tmp_path, *tiny_frames, method_args={"cvrl": {"temprature": 0.1}})
    res = runner.invoke(app, ["pretrain", "--params", str(bad), "-e", "cvrl_rgb"])
    assert res.exit_code == 1 and "temprature" in res.output


DDP_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_pretrain import train
from vsslpipe.train import dist
train(Path(sys.argv[1]), "moco_rgb")
dist.cleanup()
"""


def test_ddp_two_processes_gloo(tiny_frames, tmp_path):
    params = write_params(tmp_path, *tiny_frames, epochs=2, batch_size=2, device="cpu")
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(params)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "models/moco_rgb/final.pt")
    # 6 videos / 2 ranks / batch 2 = 1 step per epoch; each step enqueues 2 ranks x 2 keys.
    assert ckpt["step"] == 2
    assert int(ckpt["model_state"]["queue.ptr"]) == 8


def test_lr_schedule_warmup_then_cosine():
    from vsslpipe.train.optim import lr_factor

    assert lr_factor(0, 100, 10, 0.0) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)


def test_queue_fifo_and_momentum_update():
    from torch import nn

    from vsslpipe.methods.moco import MomentumQueue, momentum_update

    q = MomentumQueue(size=5, dim=2)
    keys = torch.arange(14, dtype=torch.float32).view(7, 2)
    q.enqueue(keys[:3])
    assert torch.equal(q.keys[:3], keys[:3]) and int(q.ptr) == 3
    q.enqueue(keys[3:7])              # wraps: rows 3, 4 then 0, 1 are overwritten, oldest first
    assert torch.equal(q.keys, torch.stack([keys[5], keys[6], keys[2], keys[3], keys[4]]))
    assert int(q.ptr) == 2
    src, dst = nn.Linear(2, 2), nn.Linear(2, 2)
    expected = 0.9 * dst.weight.detach().clone() + 0.1 * src.weight.detach()
    momentum_update(dst, src, 0.9)
    assert torch.allclose(dst.weight, expected)
