"""`tables plan`'s run-cache view on a tiny DVC project: the key computed for a row equals DVC's
own, stages below a changed parameter must run, an always-changed stage's output is worked out;
FLOP counts on the meta device equal a real forward pass; the plan's estimates."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DVC_YAML = """\
stages:
  listing:
    cmd: python listing.py params.yaml listing.json
    always_changed: true
    params: [a.x]
    outs:
      - listing.json: {cache: false}
  make:
    cmd: python make.py ${data.p}
    deps: [make.py, listing.json, lib]
    params: [a, data.p]
    outs: ["${data.p}"]
  use:
    foreach: {u1: {k: 1}, u2: {k: 2}}
    do:
      cmd: python use.py ${data.p} ${item.k} out/${key}.txt
      deps: ["${data.p}", use.py]
      params: [b.y]
      outs: ["out/${key}.txt"]
      metrics:
        - m/${key}.json: {cache: false}
"""
FILES = {
    "params.yaml": "a: {x: 1, z: 0.001}\nb: {y: 2}\ndata: {p: out/a.txt}\n",
    "listing.py": ("import sys, yaml\nx = yaml.safe_load(open(sys.argv[1]))['a']['x']\n"
                   "open(sys.argv[2], 'w').write(f'listing {x}')\n"),
    "make.py": ("import sys, pathlib\npathlib.Path(sys.argv[1]).parent.mkdir(exist_ok=True)\n"
                "open(sys.argv[1], 'w').write(open('listing.json').read() + open('lib/v.py').read())\n"),
    "use.py": ("import sys, json, pathlib\nsrc, k, out = sys.argv[1:4]\n"
               "open(out, 'w').write(open(src).read() + k)\npathlib.Path('m').mkdir(exist_ok=True)\n"
               "json.dump({'k': int(k)}, open(f'm/{pathlib.Path(out).stem}.json', 'w'))\n"),
    "lib/v.py": "v = 1\n",
    "dvc.yaml": DVC_YAML,
}


ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
       "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dvc_tiny")
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "init"], ["dvc", "repro", "-q"]):
        proc = subprocess.run(cmd, cwd=root, env=ENV, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def test_run_cache_keys_equal_dvcs_own(tiny_project):
    from dvc.repo import Repo
    from dvc.stage.cache import _get_stage_hash

    from vsslpipe.tables.runcache import ALWAYS, CACHED, RunCacheView

    with Repo(str(tiny_project)) as repo:       # DVC's keys, from its own stages and dvc.lock
        theirs = {s.name: _get_stage_hash(s) for s in repo.index.stages if not s.always_changed}
    assert all((tiny_project / ".dvc/cache/runs" / k[:2] / k).is_dir() for k in theirs.values())
    with RunCacheView(tiny_project) as view:
        ours = {st.name: st for st in view.walk([], ["use@u1", "use@u2"])}
    assert ours["listing"].state == ALWAYS
    assert ours["listing"].out_hashes == {"listing.json": __import__("hashlib").md5(b"listing 1").hexdigest()}
    assert {n: st.key for n, st in ours.items() if n != "listing"} == theirs
    assert all(st.state == CACHED for n, st in ours.items() if n != "listing")


def test_changed_parameters_and_code(tiny_project):
    from vsslpipe.tables.runcache import CACHED, RUN, RunCacheView

    with RunCacheView(tiny_project) as view:
        downstream = {st.name: st for st in view.walk(["-S", "++b.y=3"], ["use@u1"])}
        upstream = {st.name: st for st in view.walk(["-S", "++a.x=5"], ["use@u2"])}
        interpolated = {st.name: st for st in view.walk(["-S", "++data.p=out/b.txt"], ["use@u1"])}
    assert downstream["make"].state == CACHED and downstream["use@u1"].state == RUN
    assert "no run-cache entry" in downstream["use@u1"].reason
    # a.x changes the listing's output (worked out by running it on a copy), so make runs
    assert upstream["listing"].out_hashes["listing.json"] != downstream["listing"].out_hashes["listing.json"]
    assert upstream["make"].state == RUN and upstream["use@u2"].state == RUN
    assert upstream["use@u2"].reason == "below make, which runs"
    # ${data.p} moves make's output and use's input: new paths, new keys
    assert interpolated["make"].outs == ["out/b.txt"] and interpolated["make"].state == RUN
    assert not (tiny_project / "out/b.txt").exists()         # nothing ran for real
    # the row as `tables run` runs it: DVC files its run-cache entry under the key computed here
    key = downstream["use@u1"].key
    proc = subprocess.run(["dvc", "exp", "run", "--temp", "use@u1", "-S", "++b.y=3", "--name", "row"],
                          cwd=tiny_project, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tiny_project / ".dvc/cache/runs" / key[:2] / key).is_dir()
    with RunCacheView(tiny_project) as view:
        assert {st.name: st.state for st in view.walk(["-S", "++b.y=3"], ["use@u1"])}["use@u1"] == CACHED


def test_unknown_target_is_a_config_error(tiny_project):
    from vsslpipe.errors import ConfigError
    from vsslpipe.tables.runcache import RunCacheView

    with RunCacheView(tiny_project) as view, pytest.raises(ConfigError, match="no stage nope"):
        view.walk([], ["nope"])


def test_meta_device_flops_equal_a_real_forward():
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vsslpipe.models import build_backbone
    from vsslpipe.train.config import PretrainConfig
    from vsslpipe.train.flops import backbone_forward, training_cost

    model = build_backbone("tiny3d", in_channels=2)
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 2, 8, 48, 48))
    real = counter.get_total_flops()
    assert real > 0 and backbone_forward("tiny3d", "flow", 8, 48) == real
    f = backbone_forward("tiny3d", "rgb", 8, 48)
    cvrl = training_cost(PretrainConfig(method="cvrl", clip_len=8, size=48))
    moco = training_cost(PretrainConfig(method="moco", clip_len=8, size=48))
    assert cvrl.per_sample == pytest.approx(6 * f) and moco.per_sample == pytest.approx(4 * f)
    ltcl = training_cost(PretrainConfig(method="cvtcl", clip_len=8, size=48,
                                        method_args={"cvtcl": {"use_local": True}}))
    sub = backbone_forward("tiny3d", "rgb", 2, 48)    # 4 sub-clips of 2 frames
    assert ltcl.per_sample == pytest.approx(4 * f + 3 * sub + 4 * sub)


def test_dataset_sizes_and_stage_estimates(tmp_path):
    from vsslpipe.tables.plan import FRAME_BYTES_128, UCF101, dataset_size

    synth = {"synth": {"out": "data/synth", "num_classes": 10, "groups": 10, "clips_per_group": 3,
                       "test_groups": 6, "frames": 32},
             "extract": {"videos": "data/synth/videos", "dataset": "ucf101"}}
    d = dataset_size(tmp_path, synth, {})
    assert (d.videos, d.train, d.test, d.frames) == (300, 120, 180, 9600)
    ucf = {"extract": {"videos": "/data/UCF-101", "dataset": "ucf101"}, "data": {"name": "ucf101"}}
    assert dataset_size(tmp_path, ucf, {}).videos == UCF101["videos"]
    assert dataset_size(tmp_path, {"extract": {"videos": "/x", "dataset": "folder"}}, {}).videos is None
    # the workspace's manifest counts when the row extracts what the workspace extracted
    (tmp_path / "data").mkdir()
    (tmp_path / "data/manifest.csv").write_text(
        "video_id,path,class_name,label,split,group,status\n"
        "a,a.avi,A,0,train,g1,ok\nb,b.avi,A,0,test,g2,ok\nc,c.avi,B,1,train,g3,failed\n")
    lock = {"stages": {"extract": {"params": {"params.yaml": {"extract": ucf["extract"]}}}}}
    got = dataset_size(tmp_path, {**ucf, "data": {"manifest": "data/manifest.csv"}}, lock)
    assert (got.videos, got.train, got.test, got.source) == (2, 1, 1, "the workspace's manifest")
    assert 16e9 < UCF101["frames"] * FRAME_BYTES_128 < 18e9      # ~17 GB at short side 128
