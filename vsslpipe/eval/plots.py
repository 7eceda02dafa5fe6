"""Pictures of evaluation results: an R@k chart per dataset and a retrieval gallery.

The gallery follows the papers' retrieval figures: each row is a test query (a strip of frames)
followed by its top-3 training neighbours, framed green when they share the query's class and
red otherwise.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..atomic import atomic_path  # noqa: E402

CORRECT, WRONG = (0.1, 0.7, 0.2), (0.85, 0.1, 0.1)


def recall_chart(table: pd.DataFrame, out: str | Path, title: str = "",
                 ks: Sequence[int] = (1, 5, 10, 20, 50)) -> None:
    """Grouped bars: R@k (x) per encoder (colour); random-initialised encoders hatched."""
    ks = [k for k in ks if f"R@{k}" in table.columns and table[f"R@{k}"].notna().any()]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(ks), 3.6), dpi=120)
    width = 0.8 / max(1, len(table))
    x = np.arange(len(ks))
    for i, row in enumerate(table.to_dict("records")):
        values = [row[f"R@{k}"] if pd.notna(row[f"R@{k}"]) else 0.0 for k in ks]
        bars = ax.bar(x + (i - (len(table) - 1) / 2) * width, values, width,
                      label=f"{row['experiment']} ({row['init']})",
                      hatch="//" if row["init"] == "random" else None, edgecolor="black", lw=0.4)
        ax.bar_label(bars, fmt="%.0f", fontsize=6, padding=1)
    ax.set_xticks(x, [f"R@{k}" for k in ks])
    ax.set_ylabel("recall (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title or "Retrieval: test queries vs. training videos")
    ax.legend(fontsize=7, loc="upper left", frameon=False)
    fig.tight_layout()
    _save(fig, out)


def frame_strip(frames: np.ndarray, count: int) -> np.ndarray:
    """``count`` evenly spaced frames of (T, H, W, 3) side by side."""
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return np.concatenate([frames[i] for i in picks], axis=1)


def pick_queries(topk: pd.DataFrame, count: int) -> pd.DataFrame:
    """Deterministic choice: one query per class in class order, spread over the classes."""
    firsts = topk.drop_duplicates("query_label").sort_values("query_label")
    idx = np.linspace(0, len(firsts) - 1, min(count, len(firsts))).round().astype(int)
    return firsts.iloc[np.unique(idx)]


def retrieval_gallery(topk: pd.DataFrame, read_frames, out: str | Path, class_names: Sequence[str],
                      num_queries: int = 4, num_neighbours: int = 3, strip_frames: int = 4,
                      title: str = "") -> None:
    """PNG gallery; ``read_frames(video_id) -> (T, H, W, 3) uint8`` supplies the pictures."""
    queries = pick_queries(topk, num_queries)
    cols = 1 + num_neighbours
    fig, axes = plt.subplots(len(queries), cols, figsize=(2.6 * cols, 1.0 + 0.75 * len(queries)),
                             dpi=120, squeeze=False)
    for r, q in enumerate(queries.to_dict("records")):
        ids = q["neighbour_ids"].split(";")[:num_neighbours]
        labels = [int(v) for v in str(q["neighbour_labels"]).split(";")[:num_neighbours]]
        panels = [(q["query_id"], int(q["query_label"]), None)] + [
            (vid, lab, lab == int(q["query_label"])) for vid, lab in zip(ids, labels)]
        for c, (vid, lab, correct) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(frame_strip(read_frames(vid), strip_frames))
            ax.set_xticks([]), ax.set_yticks([])
            colour = "black" if correct is None else (CORRECT if correct else WRONG)
            for side in ax.spines.values():
                side.set_edgecolor(colour)
                side.set_linewidth(1.0 if correct is None else 3.0)
            mark = "query" if correct is None else ("✓" if correct else "✗") + f" top-{c}"
            ax.set_title(f"{mark}: {class_names[lab]}", fontsize=7, color=colour)
    fig.suptitle(title or "Retrieval gallery: test query, top-3 training neighbours", fontsize=8)
    fig.tight_layout()
    _save(fig, out)


def _save(fig, out: str | Path) -> None:
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
