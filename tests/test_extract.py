"""`vsslpipe extract`: exact frames, the schema, broken files, resume after a kill."""
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
import pytest
import yaml

from conftest import TINY_SPEC, make_synth_dataset
from vsslpipe.data import h5parts
from vsslpipe.data.framestore import FrameStore
from vsslpipe.data.manifest import read_ucf101
from vsslpipe.video.extract import ExtractSettings, extract_videos
from vsslpipe.video.ffmpeg import decode_frames, encode_video, ffmpeg_binary, probe

CLI = [sys.executable, "-m", "vsslpipe.stages.cli"]


def run_cli(args, cwd, **kw):
    return subprocess.run(CLI + args, cwd=cwd, capture_output=True, text=True, **kw)


def write_params(path: Path, data: dict | None = None, **extract) -> Path:
    path.write_text(yaml.safe_dump({"extract": extract, "data": data or {}}))
    return path


def test_store_schema_and_exact_frames(tiny_frames, tiny_dataset):
    store_path, manifest_path = tiny_frames
    store = FrameStore(store_path)
    ids = store.video_ids()
    assert ids == sorted(ids) and len(ids) == TINY_SPEC.num_classes * TINY_SPEC.groups
    assert store_path.is_dir()   # a folder: index.h5 + shards/; plain h5py sees it through the index
    with h5py.File(store_path / "index.h5") as f:
        assert f.attrs["schema"] == "vsslpipe-frames" and f.attrs["schema_version"] == 1
        assert json.loads(f.attrs["settings"])["jpeg_quality"] == 90
        ds = f[ids[0]]["frames"]
        assert ds.dtype == h5py.vlen_dtype(np.uint8)
        assert ds.attrs["num_frames"] == TINY_SPEC.frames
        assert (ds.attrs["height"], ds.attrs["width"]) == (TINY_SPEC.height, TINY_SPEC.width)
        assert bytes(ds[0][:2]) == b"\xff\xd8"  # a JPEG file per frame
    for vid in ids:
        assert store.num_frames(vid) == TINY_SPEC.frames
    clip = store.read(ids[0], 2, 8, 2)
    assert clip.shape == (3, TINY_SPEC.height, TINY_SPEC.width, 3) and clip.dtype == np.uint8
    np.testing.assert_array_equal(clip[1], store.read(ids[0], 4, 5)[0])


def test_stored_frames_match_decoder(tiny_frames, tiny_dataset):
    """Stored JPEGs decode close to what ffmpeg decodes (JPEG q90 error only)."""
    store = FrameStore(tiny_frames[0])
    vid = store.video_ids()[0]
    path = tiny_dataset / "videos" / f"{vid}.avi"
    decoded = np.concatenate(list(decode_frames(path, (TINY_SPEC.width, TINY_SPEC.height),
                                                pix_fmt="rgb24")))
    stored = store.read(vid)
    assert stored.shape == decoded.shape
    assert np.abs(stored.astype(int) - decoded.astype(int)).mean() < 8  # JPEG q90, 4:2:0 chroma


def test_variable_frame_rate_keeps_every_decoded_frame(tmp_path):
    """Irregular timestamps: every decoded frame once, none duplicated to reach a constant rate."""
    frames = np.random.default_rng(0).integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    raw = tmp_path / "raw.avi"
    encode_video(frames, raw, 25)
    vfr = tmp_path / "vfr.mkv"
    # Gaps of 1 and 5 frame periods: an image-sequence output at 25 fps would duplicate frames.
    subprocess.run([ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-i", str(raw), "-vf",
                    "setpts='(N+4*floor(N/3))/25/TB'", "-fps_mode", "vfr", "-c:v", "mpeg4",
                    str(vfr)], check=True)
    count = sum(len(b) for b in decode_frames(vfr, (32, 32)))
    assert count == 12
    naive = subprocess.run([ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-i", str(vfr),
                            "-r", "25", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:"],
                           capture_output=True, check=True).stdout
    assert len(naive) // (32 * 32) > 12  # what the usual constant-rate command would store


def test_resize_short_side(tiny_dataset, tmp_path):
    manifest = read_ucf101(tiny_dataset / "videos", tiny_dataset / "ucfTrainTestlist").head(2)
    out = tmp_path / "f.h5"
    extract_videos(manifest, tiny_dataset / "videos", out, ExtractSettings(short_side=16),
                   progress=False)
    store = FrameStore(out)
    assert store.read(store.video_ids()[0]).shape[1:] == (16, 20, 3)


def _broken_dataset(tmp_path: Path) -> Path:
    root = make_synth_dataset(tmp_path / "ds")
    videos = root / "videos"
    manifest = read_ucf101(videos, root / "ucfTrainTestlist")
    paths = list(manifest["path"])
    (videos / paths[0]).write_bytes(b"")                          # empty
    (videos / paths[1]).write_text("this is not a video\n")       # not a video
    return root


def test_broken_videos_are_listed_and_others_extracted(tmp_path):
    root = _broken_dataset(tmp_path)
    params = write_params(tmp_path / "params.yaml", videos=str(root / "videos"),
                          splits=str(root / "ucfTrainTestlist"), metrics=str(tmp_path / "x.json"),
                          short_side=0, workers=2,
                          data={"frames": str(tmp_path / "f"), "manifest": str(tmp_path / "m.csv"),
                                "max_failed_fraction": 0.5})
    result = run_cli(["extract", "--params", str(params)], tmp_path)
    assert result.returncode == 0, result.stderr
    failures = (tmp_path / "f" / "failures.csv").read_text().splitlines()
    assert failures[0] == "video_id,reason" and len(failures) == 3
    assert "empty file" in failures[1] or "empty file" in failures[2]
    assert len(FrameStore(tmp_path / "f").video_ids()) == 9 - 2
    assert json.loads((tmp_path / "x.json").read_text())["failed"] == 2

    strict = run_cli(["extract", "--params", str(params), "--max-failed-fraction", "0.1"], tmp_path)
    assert strict.returncode == 1
    assert "2 of 9 videos failed" in strict.stderr and "Traceback" not in strict.stderr


def test_user_errors_are_one_line(tmp_path):
    missing = run_cli(["extract", "--params", str(tmp_path / "nope.yaml")], tmp_path)
    assert missing.returncode == 1 and "nope.yaml: params file not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    params = write_params(tmp_path / "p.yaml", jpeg_qualty=3)
    typo = run_cli(["extract", "--params", str(params)], tmp_path)
    assert typo.returncode == 1 and "extract.jpeg_qualty: unknown parameter" in typo.stderr
    params = write_params(tmp_path / "p.yaml", workers="two")
    bad = run_cli(["extract", "--params", str(params)], tmp_path)
    assert bad.returncode == 1 and "extract.workers: expected an integer" in bad.stderr
    debug = run_cli(["extract", "--params", str(params)], tmp_path,
                    env={**os.environ, "VSSLPIPE_DEBUG": "1"})
    assert "Traceback" in debug.stderr


def _store_content(path: Path) -> dict:
    """Everything a reader sees: root attributes, and per video its JPEG bytes and attributes."""
    store = FrameStore(path)
    content = {"/attrs": {k: str(v) for k, v in store.attrs.items()}}
    for vid in store.video_ids():
        content[vid] = ([bytes(x) for x in store.read_jpeg(vid)],
                        {k: str(v) for k, v in store.video_attrs(vid).items()})
    return content


_EXTRACT = """
import sys
from pathlib import Path
from vsslpipe.data.manifest import read_ucf101
from vsslpipe.video.extract import ExtractSettings, extract_videos
root, out = Path(sys.argv[1]), Path(sys.argv[2])
manifest = read_ucf101(root / "videos", root / "ucfTrainTestlist")
r = extract_videos(manifest, root / "videos", out,
                   ExtractSettings(short_side=0, videos_per_shard=3), workers=2, progress=False)
print(r.reused, r.extracted)
"""


@pytest.mark.slow
def test_resume_after_kill_gives_identical_store(tmp_path):
    """Killed mid-run (workers included), rerun: finished shards are reused, a half-written one
    is deleted, and the store equals an uninterrupted run's, down to its store_id."""
    spec = TINY_SPEC.__class__(num_classes=3, groups=10, clips_per_group=1, test_groups=2,
                               frames=24, height=32, width=40, seed=3)
    root = make_synth_dataset(tmp_path / "ds", spec)
    cmd = [sys.executable, "-c", _EXTRACT, str(root)]
    assert subprocess.run(cmd + [str(tmp_path / "ref")], capture_output=True).returncode == 0

    out = tmp_path / "run"
    scratch = h5parts.scratch_dir(out, ExtractSettings(short_side=0).as_dict())
    proc = subprocess.Popen(cmd + [str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(h5parts.finished_shards(scratch)) < 3:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, workers included
    proc.wait()
    done = len(h5parts.finished_shards(scratch))
    assert 3 <= done < 10 and not out.exists(), "the kill must land mid-run"
    (scratch / "shards" / "stale.h5.tmp-host-1-deadbeef").write_bytes(b"half-written")

    result = subprocess.run(cmd + [str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    reused, extracted = map(int, result.stdout.split())
    assert reused >= 3 * done and reused + extracted == 30   # finished shards not decoded again
    assert not scratch.parent.exists()                   # no scratch left behind
    assert _store_content(out) == _store_content(tmp_path / "ref")
    assert FrameStore(out).store_id == FrameStore(tmp_path / "ref").store_id
    assert sorted(p.name for p in (out / "shards").iterdir()) == \
        sorted(p.name for p in (tmp_path / "ref" / "shards").iterdir())


def test_probe_reports_size_and_rate(tiny_dataset):
    info = probe(next((tiny_dataset / "videos").rglob("*.avi")))
    assert (info.width, info.height, info.fps) == (TINY_SPEC.width, TINY_SPEC.height, 25.0)
