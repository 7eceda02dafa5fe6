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


def read_features(path: str | Path) -> FeatureSet:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: features file not found (run `vsslpipe export`)")
    with h5py.File(path, "r") as f:
        if f.attrs.get("schema") != SCHEMA:
            raise DataError(f"{path}: not a vsslpipe features file (schema attribute)")
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        splits = {}
        for name in SPLITS:
            if name not in f:
                raise DataError(f"{path}: no '{name}' split")
            g = f[name]
            splits[name] = SplitFeatures(g["features"][()], g["labels"][()], _strings(g["ids"]),
                                         _strings(g["groups"]), g["num_clips"][()])
        return FeatureSet(splits, attrs, _strings(f["class_names"]))
