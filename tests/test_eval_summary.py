"""Summary: the columns, the gain over the matching random encoder, missing results left empty."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from vsslpipe.eval.features import SplitFeatures, write_features
from vsslpipe.eval.summary import COLUMNS, build_summary, encoder_files, summary_metrics


def _encoder(eval_dir, name, init, modality, r1, linear=None):
    files = encoder_files(eval_dir, name)
    files["features"].parent.mkdir(parents=True)
    split = SplitFeatures(np.zeros((2, 3)), [0, 1], ["a/1", "b/1"])
    write_features(files["features"], {"train": split, "test": split}, ["a", "b"],
                   {"experiment": name, "init": init, "modality": modality,
                    "method": "cvrl" if init == "pretrained" else "random", "dataset": "synth",
                    "protocol": "coclr", "backbone": {"name": "tiny3d", "kwargs": {}}})
    files["retrieval"].write_text(json.dumps({"R@1": r1, "R@5": r1 + 10, "R@10": r1 + 20,
                                              "R@20": r1 + 30, "R@50": 100.0, "protocol": "coclr"}))
    if linear is not None:
        files["linear"].write_text(json.dumps({"top1": linear, "top5": 90.0}))


def test_summary_columns_and_random_gain(tmp_path):
    _encoder(tmp_path, "cvrl_rgb", "pretrained", "rgb", 40.0, linear=50.0)
    _encoder(tmp_path, "cvrl_flow", "pretrained", "flow", 30.0)
    _encoder(tmp_path, "random_rgb", "random", "rgb", 15.0, linear=20.0)
    _encoder(tmp_path, "random_flow", "random", "flow", 12.5)
    table = build_summary(tmp_path, ["cvrl_rgb", "cvrl_flow", "random_rgb", "random_flow"])
    assert list(table.columns) == COLUMNS
    for col in ("experiment", "method", "modality", "init", "dataset", "R@1", "R@5", "R@10",
                "R@20", "linear_top1"):
        assert col in table.columns
    rows = table.set_index("experiment")
    assert rows.loc["cvrl_rgb", "R@1_gain_over_random"] == 25.0
    assert rows.loc["cvrl_flow", "R@1_gain_over_random"] == 17.5
    assert pd.isna(rows.loc["random_rgb", "R@1_gain_over_random"])
    assert pd.isna(rows.loc["cvrl_flow", "linear_top1"])          # not run: empty
    assert rows.loc["cvrl_rgb", "init"] == "pretrained" and rows.loc["cvrl_flow", "modality"] == "flow"
    metrics = summary_metrics(table)
    assert metrics["cvrl_rgb"]["linear_top1"] == 50.0 and "linear_top1" not in metrics["cvrl_flow"]
    csv = pd.read_csv(pd.io.common.StringIO(table.to_csv(index=False)))
    assert np.isnan(csv.loc[1, "linear_top1"])
