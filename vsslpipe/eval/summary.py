"""One table of every evaluated encoder: retrieval R@k, linear probe, and the gain over the
random-initialised encoder of the same backbone, modality, dataset and protocol."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..errors import DataError
from .features import read_features

COLUMNS = ["experiment", "method", "modality", "init", "dataset", "backbone", "protocol",
           "R@1", "R@5", "R@10", "R@20", "R@50", "linear_top1", "linear_top5",
           "finetune_top1", "R@1_gain_over_random", "queries", "database", "videos_skipped"]
RECALL_KS = (1, 5, 10, 20, 50)


def encoder_files(eval_dir: str | Path, name: str) -> dict[str, Path]:
    """Where the evaluation stages put an encoder's outputs (dvc.yaml uses the same layout)."""
    base = Path(eval_dir) / name
    return {"features": base / "features.h5", "retrieval": base / "retrieval.json",
            "linear": base / "linear.json", "finetune": base / "finetune.json",
            "topk": base / "retrieval_topk.csv"}


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def summary_row(eval_dir: str | Path, name: str) -> dict:
    files = encoder_files(eval_dir, name)
    if not files["features"].is_file():
        raise DataError(f"{files['features']}: no features for encoder {name!r} (run export)")
    features = read_features(files["features"])
    attrs = features.attrs
    retrieval, linear, finetune = (_json(files[k]) for k in ("retrieval", "linear", "finetune"))
    backbone = json.loads(attrs.get("backbone", "{}")).get("name", "")
    row = {"experiment": name, "method": attrs.get("method", ""),
           "modality": attrs.get("modality", ""), "init": attrs.get("init", ""),
           "dataset": attrs.get("dataset", ""), "backbone": backbone,
           "protocol": retrieval.get("protocol", attrs.get("protocol", ""))}
    for k in RECALL_KS:
        row[f"R@{k}"] = retrieval.get(f"R@{k}")
    row["linear_top1"], row["linear_top5"] = linear.get("top1"), linear.get("top5")
    row["finetune_top1"] = finetune.get("top1")
    row["queries"], row["database"] = retrieval.get("queries"), retrieval.get("database")
    row["videos_skipped"] = features.json_attr("selection").get("videos_skipped", 0)
    return row


def add_random_gain(table: pd.DataFrame) -> pd.DataFrame:
    """R@1 minus the R@1 of the random encoder with the same backbone/modality/dataset/protocol."""
    key = ["backbone", "modality", "dataset", "protocol"]
    floor = (table[table["init"] == "random"].groupby(key)["R@1"].max()
             .rename("_floor").reset_index())
    merged = table.merge(floor, on=key, how="left")
    gain = merged["R@1"] - merged["_floor"]
    table = table.copy()
    table["R@1_gain_over_random"] = gain.where(table["init"].values == "pretrained").round(4).values
    return table


def build_summary(eval_dir: str | Path, names: Sequence[str]) -> pd.DataFrame:
    if not names:
        raise DataError("no encoders to summarise (evaluate.encoders is empty)")
    table = pd.DataFrame([summary_row(eval_dir, n) for n in names])
    return add_random_gain(table)[COLUMNS]


def summary_metrics(table: pd.DataFrame) -> dict:
    """Nested {experiment: {metric: value}} for `dvc metrics show` (missing values dropped)."""
    out = {}
    for row in table.to_dict("records"):
        values = {c: row[c] for c in COLUMNS[7:] if pd.notna(row[c])}
        values = {c: (int(v) if c in ("queries", "database", "videos_skipped") else v)
                  for c, v in values.items()}
        out[row["experiment"]] = values
    return out
