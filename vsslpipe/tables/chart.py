"""NAME.png per table: for each metric, our mean with the seed spread as error bars beside the
published value; random-init floors grey and hatched; values printed with one decimal."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import atomic_path
from .definitions import TableDef
from .render import title_of

OURS, PAPER, FLOOR = "#1f77b4", "#ff7f0e", "#9e9e9e"


def _value(rec, column):
    value = rec.get(column)
    return None if value is None or pd.isna(value) else float(value)


def write_chart(table: TableDef, frame: pd.DataFrame, scale: str, path: Path) -> Path:
    """Horizontal grouped bars, one panel per metric (rows top to bottom as in the table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    records = [rec for _, rec in frame.iterrows()]
    n_rows, metrics = len(records), list(table.metrics)
    fig, axes = plt.subplots(1, len(metrics), sharey=True, squeeze=False,
                             figsize=(1.2 + 3.0 * len(metrics), 1.4 + 0.62 * n_rows))
    # no published value anywhere (a claim made in words): one centred bar per row, no legend
    # entry for the paper
    has_paper = any(_value(rec, f"{m} paper") is not None for rec in records for m in metrics)
    height, offset = (0.38, 0.38 / 2) if has_paper else (0.5, 0.0)
    for ax, metric in zip(axes[0], metrics):
        top = 0.0
        for i, rec in enumerate(records):
            y = n_rows - 1 - i
            floor = rec["kind"] == "floor"
            mean, std = _value(rec, f"{metric} mean"), _value(rec, f"{metric} std")
            paper = _value(rec, f"{metric} paper")
            if mean is not None:
                ax.barh(y + offset, mean, height, xerr=std or None, capsize=3,
                        color=FLOOR if floor else OURS, hatch="//" if floor else None,
                        edgecolor="#424242" if floor else OURS, ecolor="#212121")
                end = mean + (std or 0.0)
                n = int(rec[f"{metric} n"])
                note = f" (n={n})" if n != int(rec["seeds"]) else ""
                ax.text(end, y + offset, f" {mean:.1f}{note}", va="center", fontsize=7)
                top = max(top, end)
            else:
                missing = metric in str(rec.get("beyond_database", "")).split()
                ax.text(0, y + offset, " k > database" if missing else " not run",
                        va="center", fontsize=7, color="#616161", style="italic")
            if paper is not None:
                ax.barh(y - height / 2, paper, height, color=PAPER)
                ax.text(paper, y - height / 2, f" {paper:.1f}", va="center", fontsize=7)
                top = max(top, paper)
        ax.set_title(metric, fontsize=10)
        ax.set_xlim(0, max(top * 1.28, 1.0))
        ax.set_xlabel("%", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0][0].set_yticks(range(n_rows))
    axes[0][0].set_yticklabels([rec["label"] + (" (floor)" if rec["kind"] == "floor" and
                                                 "random" not in rec["label"] else "")
                                for rec in records][::-1], fontsize=8)
    seeds = int(records[0]["seeds"]) if records else 1
    handles = [Patch(color=OURS, label=f"ours (mean ± std over {seeds} seeds; n if fewer)" if seeds > 1
                     else "ours (one seed)")]
    if has_paper:
        handles.append(Patch(color=PAPER, label="published"))
    if table.floors:
        handles.append(Patch(facecolor=FLOOR, edgecolor="#424242", hatch="//",
                             label="random-init floor (ours)"))
    fig.suptitle(f"{title_of(table, scale)}\nscale: {scale}", fontsize=10)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)
    return path
