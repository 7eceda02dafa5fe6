"""The pictures: R@k chart (k beyond the database left out), gallery with ids, groups and
similarities, training curves as images. Files are checked to be real PNGs of a sensible size;
the same-group marking is checked on the labels the gallery draws."""
from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from vsslpipe.eval import plots


def _png(path):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 200
        return np.asarray(im.convert("L"))


def test_recall_chart_leaves_out_k_beyond_the_database(tmp_path, monkeypatch):
    table = pd.DataFrame([
        {"experiment": "cvrl_rgb", "init": "pretrained", "database": 8, "R@1": 40.0, "R@5": 70.5, "R@10": 100.0},
        {"experiment": "random_tiny3d_rgb", "init": "random", "database": 8, "R@1": 20.0, "R@5": 50.0, "R@10": 100.0}])
    drawn = []
    real = plots.plt.Axes.bar_label
    monkeypatch.setattr(plots.plt.Axes, "bar_label",
                        lambda self, bars, labels=None, **kw: drawn.append(labels) or real(self, bars, labels=labels, **kw))
    plots.recall_chart(table, tmp_path / "r.png")
    _png(tmp_path / "r.png")
    assert drawn == [["40.0", "70.5", ""], ["20.0", "50.0", ""]]    # R@10 > 8 videos: left out


def test_gallery_labels_ids_groups_similarities_and_marks_same_group(tmp_path, monkeypatch):
    topk = pd.DataFrame([{
        "query_id": "Run/v_Run_g01_c01", "query_label": 0, "query_group": "g01",
        "neighbour_ids": "Run/v_Run_g01_c02;Jump/v_Jump_g03_c01;Run/v_Run_g04_c01",
        "neighbour_labels": "0;1;0", "neighbour_groups": "g01;g03;g04",
        "similarities": "0.91234;0.8;0.7"}])
    titles, feet = [], []
    monkeypatch.setattr(plots.plt.Axes, "set_title", lambda self, t, **kw: titles.append(t))
    monkeypatch.setattr(plots.plt.Axes, "set_xlabel", lambda self, t, **kw: feet.append(t))
    frames = np.random.default_rng(0).integers(0, 255, (6, 24, 32, 3), dtype=np.uint8)
    plots.retrieval_gallery(topk, lambda vid: frames, tmp_path / "g.png", ["Run", "Jump"],
                            num_queries=1)
    _png(tmp_path / "g.png")
    assert titles == ["query: Run", "✓ top-1: Run  sim 0.912", "✗ top-2: Jump  sim 0.800",
                      "✓ top-3: Run  sim 0.700"]
    assert feet == ["v_Run_g01_c01", "v_Run_g01_c02  SAME GROUP", "v_Jump_g03_c01", "v_Run_g04_c01"]


def test_training_curves_as_an_image(tmp_path):
    train = tmp_path / "run/plots/metrics/train"
    train.mkdir(parents=True)
    for name, values in {"loss": [3.0, 2.5, 2.0], "lr": [0.1, 0.05, 0.0]}.items():
        pd.DataFrame({"step": range(3), name: values}).to_csv(train / f"{name}.tsv", sep="\t", index=False)
    assert plots.training_curves(tmp_path / "run/plots/metrics", tmp_path / "c.png", "run")
    assert _png(tmp_path / "c.png").std() > 0
    assert not plots.training_curves(tmp_path / "none", tmp_path / "d.png")
    assert not (tmp_path / "d.png").exists()
