"""The flow stage: quantisation, agreement with OpenCV, failures, resume after a kill, torchrun."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from vsslpipe.data import h5parts
from vsslpipe.data.flowstore import FlowStore, dequantize_flow, quantize_flow
from vsslpipe.data.framestore import FrameStore, encode_jpeg, write_video_group
from vsslpipe.flow.compute import FlowSettings, compute_flow
from vsslpipe.flow.opencv_backend import create_tvl1
from vsslpipe.flow.params import TVL1Params
from vsslpipe.flow.sharding import share

SETTINGS = FlowSettings(backend="opencv")


@pytest.fixture(scope="module")
def small_frames(tmp_path_factory) -> tuple[Path, Path]:
    """(frame store, manifest): 8 videos of 4 textured 32x40 frames moving 1-2 px per frame."""
    root = tmp_path_factory.mktemp("flow_frames")
    videos = {f"C{i % 2}/v_C{i % 2}_g0{i}_c01": _textured_frames(4, seed=i, speed=1 + i % 2)
              for i in range(8)}
    _write_store(root / "frames", videos)
    rows = [{"video_id": v, "path": v + ".avi", "class_name": v.split("/")[0], "label": i % 2,
             "split": "train", "group": "g01"} for i, v in enumerate(sorted(videos))]
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "frames", root / "manifest.csv"


def store_contents(path: Path) -> tuple[dict, dict]:
    """(root attributes, {video id: uint8 flow}) of a flow store, as a reader sees it."""
    store = FlowStore(path)
    attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in store.attrs.items()}
    return attrs, {vid: store.read_uint8(vid) for vid in store.video_ids()}


def assert_same_store(a: Path, b: Path) -> None:
    attrs_a, flows_a = store_contents(a)
    attrs_b, flows_b = store_contents(b)
    assert attrs_a == attrs_b
    assert list(flows_a) == list(flows_b)
    for vid in flows_a:
        np.testing.assert_array_equal(flows_a[vid], flows_b[vid])


def test_quantisation_round_trip():
    rng = np.random.default_rng(0)
    flow = rng.uniform(-25, 25, size=(3, 5, 7, 2)).astype(np.float32)
    q = quantize_flow(flow, 20.0)
    assert q.dtype == np.uint8
    back = dequantize_flow(q, 20.0)
    inside = np.abs(flow) <= 20
    # inside the bound: error at most half a level (bound / 255 px)
    assert np.abs(back - flow)[inside].max() <= 20.0 / 255 + 1e-6
    # outside: clipped to the bound
    np.testing.assert_allclose(back[flow > 20], 20.0, atol=1e-5)
    np.testing.assert_allclose(back[flow < -20], -20.0, atol=1e-5)
    np.testing.assert_array_equal(quantize_flow(np.array([-20.0, 20.0, -40.0, 40.0])), [0, 255, 0, 255])
    np.testing.assert_array_equal(quantize_flow(q_f := dequantize_flow(q)), q)  # idempotent
    assert q_f.dtype == np.float32


def test_stored_flow_equals_direct_opencv_call(tiny_frames, tmp_path):
    frames, _ = tiny_frames
    ids = FrameStore(frames).video_ids()[:3]
    out = tmp_path / "flow"
    result = compute_flow(frames, ids, out, SETTINGS, workers=1, progress=False)
    assert result.videos == 3 and not result.failures
    store, tvl1 = FlowStore(out), create_tvl1(TVL1Params())
    assert store.video_ids() == sorted(ids)
    assert store.attrs["algorithm"] == "tvl1" and store.bound == 20.0
    assert store.parameters["lambda"] == 0.15 and store.parameters["inner_iterations"] == 30
    import cv2
    assert store.attrs["opencv_version"] == cv2.__version__
    for vid in ids:
        rgb = FrameStore(frames).read(vid)
        gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb]
        direct = np.stack([tvl1.calc(gray[i], gray[i + 1], None) for i in range(len(gray) - 1)])
        assert store.num_pairs(vid) == len(rgb) - 1
        np.testing.assert_array_equal(store.read_uint8(vid), quantize_flow(direct, 20.0))
        np.testing.assert_allclose(store.read(vid), direct.clip(-20, 20), atol=20 / 255 + 1e-5)
        with h5py.File(out / "index.h5", "r") as f:   # plain h5py, through the external links
            assert f[vid]["flow"].chunks == (1,) + direct.shape[1:]
            assert f[vid]["flow"].compression == "gzip"


def test_parallel_equals_serial(small_frames, tmp_path):
    frames, _ = small_frames
    ids = FrameStore(frames).video_ids()[:4]
    small = FlowSettings(backend="opencv", videos_per_shard=3)
    compute_flow(frames, ids, tmp_path / "serial", small, workers=1, progress=False)
    result = compute_flow(frames, ids, tmp_path / "parallel", small, workers=2, progress=False)
    assert result.pairs == 4 * 3
    assert_same_store(tmp_path / "serial", tmp_path / "parallel")
    assert FlowStore(tmp_path / "serial").store_id == FlowStore(tmp_path / "parallel").store_id


def _write_store(path: Path, videos: dict[str, list[np.ndarray]], single_file: bool = False) -> None:
    """A frame store whose videos are given as lists of JPEG byte arrays: a store folder, or
    with ``single_file`` the layout of earlier versions (flow reads both)."""
    attrs = {"schema": "vsslpipe-frames", "schema_version": 1}
    if single_file:
        parts = [(vid, h5parts.write_part(path.parent / "scratch", vid, lambda g, j=jpegs:
                                          write_video_group(g, j, 32, 40, 25.0, "test")))
                 for vid, jpegs in videos.items()]
        h5parts.merge_parts(parts, path, attrs)
        return
    chunks = h5parts.plan_chunks(videos, 3)
    scratch = h5parts.scratch_dir(path, attrs)
    h5parts.prepare_scratch(path, scratch)
    writer = h5parts.ShardWriter(scratch, chunks, attrs)
    for vid, jpegs in videos.items():
        writer.add(vid, len(jpegs), lambda g, j=jpegs: write_video_group(g, j, 32, 40, 25.0, "test"))
    h5parts.finalise(scratch, path, chunks, attrs, 3)


def _textured_frames(n: int, seed: int = 0, speed: int = 1) -> list[np.ndarray]:
    """JPEG frames of a smooth random texture moving ``speed`` px left per frame."""
    import cv2
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (40, 60, 3)).astype(np.uint8), (0, 0), 2)
    return [encode_jpeg(np.ascontiguousarray(base[4:36, i * speed:i * speed + 40]), 95)
            for i in range(n)]


def test_broken_and_single_frame_videos(tmp_path):
    corrupt = _textured_frames(3)
    corrupt[1] = np.frombuffer(b"not a jpeg at all", np.uint8)
    frames = tmp_path / "frames.h5"
    _write_store(frames, {"A/good": _textured_frames(3), "A/single": _textured_frames(1),
                          "B/broken": corrupt}, single_file=True)
    out = tmp_path / "flow"
    result = compute_flow(frames, ["A/good", "A/single", "B/broken"], out, SETTINGS, progress=False)
    assert [vid for vid, _ in result.failures] == ["B/broken"]
    assert "JPEG" in result.failures[0][1]
    failures = pd.read_csv(out / "failures.csv")
    assert list(failures["video_id"]) == ["B/broken"]
    store = FlowStore(out)
    # a single-frame video has no pair: stored with an empty dataset and counted
    assert store.video_ids() == ["A/good", "A/single"]
    assert store.num_pairs("A/single") == 0 and store.read("A/single").shape == (0, 32, 40, 2)
    assert store.num_pairs("A/good") == 2 and result.without_pairs == 1 and result.pairs == 2


_TORCHRUN = """
import json, os, sys
from pathlib import Path
from vsslpipe.data.framestore import FrameStore
from vsslpipe.flow.compute import FlowSettings, compute_flow
frames, out, backend = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ids = FrameStore(frames).video_ids()[:5]
r = compute_flow(frames, ids, out, FlowSettings(backend=backend, videos_per_shard=2), progress=False)
record = {"rank": r.rank, "world": r.world_size, "videos": r.videos, "computed": r.computed,
          "pairs": r.pairs, "store_id": r.store_id}
Path(f"{out}.rank{r.rank}.json").write_text(json.dumps(record))
"""


@pytest.mark.slow
def test_torchrun_ranks_share_chunks_into_one_store(small_frames, tmp_path):
    """Two ranks under torchrun (gloo on CPU): each computes its share of the chunks, rank 0
    indexes; the store equals a one-process run's, and every rank reports the whole store.
    (The torch backend's writer thread is tested in test_stores; both backends share this.)"""
    frames, _ = small_frames
    backend = "opencv"
    script = tmp_path / "flow_rank.py"
    script.write_text(_TORCHRUN)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(torchrun), "--standalone", "--nproc_per_node=2", str(script),
                             str(frames), str(tmp_path / "two"), backend], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)   # the ranks too, not only torchrun
            proc.wait()
    assert proc.returncode == 0, output[-3000:]
    ranks = [json.loads((tmp_path / f"two.rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert all(r["videos"] == 5 and r["computed"] == 5 and r["pairs"] == 15 for r in ranks)
    ids = FrameStore(frames).video_ids()[:5]
    one = compute_flow(frames, ids, tmp_path / "one", FlowSettings(backend=backend, videos_per_shard=2),
                       progress=False)
    assert_same_store(tmp_path / "two", tmp_path / "one")
    assert ranks[0]["store_id"] == ranks[1]["store_id"] == one.store_id
    chunks = [f"c{i}" for i in range(3)]
    assert share(chunks, 0, 2) == ["c0", "c2"] and share(chunks, 1, 2) == ["c1"]


def _params(tmp_path: Path, frames: Path, manifest: Path, out: Path) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "data": {"frames": str(frames), "manifest": str(manifest), "flow": str(out)},
        "flow": {"metrics": str(tmp_path / "flow.json"), "workers": 1}}))
    return params


_FLOW = """
import sys
from pathlib import Path
from vsslpipe.data.framestore import FrameStore
from vsslpipe.flow.compute import FlowSettings, compute_flow
frames, out = Path(sys.argv[1]), Path(sys.argv[2])
r = compute_flow(frames, FrameStore(frames).video_ids(), out, FlowSettings(videos_per_shard=2),
                 progress=False)
print(r.reused, r.computed)
"""


def test_resume_after_kill_gives_identical_store(small_frames, tmp_path):
    frames, _ = small_frames
    out = tmp_path / "flow"
    cmd = [sys.executable, "-c", _FLOW, str(frames), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, start_new_session=True)
    scratch_root = h5parts.scratch_root(out)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if len(h5parts.finished_shards(next(iter(scratch_root.glob("*")), scratch_root))) >= 1:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    reused, computed = map(int, run.stdout.split())
    assert reused >= 2 and reused + computed == 8
    assert not scratch_root.exists()          # scratch renamed into the store, nothing left
    ids = FrameStore(frames).video_ids()
    ref = compute_flow(frames, ids, tmp_path / "reference", FlowSettings(videos_per_shard=2),
                       progress=False)
    assert_same_store(out, tmp_path / "reference")
    assert FlowStore(out).store_id == ref.store_id


def test_cli_writes_the_store_and_versions(small_frames, tmp_path):
    from typer.testing import CliRunner
    from vsslpipe.stages.cli import app

    frames, manifest = small_frames
    out = tmp_path / "flow"
    params = _params(tmp_path, frames, manifest, out)
    runner = CliRunner()
    res = runner.invoke(app, ["flow", "--params", str(params)])
    assert res.exit_code == 0, res.output
    assert FlowStore(out).video_ids() == FrameStore(frames).video_ids()
    metrics = json.loads((tmp_path / "flow.json").read_text())
    assert metrics["videos"] == 8 and metrics["pairs_computed"] == 8 * 3
    assert metrics["failures_file"] == str(out / "failures.csv")
    assert (out / "failures.csv").read_text() == "video_id,reason\n"
    res = runner.invoke(app, ["flow", "--params", str(params), "--record-versions",
                              str(tmp_path / "v.json")])
    import cv2
    assert json.loads((tmp_path / "v.json").read_text())["opencv"] == cv2.__version__


@pytest.mark.slow
def test_dvc_reruns_flow_only_when_the_opencv_version_changes(small_frames, tmp_path):
    """flow_versions runs on every repro, but `flow` re-runs only when a version changes."""
    import shutil

    root = Path(__file__).resolve().parents[1]
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(root / name, repo / name)
    for folder in ("vsslpipe", "stages"):
        shutil.copytree(root / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(small_frames[0], repo / "data/frames")
    shutil.copy(small_frames[1], repo / "data/manifest.csv")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["flow"]["workers"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def repro() -> str:
        out = ""
        for stage in ("flow_versions", "flow"):  # --single-item: upstream data is given
            run = subprocess.run(["dvc", "repro", "--single-item", stage], cwd=repo, env=env,
                                 capture_output=True, text=True)
            assert run.returncode == 0, run.stdout + run.stderr
            out += run.stdout
        return out

    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert subprocess.run(cmd, cwd=repo, env=env).returncode == 0
    assert "Running stage 'flow'" in repro()
    assert FlowStore(repo / "data/flow").video_ids() == FrameStore(small_frames[0]).video_ids()
    second = repro()
    assert "Running stage 'flow_versions'" in second and "Running stage 'flow'" not in second
    # Simulate an OpenCV upgrade: the recorded version changes, so `flow` re-runs.
    dvc_yaml = (repo / "dvc.yaml").read_text().replace(
        "--record-versions data/flow_versions.json",
        "--record-versions data/flow_versions.json && sed -i s/opencv/opencv-other/ "
        "data/flow_versions.json")
    (repo / "dvc.yaml").write_text(dvc_yaml)
    assert "Running stage 'flow'" in repro()
