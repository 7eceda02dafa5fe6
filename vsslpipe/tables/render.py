"""A table with our measured numbers beside the published ones, as Markdown and CSV."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import pandas as pd

from ..atomic import write_text_atomic
from .definitions import TableDef, published_value


def table_frame(table: TableDef, scale: str, measured: Mapping[str, Mapping[str, float]],
                experiments: Mapping[str, str]) -> pd.DataFrame:
    """One line per row: label, then ``<metric> (ours)`` and ``<metric> (paper)`` per metric."""
    records = []
    for row in table.rows:
        record = {"row": row.name, "label": row.label or row.name, "encoder": row.encoder}
        ours = measured.get(row.name)
        for metric in table.metrics:
            record[f"{metric} (ours)"] = None if ours is None else ours.get(metric)
            record[f"{metric} (paper)"] = published_value(row, metric)
        record["scale"] = scale
        record["experiment"] = experiments.get(row.name, "") if ours is not None else "(not run)"
        records.append(record)
    return pd.DataFrame.from_records(records)


def _fmt(value: Optional[float]) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.1f}"


def to_markdown(table: TableDef, frame: pd.DataFrame, scale: str) -> str:
    lines = [f"# {table.title}", "", f"Source: {table.paper}."]
    if table.dataset:
        lines.append(f"Published numbers: {table.dataset}.")
    lines.append(f"Measured at scale **{scale}**"
                 + (" (the built-in synthetic dataset on CPU: compare trends, not values)."
                    if scale == "demo" else "."))
    if table.notes:
        lines += ["", table.notes]
    lines.append("")
    header = ["row"] + [f"{m} ours / paper" for m in table.metrics] + ["experiment"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for _, rec in frame.iterrows():
        cells = [rec["label"]]
        cells += [f"{_fmt(rec[f'{m} (ours)'])} / {_fmt(rec[f'{m} (paper)'])}" for m in table.metrics]
        cells.append(f"`{rec['experiment']}`")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(table: TableDef, frame: pd.DataFrame, scale: str, out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    md, csv = out_dir / f"{table.name}.md", out_dir / f"{table.name}.csv"
    write_text_atomic(md, to_markdown(table, frame, scale))
    write_text_atomic(csv, frame.to_csv(index=False))
    return md, csv
