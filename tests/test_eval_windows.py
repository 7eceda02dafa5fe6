"""Export's window reader: the same features as the whole-video reader it replaced, only the
frames its windows use decoded, uint8 until the device; fine-tuning reads only its window."""
from __future__ import annotations

import functools

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import vsslpipe.data.framestore as framestore
from vsslpipe.data.flowstore import dequantize_flow
from vsslpipe.data.modality import RGB_MEAN, RGB_STD
from vsslpipe.eval.clips import VideoSource, WindowedVideos
from vsslpipe.eval.export import export_splits
from vsslpipe.eval.finetune import RandomClips
from vsslpipe.eval.protocols import get_protocol, window_starts
from vsslpipe.models import build_backbone

# (class, split, frames, height, width): short side already the view's (16), one to resize
# (22 -> 16 or 18), shorter than a clip, a single frame, portrait.
VIDEOS = [("A", "train", 40, 16, 20), ("B", "train", 9, 22, 30), ("A", "test", 25, 16, 20),
          ("B", "test", 3, 24, 17), ("C", "train", 33, 20, 27), ("C", "test", 1, 16, 16)]


def write_stores(root, videos=VIDEOS, seed=0):
    """Single-file frame and flow stores (schema 1, which the readers keep reading) written with
    plain h5py, and their manifest. Frame t of a video: a texture that moves with t."""
    rng = np.random.default_rng(seed)
    rows = []
    with h5py.File(root / "frames.h5", "w") as fr, h5py.File(root / "flow.h5", "w") as fl:
        fr.attrs.update(schema="vsslpipe-frames", schema_version=1, settings="{}")
        fl.attrs.update(schema="vsslpipe-flow", schema_version=1, bound=20.0)
        for i, (cls, split, n, h, w) in enumerate(videos):
            vid = f"{cls}/v_{cls}_g{i + 1:02d}_c01"
            yy, xx = np.mgrid[0:h, 0:w]
            frames = np.stack([np.stack([(xx * 7 + t * 5) % 256, (yy * 11 + t * 3) % 256,
                                         (xx * yy + 17 * t) % 256], -1) for t in range(n)])
            frames = np.clip(frames + rng.integers(0, 30, frames.shape), 0, 255).astype(np.uint8)
            jpegs = np.empty(n, dtype=object)
            jpegs[:] = [framestore.encode_jpeg(f, 90) for f in frames]
            ds = fr.create_dataset(f"{vid}/frames", data=jpegs, dtype=framestore.JPEG_DTYPE)
            ds.attrs.update(num_frames=n, height=h, width=w, fps=25.0, source=vid)
            q = rng.integers(0, 256, (n - 1, h, w, 2)).astype(np.uint8)
            ds = fl.create_dataset(f"{vid}/flow", data=q, chunks=(1, h, w, 2) if n > 1 else None)
            ds.attrs.update(num_pairs=n - 1, height=h, width=w)
            rows.append({"video_id": vid, "path": vid + ".avi", "class_name": cls,
                         "label": ord(cls) - 65, "split": split, "group": f"g{i + 1:02d}"})
        ids = sorted(r["video_id"] for r in rows)
        for f in (fr, fl):
            f.create_dataset("video_ids", data=ids, dtype=h5py.string_dtype("utf-8"))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    return root, write_stores(root)


# --- the pre-change reader, kept as the reference: every frame to float, then windows -------

def legacy_video(store, modality, vid):
    if modality == "rgb":
        x = torch.from_numpy(store.read(vid)).permute(3, 0, 1, 2).float() / 255.0
        return (x - torch.tensor(RGB_MEAN).view(3, 1, 1, 1)) / torch.tensor(RGB_STD).view(3, 1, 1, 1)
    x = torch.from_numpy(dequantize_flow(store.read_uint8(vid), 20.0)).permute(3, 0, 1, 2)
    return (x / 20.0).clamp(-1, 1)


def legacy_view(clip, size, crop_fraction):
    c, t, h, w = clip.shape
    short = round(size / crop_fraction)
    if min(h, w) != short:
        s = short / min(h, w)
        hw = (max(short, round(h * s)), max(short, round(w * s)))
        clip = F.interpolate(clip.permute(1, 0, 2, 3), size=hw, mode="bilinear",
                             align_corners=False, antialias=True).permute(1, 0, 2, 3)
    h, w = clip.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return clip[..., top:top + size, left:left + size]


def legacy_features(net, store, modality, ids, protocol, mode, clip):
    out = []
    for vid in ids:
        video = legacy_video(store, modality, vid)
        n = video.shape[1]
        span = (clip["clip_len"] - 1) * clip["stride"] + 1
        clips = []
        for s in window_starts(n, span, mode, protocol.window_step, protocol.num_clips):
            index = [min(s + k * clip["stride"], n - 1) for k in range(clip["clip_len"])]
            clips.append(legacy_view(video[:, index], clip["size"], protocol.crop_fraction))
        with torch.no_grad():
            f = net(torch.stack(clips))
        if protocol.clip_l2_normalize:
            f = F.normalize(f, dim=1)
        out.append(f.mean(0))
    return torch.stack(out).numpy()


@pytest.mark.parametrize("modality", ["rgb", "flow"])
@pytest.mark.parametrize("protocol", ["coclr", "vcop"])
def test_features_equal_the_whole_video_reader(stores, modality, protocol):
    root, manifest = stores
    if modality == "flow":   # a single frame has no flow pair: usable.py leaves it out upstream
        manifest = manifest[manifest["video_id"] != "C/v_C_g06_c01"]
    torch.manual_seed(0)
    net = build_backbone("tiny3d", in_channels=3 if modality == "rgb" else 2, width=4).eval()
    preset = get_protocol(protocol)
    source = VideoSource(modality, root / ("frames.h5" if modality == "rgb" else "flow.h5"))
    for clip in ({"clip_len": 8, "stride": 2, "size": 16}, {"clip_len": 4, "stride": 1, "size": 12}):
        splits = export_splits(net, modality, source.store.path, manifest, preset, clip, "cpu",
                               batch_size=5)
        for split, mode in (("train", preset.train_windows), ("test", preset.test_windows)):
            ids = manifest[manifest["split"] == split]["video_id"].tolist()
            expected = legacy_features(net, source.store, modality, ids, preset, mode, clip)
            assert np.allclose(splits[split].features, expected, rtol=1e-5, atol=1e-6), (split, clip)


def test_only_the_frames_of_the_windows_are_decoded(stores, monkeypatch):
    root, manifest = stores
    decoded = []
    real = framestore.decode_jpeg
    monkeypatch.setattr(framestore, "decode_jpeg", lambda b: decoded.append(1) or real(b))
    source = VideoSource("rgb", root / "frames.h5")
    clip = {"clip_len": 4, "stride": 3, "size": 16}
    for protocol in ("coclr", "vcop"):
        preset = get_protocol(protocol)
        for mode in (preset.train_windows, preset.test_windows):
            starts = functools.partial(window_starts, mode=mode, step=preset.window_step,
                                       num_clips=preset.num_clips)
            data = WindowedVideos(source, manifest["video_id"], clip, starts)
            for i, vid in enumerate(manifest["video_id"]):
                n = source.store.num_frames(vid)
                windows = [[min(s + 3 * k, n - 1) for k in range(4)] for s in starts(n, 10)]
                used = sorted({f for w in windows for f in w})
                decoded.clear()
                item = data[i]
                assert len(decoded) == len(used), (protocol, mode, vid)
                assert item["frames"].dtype == torch.uint8 and len(item["frames"]) == len(used)
                assert (np.array(used)[item["index"].numpy()] == np.array(windows)).all()


def test_read_items_returns_the_requested_frames(stores):
    root, manifest = stores
    source = VideoSource("rgb", root / "frames.h5")
    vid = "A/v_A_g01_c01"
    whole = source.store.read(vid)
    rng = np.random.default_rng(1)
    for stride in (1, 2, 3):
        index = np.unique(rng.integers(0, 40, 12))
        assert np.array_equal(source.read_items(vid, index, stride), whole[index])
    flow = VideoSource("flow", root / "flow.h5")
    index = np.array([0, 2, 4, 5, 30, 38])
    assert np.array_equal(flow.read_items(vid, index, 2), flow.store.read_uint8(vid)[index])


def test_finetune_reads_only_its_window(stores, monkeypatch):
    root, manifest = stores
    decoded = []
    real = framestore.decode_jpeg
    monkeypatch.setattr(framestore, "decode_jpeg", lambda b: decoded.append(1) or real(b))
    ids = manifest["video_id"].tolist()
    data = RandomClips(VideoSource("rgb", root / "frames.h5"), ids, manifest["label"].to_numpy(),
                       {"clip_len": 5, "stride": 2, "size": 12}, seed=3)
    for i, vid in enumerate(ids):
        n = data.source.store.num_frames(vid)
        decoded.clear()
        view, label = data[i]
        assert view.shape == (5, 12, 12, 3) and view.dtype == torch.uint8
        # a short video starts at 0 and repeats its last frame; a long one has 5 distinct
        assert len(decoded) == len({min(2 * k, n - 1) for k in range(5)})
        assert label == manifest["label"][i]
    first = [data[i][0] for i in range(len(ids))]
    assert all(torch.equal(a, data[i][0]) for i, a in enumerate(first))   # (seed, epoch, i) only
    data.epoch = 1
    assert not all(torch.equal(a, data[i][0]) for i, a in enumerate(first))


def test_export_check_runs_quick_on_cpu():
    """bench/gpu_check.py calls it on a GPU; here the quick CPU form keeps it from rotting."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_eval.py"
    spec = importlib.util.spec_from_file_location("bench_eval", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.export_check("cpu", quick=True)
    assert result["device"] == "cpu" and result["bf16"] is False and result["videos"] == 4
    assert result["videos_per_s_loader"] > 0 and result["videos_per_s_on_device"] > 0
