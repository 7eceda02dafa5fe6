"""Training views cut in the loader workers: crop boxes, resize, flow mirror, short videos, mixed
frame sizes in one batch, and decode: gpu (JPEG decoded and cut in the training process)."""
from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from vsslpipe.data.augment import AugmentConfig, build_augment
from vsslpipe.data.clips import ClipDataset, EpochSampler, make_loader
from vsslpipe.data.flowstore import SCHEMA as FLOW_SCHEMA, dequantize_flow, quantize_flow
from vsslpipe.data.framestore import SCHEMA as FRAME_SCHEMA
from vsslpipe.data.sampling import SameClipSampler, TwoClipSampler, read_clip
from vsslpipe.data.views import Spatial, Window, collate, cut, decode_views, window_indices
from vsslpipe.errors import DataError
from vsslpipe.methods import build_method
from vsslpipe.methods.base import MethodSpec

# frame sizes of one collection: two aspect ratios that cannot be stacked, and a one-frame clip
SIZES = {"A/v_a": (9, 64, 88), "A/v_b": (7, 64, 86), "B/v_c": (1, 48, 64), "B/v_d": (3, 50, 70)}


def _frames(n, h, w, seed):
    """Smooth frames (JPEG keeps them close) that move, so windows differ."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (w + n, h),
                      interpolation=cv2.INTER_CUBIC)
    return np.stack([np.ascontiguousarray(base[:, i:i + w]) for i in range(n)])


def write_frame_store(path: Path, videos: dict) -> Path:
    """A frame store in schema 1 (one file), written with h5py from the documented layout."""
    with h5py.File(path, "w") as f:
        f.attrs.update(schema=FRAME_SCHEMA, schema_version=1)
        for vid, frames in videos.items():
            jpegs = np.empty(len(frames), dtype=object)
            jpegs[:] = [cv2.imencode(".jpg", cv2.cvtColor(x, cv2.COLOR_RGB2BGR),
                                     [cv2.IMWRITE_JPEG_QUALITY, 95])[1].reshape(-1) for x in frames]
            ds = f.create_dataset(f"{vid}/frames", data=jpegs, dtype=h5py.vlen_dtype(np.uint8))
            ds.attrs.update(num_frames=len(frames), height=frames.shape[1], width=frames.shape[2],
                            fps=25.0, source=vid)
        f.create_dataset("video_ids", data=np.array(sorted(videos), dtype=h5py.string_dtype()))
    return path


def write_flow_store(path: Path, videos: dict) -> Path:
    with h5py.File(path, "w") as f:
        f.attrs.update(schema=FLOW_SCHEMA, schema_version=1, bound=20.0)
        for vid, flow in videos.items():
            ds = f.create_dataset(f"{vid}/flow", data=flow)
            ds.attrs.update(num_pairs=len(flow), height=flow.shape[1], width=flow.shape[2])
        f.create_dataset("video_ids", data=np.array(sorted(videos), dtype=h5py.string_dtype()))
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("mixed")
    frames = {vid: _frames(n, h, w, i) for i, (vid, (n, h, w)) in enumerate(SIZES.items())}
    rng = np.random.default_rng(0)
    flow = {vid: rng.integers(0, 256, (max(len(x) - 1, 0), *x.shape[1:3], 2), dtype=np.uint8)
            for vid, x in frames.items()}
    table = pd.DataFrame({"video_id": sorted(SIZES), "label": [0, 0, 1, 1], "group": "g01",
                          "split": "train"})
    return {"frames": write_frame_store(root / "frames.h5", frames),
            "flow": write_flow_store(root / "flow.h5", flow), "table": table, "raw": frames}


class CountingVideo:
    """Frame i holds the value i (RGB: 3 channels, flow: 2)."""

    def __init__(self, n, h=6, w=8):
        self.num_frames, self.h, self.w = n, h, w
        self.index, self.label, self.group, self.video_id, self.epoch = 0, 0, "g01", "v", 0

    def read(self, start, stop, step=1, modality=None):
        idx = np.arange(start, stop)[::step]
        c = 2 if modality == "flow" else 3
        return np.broadcast_to(idx[:, None, None, None], (len(idx), self.h, self.w, c)).astype(np.uint8)


# -- boxes and cutting ---------------------------------------------------------------------------
def test_boxes_lie_in_the_frame_and_follow_torchvision_random_resized_crop():
    from torchvision.transforms import RandomResizedCrop

    sp = Spatial(size=16, area=(0.2, 1.0), aspect=(0.75, 4 / 3), flip_p=0.5)
    rng = np.random.default_rng(0)
    boxes = np.concatenate([sp.boxes(rng, 8, 120, 160) for _ in range(1000)])
    x0, y0, w, h, flip = boxes.T
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 160).all() and (y0 + h <= 120).all()
    # the same law as torchvision's RandomResizedCrop (rejection sampling of area and aspect)
    torch.manual_seed(0)
    img = torch.zeros(3, 120, 160)
    ref = np.array([RandomResizedCrop.get_params(img, [0.2, 1.0], [0.75, 4 / 3])
                    for _ in range(8000)])                                  # (top, left, h, w)
    for ours, theirs in ((w * h / (120 * 160), ref[:, 2] * ref[:, 3] / (120 * 160)),
                         (w / h, ref[:, 3] / ref[:, 2]), (x0 + w / 2, ref[:, 1] + ref[:, 3] / 2)):
        assert ours.mean() == pytest.approx(theirs.mean(), rel=0.03)
        assert ours.std() == pytest.approx(theirs.std(), rel=0.08)
    assert (w * h / (120 * 160)).min() >= 0.19 and (w / h).max() <= 1.35
    assert flip.mean() == pytest.approx(0.5, abs=0.03)
    assert Spatial(16, consistent=False).boxes(rng, 5, 10, 10).shape == (5, 5)


def test_fallback_is_the_centred_crop_of_an_allowed_aspect():
    # a 10 x 200 strip: no crop of aspect 1 and area >= 0.9 fits, so the fallback takes over
    sp = Spatial(size=8, area=(0.9, 1.0), aspect=(1.0, 1.0))
    x0, y0, w, h, _ = sp.boxes(np.random.default_rng(0), 1, 10, 200)[0]
    assert (w, h) == (10, 10) and (x0, y0) == (95, 0)


def test_cut_matches_torch_bilinear_resize_of_the_crop():
    frames = _frames(3, 40, 60, 1)
    boxes = np.array([[5, 3, 33, 21, 0], [0, 0, 60, 40, 0], [20, 10, 9, 7, 0]], np.int32)
    out = cut(frames, boxes, 16)
    for t, (x0, y0, w, h, _) in enumerate(boxes):
        crop = torch.from_numpy(frames[t, y0:y0 + h, x0:x0 + w]).permute(2, 0, 1)[None].float()
        ref = F.interpolate(crop, size=(16, 16), mode="bilinear", align_corners=False)[0]
        diff = (torch.from_numpy(out[t]).permute(2, 0, 1).float() - ref).abs()
        assert diff.max() <= 1.0, t                      # cv2's fixed-point weights: rounding only


def test_flip_mirrors_and_negates_quantised_flow_exactly():
    from fractions import Fraction

    b = Fraction(20)
    f = lambda q: q * 2 * b / 255 - b                         # noqa: E731  (the dequantiser)
    assert all(f(255 - q) == -f(q) for q in range(256))       # exact: q -> 255 - q is f -> -f
    q = np.arange(256, dtype=np.uint8)
    assert np.allclose(dequantize_flow(255 - q), -dequantize_flow(q), rtol=0, atol=4e-6)
    flow = np.zeros((2, 12, 12, 2), np.float32)
    flow[..., 0] = np.linspace(-8, 8, 12)[None, None, :]                   # x grows to the right
    flow[..., 1] = -3.0
    qf = quantize_flow(flow)
    box = np.array([[0, 0, 12, 12, 1]], np.int32)
    mirrored = dequantize_flow(cut(qf, box, 12, negate_x=True))
    assert np.allclose(mirrored[..., 0], -dequantize_flow(qf)[:, :, ::-1, 0], atol=1e-5)
    assert np.allclose(mirrored[..., 1], dequantize_flow(qf)[..., 1], atol=1e-5)
    compat = dequantize_flow(cut(qf, box, 12, negate_x=False))          # CoCLR: mirror only
    assert np.allclose(compat[..., 0], dequantize_flow(qf)[:, :, ::-1, 0], atol=1e-5)
    rgb = _frames(1, 12, 12, 3)
    assert np.array_equal(cut(rgb, box, 12), rgb[:, :, ::-1])


def test_consistent_views_share_one_box_per_frame_views_do_not():
    video = CountingVideo(8, 24, 32)
    static = np.broadcast_to(_frames(1, 24, 32, 2), (8, 24, 32, 3))
    video.read = lambda a, b, s=1, modality=None: static[a:b:s]
    for consistent, same in ((True, True), (False, False)):
        sp = build_augment(AugmentConfig(preset="cvrl", consistent=consistent), "rgb", 16).spatial
        out = SameClipSampler(8, 1, spatial=sp)(video, np.random.default_rng(0))
        frames_equal = all(np.array_equal(out["clip0"][0], f) for f in out["clip0"])
        assert frames_equal == same
        assert not np.array_equal(out["clip0"], out["clip1"])      # two views, two draws


# -- short videos --------------------------------------------------------------------------------
def test_windows_past_the_end_repeat_the_last_frame():
    assert window_indices(0, 4, 2, 5).tolist() == [0, 2, 4, 4]
    assert list(read_clip(CountingVideo(5), 0, clip_len=4, stride=2)[:, 0, 0, 0]) == [0, 2, 4, 4]
    assert list(read_clip(CountingVideo(1), 0, clip_len=4, stride=3)[:, 0, 0, 0]) == [0, 0, 0, 0]
    video = CountingVideo(40)
    reads = []
    video_read = video.read
    video.read = lambda *a, **k: reads.append(a) or video_read(*a, **k)
    Window.clip(video, 3, 5, 3).frames()
    assert reads == [(3, 16, 3)]                 # a full window: one contiguous read at the stride


# -- datasets over real stores -------------------------------------------------------------------
def _method(name, modality="rgb", size=24, **args):
    spec = MethodSpec(name=name, modality=modality, backbone="tiny3d", backbone_args={"width": 4},
                      clip_len=1 if name == "image_moco" else 4, stride=2, size=size,
                      augment=AugmentConfig(preset="coclr"),
                      args={**({} if name == "cvrl" else {"queue_size": 8}), **args})
    return build_method(spec)


@pytest.mark.parametrize("name,modality", [("cvrl", "rgb"), ("moco", "rgb"), ("cvrl", "flow"),
                                           ("cvtcl", "rgb"), ("cacl", "rgb")])
def test_mixed_frame_sizes_batch_and_train(mixed, name, modality):
    """64x88 beside 64x86 (the issue's crash), a one-frame video, through a DataLoader."""
    args = {"num_subclips": 2} if name == "cvtcl" else {}
    if name == "cacl":
        args = {"pairs": "cnn_only", "proj_hidden": 16, "sdp_hidden": 16}
    method = _method(name, modality, **args)
    table = mixed["table"]
    if modality == "flow":
        table = table[table.video_id != "B/v_c"]          # a one-frame video has no flow pair
    stores = {modality: mixed["frames" if modality == "rgb" else "flow"]}
    ds = ClipDataset(table, stores, method.make_sampler(), seed=0, default_modality=modality)
    loader = make_loader(ds, len(ds), 0, EpochSampler(len(ds), 0), drop_last=False)
    batch = next(iter(loader))
    views = [v for k, v in batch.items() if torch.is_tensor(v) and v.dim() == 5]
    assert views and all(v.shape[2:4] == (24, 24) and v.dtype == torch.uint8 for v in views)
    loss, _ = method(batch)
    loss.backward()
    assert torch.isfinite(loss)


def test_two_stream_cotrain_views_of_mixed_sizes(mixed, tmp_path):
    from test_cvtcl import init_checkpoints, spec as cvtcl_spec

    paths = init_checkpoints(tmp_path)
    method = build_method(cvtcl_spec("cvtcl", "rgb", stage="cotrain", init_rgb=str(paths["rgb"]),
                                     init_flow=str(paths["flow"]), cycles=1, epochs_per_phase=1,
                                     clips="independent"))
    table = mixed["table"][mixed["table"].video_id != "B/v_c"]
    ds = ClipDataset(table, {"rgb": mixed["frames"], "flow": mixed["flow"]}, method.make_sampler())
    expected = {0: {"rgb", "rgb_key", "rgb_ltcl", "flow_center"},    # LTCL on for RGB (paper)
                1: {"flow", "flow_key", "rgb_center"}}
    channels = {"rgb": 3, "flow": 2}
    for epoch, trained, frozen in ((0, "rgb", "flow"), (1, "flow", "rgb")):
        batch = collate([ds[(epoch, i)] for i in range(len(ds))])
        assert set(batch) == expected[epoch] | {"index", "label"}
        assert batch[trained].shape == (3, 8, 16, 16, channels[trained])
        assert batch[f"{frozen}_center"].shape == (3, 8, 16, 16, channels[frozen])


def test_zero_pair_video_is_a_clear_error_and_one_frame_rgb_trains(mixed):
    table = mixed["table"]
    sampler = TwoClipSampler(4, 2)
    with pytest.raises(DataError, match=r"'B/v_c' has no flow pairs \(a single frame\)"):
        ClipDataset(table, {"flow": mixed["flow"]}, sampler, default_modality="flow")
    ds = ClipDataset(table, {"rgb": mixed["frames"]}, sampler)     # one frame: fine for RGB
    one = ds[(0, table.video_id.tolist().index("B/v_c"))]["clip0"]
    assert one.shape == (4, 48, 64, 3) and all(np.array_equal(one[0], f) for f in one)


def test_gpu_decode_gives_the_cpu_views(mixed):
    """decode: gpu (workers send JPEG bytes + boxes; decode_jpeg + grid_sample in the training
    process, here on CPU) against decode: cpu (OpenCV decode + resize in the worker)."""
    method = _method("moco")
    table = mixed["table"]
    batches = {}
    for decode in ("cpu", "gpu"):
        ds = ClipDataset(table, {"rgb": mixed["frames"]}, method.make_sampler(), seed=3,
                         decode=decode)
        batches[decode] = collate([ds[(2, i)] for i in range(len(ds))])
    encoded = batches["gpu"]
    assert isinstance(encoded["clip0"], dict) and "jpeg:clip0" in encoded
    sent = sum(a.nbytes for sample in encoded["jpeg:clip0"] for a in sample)
    assert sent < sum(batches["cpu"][k].numel() for k in ("clip0", "clip1"))   # fewer bytes
    decoded = decode_views(encoded, torch.device("cpu"), 24)
    for key in ("clip0", "clip1"):
        a, b = batches["cpu"][key].float(), decoded[key].float()
        assert a.shape == b.shape == (4, 4, 24, 24, 3)
        # the same JPEG decoder (libjpeg-turbo); cv2's fixed-point bilinear weights: +-1
        assert (a - b).abs().max() <= 1 and (a - b).abs().mean() < 0.25, key
    assert torch.equal(decoded["index"], batches["cpu"]["index"])


def test_gpu_decode_mirrors_and_per_frame_boxes(mixed):
    cfg = AugmentConfig(preset="coclr", consistent=False, overrides={"flip_p": 0.5})
    spatial = build_augment(cfg, "rgb", 24).spatial
    sampler = SameClipSampler(4, 2, spatial=spatial)
    got = {}
    for decode in ("cpu", "gpu"):
        ds = ClipDataset(mixed["table"], {"rgb": mixed["frames"]}, sampler, seed=5, decode=decode)
        got[decode] = collate([ds[(0, i)] for i in range(len(ds))])
    boxes = got["gpu"]["clip0"]["boxes"]
    assert boxes.shape == (4, 4, 5) and 0 < boxes[..., 4].float().mean() < 1
    decoded = decode_views(got["gpu"], torch.device("cpu"), 24)
    diff = (decoded["clip0"].float() - got["cpu"]["clip0"].float()).abs()
    assert diff.max() <= 1 and diff.mean() < 0.25


def _compare_decodes(sampler, mixed, table, stores, epoch=0, seed=1):
    got = {}
    for decode in ("cpu", "gpu"):
        ds = ClipDataset(table, stores, sampler, seed=seed, decode=decode,
                         default_modality="rgb")
        got[decode] = collate([ds[(epoch, i)] for i in range(len(ds))])
    decoded = decode_views(got["gpu"], torch.device("cpu"), 16)
    assert set(decoded) == set(got["cpu"])
    for key, value in got["cpu"].items():
        if torch.is_tensor(value) and value.dtype == torch.uint8:
            diff = (decoded[key].float() - value.float()).abs()
            assert diff.max() <= 1 and diff.mean() < 0.25, key
    return got


def test_gpu_decode_of_every_kind_of_sample(mixed, tmp_path):
    """Scattered frames (image MoCo), two-stream phases (RGB encoded, flow cut in the worker),
    centre views (memory-bank passes): decode: gpu gives decode: cpu's views."""
    from test_cvtcl import init_checkpoints, spec as cvtcl_spec
    from vsslpipe.data.twostream import CenterClipSampler

    image = _method("image_moco", size=16, frames_per_video=3)
    table = mixed["table"]
    got = _compare_decodes(image.make_sampler(), mixed, table, {"rgb": mixed["frames"]})
    assert got["gpu"]["frames0"]["boxes"].shape == (4, 3, 5)          # a draw per frame
    paths = init_checkpoints(tmp_path)
    cotrain = build_method(cvtcl_spec("cvtcl", "rgb", stage="cotrain", init_rgb=str(paths["rgb"]),
                                      init_flow=str(paths["flow"]), cycles=1, epochs_per_phase=1))
    two = table[table.video_id != "B/v_c"]
    stores = {"rgb": mixed["frames"], "flow": mixed["flow"]}
    for epoch, encoded in ((0, "rgb"), (1, "rgb_center")):
        got = _compare_decodes(cotrain.make_sampler(), mixed, two, stores, epoch)
        assert isinstance(got["gpu"][encoded], dict)
        flow_key = "flow_center" if epoch == 0 else "flow"
        assert torch.is_tensor(got["gpu"][flow_key])                      # flow: never JPEG
    center = CenterClipSampler(8, 1, "rgb", cotrain.augment_rgb.spatial)
    _compare_decodes(center, mixed, table, {"rgb": mixed["frames"]})
