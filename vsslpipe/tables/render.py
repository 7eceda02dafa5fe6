"""A table with our measured numbers (mean ± sample std over seeds, and n) beside the published
ones, as Markdown and CSV; random-init floors below the rows; then which of the paper's
orderings our seeds reproduce (orderings.py; not for a rehearsal, whose numbers mean nothing)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Optional

import pandas as pd

from ..atomic import write_text_atomic
from . import orderings
from .definitions import TableDef, published_value
from .seeds import Stat

SCALE_NOTES = {
    "demo": " (the built-in synthetic dataset on CPU: compare trends, not values).",
    "rehearsal": (" — a **rehearsal**: the paper's models and clip shapes on a tiny generated "
                  "dataset for one or two steps per stage. It proves the settings run; its "
                  "numbers are not results."),
}


def title_of(table: TableDef, scale: str) -> str:
    return f"Rehearsal (not a result): {table.title}" if scale == "rehearsal" else table.title


def table_frame(table: TableDef, scale: str, stats: Mapping[str, Mapping[str, Stat]],
                experiments: Mapping[str, list], seeds: int,
                beyond: Optional[Mapping[str, set]] = None) -> pd.DataFrame:
    """One line per row, then per floor: n, and per metric mean, std, n and the paper's value
    (``beyond``: row -> the R@k metrics whose k exceeds the retrieval database)."""
    records = []
    for row in table.rows + table.floors:
        ours = stats.get(row.name) or {}
        names = experiments.get(row.name) or []
        record = {"row": row.name, "label": row.label or row.name, "encoder": row.encoder,
                  "kind": "floor" if row.floor else "row", "n": len(names), "seeds": seeds}
        for metric in table.metrics:
            stat = ours.get(metric)
            record[f"{metric} mean"] = None if stat is None else stat.mean
            record[f"{metric} std"] = None if stat is None else stat.std
            record[f"{metric} n"] = 0 if stat is None else stat.n
            record[f"{metric} paper"] = published_value(row, metric)
        missing = set(range(seeds))
        for stat in ours.values():
            missing &= set(stat.missing)
        record["missing_seeds"] = " ".join(map(str, sorted(missing))) if ours else ""
        record["beyond_database"] = " ".join(sorted((beyond or {}).get(row.name, ())))
        record["scale"] = scale
        record["rehearsal"] = scale == "rehearsal"
        record["experiments"] = " ".join(names) if names else "(not run)"
        records.append(record)
    return pd.DataFrame.from_records(records)


def _fmt(value: Optional[float]) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.1f}"


def _ours(rec: Mapping, metric: str) -> str:
    mean, std, n = rec[f"{metric} mean"], rec[f"{metric} std"], rec[f"{metric} n"]
    if mean is None or pd.isna(mean):
        return "k > database" if metric in str(rec.get("beyond_database", "")).split() else "—"
    text = _fmt(mean) if std is None or pd.isna(std) else f"{_fmt(mean)} ± {_fmt(std)}"
    return text if n == rec["n"] else f"{text} (n = {n})"


def _experiments(names: list) -> str:
    """``t-a-demo-s{0,1,2}`` for the seeds of one row."""
    if not names:
        return "(not run)"
    parts = [re.match(r"^(.*)-s(\d+)$", n) for n in names]
    stems = {p.group(1) for p in parts if p}
    if len(names) > 1 and all(parts) and len(stems) == 1:
        return f"`{stems.pop()}-s{{{','.join(p.group(2) for p in parts)}}}`"
    return " ".join(f"`{n}`" for n in names)


def to_markdown(table: TableDef, frame: pd.DataFrame, scale: str) -> str:
    lines = [f"# {title_of(table, scale)}", "", f"Source: {table.paper}."]
    if table.dataset:
        lines.append(f"Published numbers: {table.dataset}.")
    lines.append(f"Measured at scale **{scale}**" + SCALE_NOTES.get(scale, "."))
    seeds = int(frame["seeds"].iloc[0]) if len(frame) else 1
    lines.append(f"Ours: mean ± sample standard deviation over n seeds (of {seeds}); "
                 "the published value after the slash." if seeds > 1 else
                 "Ours: one seed; the published value after the slash.")
    if table.notes:
        lines += ["", table.notes]
    lines.append("")
    header = ["row", "n"] + [f"{m} ours / paper" for m in table.metrics] + ["experiments"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    incomplete = []
    for _, rec in frame.iterrows():
        label = f"*{rec['label']}* (floor)" if rec["kind"] == "floor" else rec["label"]
        n = f"{rec['n']}" if rec["n"] in (0, seeds) else f"{rec['n']} of {seeds}"
        if 0 < rec["n"] < seeds:
            gone = str(rec.get("missing_seeds") or "").split()
            incomplete.append(f"{rec['label']}: n = {rec['n']} of {seeds}"
                              + (f" (seed {', '.join(gone)} missing)" if gone else ""))
        cells = [label, n] + [f"{_ours(rec, m)} / {_fmt(rec[f'{m} paper'])}" for m in table.metrics]
        names = [] if rec["experiments"] == "(not run)" else rec["experiments"].split()
        cells.append(_experiments(names))
        lines.append("| " + " | ".join(cells) + " |")
    if incomplete:
        lines += ["", "Rows with a missing seed: " + "; ".join(incomplete) + "."]
    text = "\n".join(lines) + "\n"
    if scale != "rehearsal":
        text += orderings.to_markdown(table, orderings.table_orderings(table, frame))
    return text


def write_table(table: TableDef, frame: pd.DataFrame, scale: str, out_dir: Path) -> tuple[Path, Path]:
    """NAME.md and NAME.csv; NAME.orderings.csv beside them (one line per tested ordering),
    removed for a rehearsal so no older scale's verdicts sit beside its table."""
    out_dir = Path(out_dir)
    md, csv = out_dir / f"{table.name}.md", out_dir / f"{table.name}.csv"
    write_text_atomic(md, to_markdown(table, frame, scale))
    write_text_atomic(csv, frame.to_csv(index=False))
    tested = out_dir / f"{table.name}.orderings.csv"
    if scale == "rehearsal":
        tested.unlink(missing_ok=True)
    else:
        write_text_atomic(tested, orderings.to_frame(
            orderings.table_orderings(table, frame)).to_csv(index=False))
    return md, csv
