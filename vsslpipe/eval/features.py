"""The features file written by ``vsslpipe export`` and read by retrieval, the probe and summary.

Schema (version 1)::

    /                      attrs: schema="vsslpipe-features", schema_version=1, experiment,
                                  checkpoint, init ("pretrained" | "random"), method, modality,
                                  backbone (JSON), dataset, protocol, clip (JSON: clip_len, stride,
                                  size), settings (JSON: every export setting), vsslpipe_version
    /class_names           UTF-8 strings; label i is class_names[i]
    /<split>/features      (videos, dims) float32, split in {train, test}
    /<split>/labels        (videos,) int64, 0-based
    /<split>/ids           (videos,) UTF-8 video ids (the manifest's)
    /<split>/groups        (videos,) UTF-8 source groups (UCF101 'gXX'; '' when unknown)
    /<split>/num_clips     (videos,) int32, clips averaged into each feature
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np

from ..atomic import atomic_path
from ..errors import DataError

SCHEMA = "vsslpipe-features"
SCHEMA_VERSION = 1
SPLITS = ("train", "test")
_STR = h5py.string_dtype("utf-8")


@dataclass
class SplitFeatures:
    features: np.ndarray
    labels: np.ndarray
    ids: list[str]
    groups: list[str] = field(default_factory=list)
    num_clips: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if not self.groups:
            self.groups = [""] * len(self.ids)
        if self.num_clips is None:
            self.num_clips = np.ones(len(self.ids), np.int32)
        n = len(self.ids)
        if self.features.ndim != 2 or len(self.features) != n or len(self.labels) != n:
            raise ValueError("features (n, d), labels (n,) and ids (n) must agree")


@dataclass
class FeatureSet:
    splits: dict[str, SplitFeatures]
    attrs: dict
    class_names: list[str]

    @property
    def train(self) -> SplitFeatures:
        return self.splits["train"]

    @property
    def test(self) -> SplitFeatures:
        return self.splits["test"]

    def json_attr(self, key: str) -> dict:
        return json.loads(self.attrs.get(key, "{}"))


def write_features(path: str | Path, splits: Mapping[str, SplitFeatures], class_names: list[str],
                   attrs: Mapping[str, object]) -> None:
    """Write a features file atomically (dict/list attributes are stored as JSON)."""
    from .. import __version__

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["schema"] = SCHEMA
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["vsslpipe_version"] = __version__
            for key, value in attrs.items():
                if isinstance(value, (dict, list)):
                    value = json.dumps(value)
                elif isinstance(value, str):
                    value = str(value)  # str subclasses (torch's version string) confuse h5py
                f.attrs[key] = value
            f.create_dataset("class_names", data=list(class_names), dtype=_STR)
            for name, s in splits.items():
                g = f.create_group(name)
                g.create_dataset("features", data=s.features)
                g.create_dataset("labels", data=s.labels)
                g.create_dataset("ids", data=s.ids, dtype=_STR)
                g.create_dataset("groups", data=s.groups, dtype=_STR)
                g.create_dataset("num_clips", data=np.asarray(s.num_clips, np.int32))


def _strings(ds: h5py.Dataset) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]]


KINDS = {SCHEMA: "a vsslpipe features file (from `vsslpipe export`)",
         "vsslpipe-frames": "a vsslpipe frame store (from `vsslpipe extract`)",
         "vsslpipe-flow": "a vsslpipe flow store (from `vsslpipe flow`)"}


def describe_file(path: str | Path) -> str:
    """What a file is, in words, for messages about a file of the wrong kind ("a PyTorch
    checkpoint", "a vsslpipe frame store", ...). Reads a few bytes and HDF5 attributes only."""
    path = Path(path)
    if path.is_dir():
        index = path / "index.h5"   # a store is a folder with its index
        return f"a folder holding {describe_file(index)}" if index.is_file() else "a folder"
    if h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as f:
                schema = f.attrs.get("schema")
        except OSError:
            return "an HDF5 file that cannot be opened (truncated or corrupt)"
        schema = schema.decode() if isinstance(schema, bytes) else schema
        return KINDS.get(schema, "an HDF5 file of another kind (no vsslpipe schema attribute)")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "an empty file"
    if head == b"PK\x03\x04":
        import zipfile

        try:
            names = zipfile.ZipFile(path).namelist()
        except zipfile.BadZipFile:
            names = []
        return "a PyTorch checkpoint" if any(n.endswith("data.pkl") for n in names) else "a zip archive"
    if head[:1] == b"\x80":
        return "a Python pickle (an old-style PyTorch checkpoint?)"
    return "neither HDF5 nor a PyTorch checkpoint"


def read_features(path: str | Path) -> FeatureSet:
    """Read a features file; a missing file or one of another kind (a checkpoint, a store, a
    truncated file) is one DataError naming the file and what it is."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: features file not found (run `vsslpipe export`)")
    need = ("retrieve, linear and summary read the features file that `vsslpipe export "
            "--checkpoint <model.pt> --out <features.h5>` writes")
    if path.is_dir() or not h5py.is_hdf5(path):
        raise DataError(f"{path}: not a features file: it is {describe_file(path)}; {need}")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("schema") != SCHEMA:
                raise DataError(f"{path}: not a features file: it is {describe_file(path)}; {need}")
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            splits = {}
            for name in SPLITS:
                if name not in f:
                    raise DataError(f"{path}: features file without its '{name}' split; "
                                    "re-run `vsslpipe export`")
                g = f[name]
                splits[name] = SplitFeatures(g["features"][()], g["labels"][()], _strings(g["ids"]),
                                             _strings(g["groups"]), g["num_clips"][()])
            return FeatureSet(splits, attrs, _strings(f["class_names"]))
    except (OSError, KeyError, ValueError) as exc:   # truncated file, missing dataset, bad shapes
        raise DataError(f"{path}: damaged features file ({exc.__class__.__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}); "
                        "re-run `vsslpipe export`") from None
