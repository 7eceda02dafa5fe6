"""A file of the wrong kind given to evaluation is one DataError naming the file and what it is
(never a traceback): a checkpoint as features, a store as features or checkpoint, a frame-CNN
checkpoint to export, an export whose split has no usable video."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vsslpipe.errors import DataError
from vsslpipe.eval.export import export_splits, load_encoder
from vsslpipe.eval.features import SplitFeatures, describe_file, read_features, write_features
from vsslpipe.eval.protocols import get_protocol
from vsslpipe.models import build_backbone
from vsslpipe.models.checkpoint import load_backbone, save_checkpoint
from vsslpipe.stages.cli import app

from test_eval_windows import write_stores

NEED_FEATURES = ("retrieve, linear and summary read the features file that `vsslpipe export "
                 "--checkpoint <model.pt> --out <features.h5>` writes")
NEED_ENCODER = ("export needs a video encoder's checkpoint from `vsslpipe pretrain` "
                "(models/<experiment>/final.pt)")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    manifest = write_stores(root)
    net = build_backbone("tiny3d", in_channels=3, width=4)
    save_checkpoint(root / "model.pt", {
        "method": "cvrl", "modality": "rgb", "backbone": {"name": "tiny3d", "kwargs": {"in_channels": 3, "width": 4}},
        "backbone_state": net.state_dict(), "clip": {"clip_len": 4, "stride": 1, "size": 16}, "config": {}})
    frame_cnn = build_backbone("frame_cnn", in_channels=3, arch="tiny2d")
    save_checkpoint(root / "frames_cnn.pt", {
        "method": "image_moco", "modality": "rgb",
        "backbone": {"name": "frame_cnn", "kwargs": {"in_channels": 3, "arch": "tiny2d"}},
        "backbone_state": frame_cnn.state_dict(), "clip": {"clip_len": 1, "stride": 1, "size": 16},
        "config": {}})
    split = SplitFeatures(np.zeros((2, 3)), [0, 1], ["a", "b"])
    write_features(root / "features.h5", {"train": split, "test": split}, ["x", "y"], {})
    whole = (root / "features.h5").read_bytes()
    (root / "truncated.h5").write_bytes(whole[: len(whole) // 2])
    with h5py.File(root / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    return root, manifest


def _error(fn, *args) -> str:
    with pytest.raises(DataError) as info:
        fn(*args)
    return str(info.value)


def test_read_features_names_what_the_file_is(files):
    root, _ = files
    cases = {"model.pt": "a PyTorch checkpoint", "frames.h5": "a vsslpipe frame store (from `vsslpipe extract`)",
             "flow.h5": "a vsslpipe flow store (from `vsslpipe flow`)",
             "other.h5": "an HDF5 file of another kind (no vsslpipe schema attribute)"}
    for name, kind in cases.items():
        assert _error(read_features, root / name) == f"{root / name}: not a features file: it is {kind}; {NEED_FEATURES}"
    message = _error(read_features, root / "truncated.h5")
    assert message.startswith(f"{root / 'truncated.h5'}: ") and "\n" not in message
    assert read_features(root / "features.h5").train.ids == ["a", "b"]   # the right kind reads


def test_describe_file_tells_folders_and_pickles(files, tmp_path):
    root, _ = files
    store = tmp_path / "store"
    store.mkdir()
    (store / "index.h5").write_bytes((root / "frames.h5").read_bytes())
    assert describe_file(store) == "a folder holding a vsslpipe frame store (from `vsslpipe extract`)"
    torch.save({"a": 1}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert describe_file(tmp_path / "old.pt").startswith("a Python pickle")
    (tmp_path / "empty").write_bytes(b"")
    assert describe_file(tmp_path / "empty") == "an empty file"


def test_load_encoder_refuses_other_files(files):
    root, _ = files
    for name, kind in (("features.h5", "a vsslpipe features file (from `vsslpipe export`)"),
                       ("frames.h5", "a vsslpipe frame store (from `vsslpipe extract`)")):
        for init in ("pretrained", "random"):
            assert _error(load_encoder, root / name, init) == (
                f"{root / name}: not a vsslpipe checkpoint: it is {kind}; {NEED_ENCODER}")


def test_frame_cnn_checkpoint_is_not_a_video_encoder(files):
    root, _ = files
    path = root / "frames_cnn.pt"
    expected = (f"{path}: a frame-CNN checkpoint (method 'image_moco', backbone 'frame_cnn', from "
                f"`vsslpipe pretrain-frames`): a 2D image encoder, not a video encoder; {NEED_ENCODER}")
    assert _error(load_backbone, path) == expected
    for init in ("pretrained", "random"):
        assert _error(load_encoder, path, init) == expected
    net, meta = load_encoder(root / "model.pt")   # a video encoder loads
    assert meta["method"] == "cvrl"


def test_export_of_a_split_without_usable_videos(files):
    root, manifest = files
    net = build_backbone("tiny3d", in_channels=3, width=4).eval()
    only_train = manifest[manifest["split"] == "train"]
    message = _error(export_splits, net, "rgb", root / "frames.h5", only_train, get_protocol("coclr"),
                     {"clip_len": 4, "stride": 1, "size": 16})
    assert message == ("export: no usable 'test' videos (the manifest lists none, or every one was "
                       "skipped); retrieval and the probes need features of both the train and the "
                       "test split")


def test_cli_reports_wrong_files_in_one_line(files, tmp_path):
    root, _ = files
    result = CliRunner().invoke(app, ["retrieve", "--features", str(root / "model.pt"),
                                      "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 1
    assert result.output.strip() == (f"error: --features: {root / 'model.pt'}: not a features file: "
                                     f"it is a PyTorch checkpoint; {NEED_FEATURES}")
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(root / "frames_cnn.pt"),
                                      "--out", str(tmp_path / "f.h5")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"error: {root / 'frames_cnn.pt'}: a frame-CNN checkpoint "
                                                  "(method 'image_moco', backbone 'frame_cnn', from "
                                                  "`vsslpipe pretrain-frames`): a 2D image encoder, not a "
                                                  f"video encoder; {NEED_ENCODER}"]
