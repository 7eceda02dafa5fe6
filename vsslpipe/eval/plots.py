"""Pictures of results: an R@k chart per dataset, a retrieval gallery per encoder and the
training curves of each pre-training run as images.

The gallery follows the papers' retrieval figures: each row is a test query (a strip of frames)
followed by its top-3 training neighbours, framed green when they share the query's class and
red otherwise, a dashed frame when the neighbour comes from the query's own source group.
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
    """Grouped bars: R@k (x) per encoder (colour), values with one decimal; random-initialised
    floors grey and hatched; an R@k whose k exceeds an encoder's database (every query is then a
    hit by construction) is left out and marked "k > db"; the legend sits outside the bars."""
    ks = [k for k in ks if f"R@{k}" in table.columns and table[f"R@{k}"].notna().any()]
    rows = table.to_dict("records")
    fig, ax = plt.subplots(figsize=(2.0 + 1.5 * len(ks) + 2.6, 3.8), dpi=150)
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(ks))
    colours = iter(plt.get_cmap("tab10").colors)
    for i, row in enumerate(rows):
        floor = row.get("init") == "random"
        database = row.get("database")
        beyond = [pd.notna(database) and k > database for k in ks]
        values = [np.nan if b or pd.isna(row[f"R@{k}"]) else row[f"R@{k}"]
                  for k, b in zip(ks, beyond)]
        offset = x + (i - (len(rows) - 1) / 2) * width
        style = dict(color="0.75", hatch="///", edgecolor="0.35") if floor else \
            dict(color=next(colours), edgecolor="black")
        bars = ax.bar(offset, np.nan_to_num(values), width, lw=0.4,
                      label=f"{row['experiment']} ({'random init' if floor else 'pretrained'})",
                      **style)
        ax.bar_label(bars, labels=["" if np.isnan(v) else f"{v:.1f}" for v in values],
                     fontsize=5.5, padding=1, rotation=90 if len(rows) > 4 else 0)
        for pos, b in zip(offset, beyond):
            if b:
                ax.text(pos, 1, "k > db", rotation=90, fontsize=5.5, ha="center", va="bottom",
                        color="0.3")
    ax.set_xticks(x, [f"R@{k}" for k in ks])
    ax.set_ylabel("recall (%)")
    ax.set_ylim(0, 110)
    ax.set_title(title or "Retrieval: test queries vs. training videos", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
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


def video_label(video_id: str, group: str = "") -> str:
    """The short name of a video in a picture: its file stem and source group."""
    stem = str(video_id).split("/")[-1]
    return f"{stem} [{group}]" if group and group not in stem else stem


def retrieval_gallery(topk: pd.DataFrame, read_frames, out: str | Path, class_names: Sequence[str],
                      num_queries: int = 4, num_neighbours: int = 3, strip_frames: int = 4,
                      title: str = "") -> None:
    """PNG gallery; ``read_frames(video_id) -> (T, H, W, 3) uint8`` supplies the pictures.

    Each panel names its video (id and source group), its class and, for a neighbour, the
    similarity; a neighbour from the query's own source group is marked "same group" (on UCF101
    the clips of one gXX group are cut from one long video, so such a hit is not a real
    retrieval) and drawn with a dashed frame."""
    queries = pick_queries(topk, num_queries)
    cols = 1 + num_neighbours
    fig, axes = plt.subplots(len(queries), cols, figsize=(2.9 * cols, 1.3 + 1.0 * len(queries)),
                             dpi=150, squeeze=False)
    for r, q in enumerate(queries.to_dict("records")):
        ids = q["neighbour_ids"].split(";")[:num_neighbours]
        labels = [int(v) for v in str(q["neighbour_labels"]).split(";")[:num_neighbours]]
        sims = _split(q.get("similarities"), num_neighbours, float)
        groups = _split(q.get("neighbour_groups"), num_neighbours, str)
        query_group = "" if pd.isna(q.get("query_group", "")) else str(q.get("query_group", ""))
        panels = [(q["query_id"], int(q["query_label"]), None, query_group, None)] + [
            (vid, lab, lab == int(q["query_label"]), g, sim)
            for vid, lab, g, sim in zip(ids, labels, groups, sims)]
        for c, (vid, lab, correct, group, sim) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(frame_strip(read_frames(vid), strip_frames))
            ax.set_xticks([]), ax.set_yticks([])
            colour = "black" if correct is None else (CORRECT if correct else WRONG)
            same_group = correct is not None and bool(group) and group == query_group
            for side in ax.spines.values():
                side.set_edgecolor(colour)
                side.set_linewidth(1.0 if correct is None else 3.0)
                side.set_linestyle("--" if same_group else "-")
            if correct is None:
                head = f"query: {class_names[lab]}"
            else:
                head = f"{'✓' if correct else '✗'} top-{c}: {class_names[lab]}"
                if sim is not None:
                    head += f"  sim {sim:.3f}"
            foot = video_label(vid, group) + ("  SAME GROUP" if same_group else "")
            ax.set_title(head, fontsize=6.5, color=colour)
            ax.set_xlabel(foot, fontsize=5.5, color="0.25" if not same_group else WRONG)
    fig.suptitle(title or f"Retrieval gallery: test query, top-{num_neighbours} training "
                 "neighbours (dashed frame: the query's own source group)", fontsize=8)
    fig.tight_layout()
    _save(fig, out)


def _split(cell, count: int, kind) -> list:
    """``a;b;c`` of a top-k CSV cell as ``count`` values (None where the column is absent)."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return [None] * count
    values = [kind(v) for v in str(cell).split(";")[:count]]
    return values + [None] * (count - len(values))


def training_curves(plots_dir: str | Path, out: str | Path, title: str = "") -> bool:
    """The dvclive curves of a run (``<dvclive>/<run>/plots/metrics/train/*.tsv``) as one PNG,
    one panel per metric against the epoch: readable offline, unlike ``dvc plots show``'s page,
    which loads its charting code from the internet. False when the run has no curves."""
    files = sorted(Path(plots_dir).glob("**/*.tsv"))
    if not files:
        return False
    cols = min(3, len(files))
    rows = -(-len(files) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), dpi=150,
                             squeeze=False)
    for ax, path in zip(axes.flat, files):
        curve = pd.read_csv(path, sep="\t")
        metric = [c for c in curve.columns if c not in ("step", "timestamp")][-1]
        ax.plot(curve["step"] + 1, curve[metric], marker="o", ms=2, lw=1)
        ax.set_title(path.relative_to(plots_dir).with_suffix("").as_posix(), fontsize=7)
        ax.set_xlabel("epoch", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in list(axes.flat)[len(files):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    _save(fig, out)
    return True


def _save(fig, out: str | Path) -> None:
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
