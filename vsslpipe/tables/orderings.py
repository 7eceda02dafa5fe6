"""Which of a paper's orderings a measured table reproduces.

For every metric and every pair of rows whose published values differ, the paper says one row
is better; so does each ordering the paper states without numbers (the table's ``stated``). Our rows give a mean and a sample std over seeds; Welch's t-test (unequal variances,
``scipy.stats.ttest_ind_from_stats``) on the difference decides: *reproduced* (ours in the
paper's order at the chosen level), *contradicted* (the reverse order at that level), or *within
noise*. A row against its random-init floor (the floor made ``like`` it) is an ordering too:
pre-training is meant to beat random init. With fewer than two seeds on a side there is no spread
to test against, so the pair is reported as *one seed* with only its sign.

Many pairs are tested at once, so at the 5 % level about one in twenty true ties still comes out
decided; read a lone decided pair among many within noise with that in mind.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from .definitions import TableDef

REPRODUCED, CONTRADICTED, NOISE, ONE_SEED, NOT_MEASURED = (
    "reproduced", "contradicted", "within noise", "one seed", "not measured")


@dataclass(frozen=True)
class Ordering:
    metric: str
    higher: str                  # the row the paper (or pre-training, against a floor) ranks higher
    lower: str
    paper_gap: Optional[float]   # published higher - lower; None when stated or against a floor
    diff: Optional[float]        # ours: mean(higher) - mean(lower)
    se: Optional[float]          # standard error of ``diff`` (Welch)
    p: Optional[float]           # two-sided p-value of Welch's t-test
    verdict: str
    source: str = "published"    # published (numbers) | stated (words) | floor (random init)


def _num(value) -> Optional[float]:
    return None if value is None or pd.isna(value) else float(value)


def compare(metric: str, higher: dict, lower: dict, paper_gap: Optional[float],
            alpha: float = 0.05, source: str = "published") -> Ordering:
    """``higher``/``lower``: frame records (mean, std, n per metric)."""
    from scipy.stats import ttest_ind_from_stats

    def result(diff=None, se=None, p=None, verdict=NOT_MEASURED) -> Ordering:
        return Ordering(metric, higher["row"], lower["row"], paper_gap, diff, se, p, verdict, source)

    m1, m2 = _num(higher.get(f"{metric} mean")), _num(lower.get(f"{metric} mean"))
    if m1 is None or m2 is None:
        return result()
    diff = m1 - m2
    n1, n2 = int(higher.get(f"{metric} n") or 0), int(lower.get(f"{metric} n") or 0)
    s1, s2 = _num(higher.get(f"{metric} std")), _num(lower.get(f"{metric} std"))
    if n1 < 2 or n2 < 2 or s1 is None or s2 is None:
        return result(diff, verdict=ONE_SEED)
    se = math.sqrt(s1 ** 2 / n1 + s2 ** 2 / n2)
    if se == 0.0:                # every seed gave the same value on both sides
        p = 1.0 if diff == 0 else 0.0
    else:
        p = float(ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False).pvalue)
    return result(diff, se, p, NOISE if p >= alpha else (REPRODUCED if diff > 0 else CONTRADICTED))


def table_orderings(table: TableDef, frame: pd.DataFrame, alpha: float = 0.05) -> list[Ordering]:
    """The paper's pairwise orderings (rows with different published values, per metric), those
    it states in words (every metric), then each floor's row against the floor, each tested on
    our seeds."""
    records = {rec["row"]: rec.to_dict() for _, rec in frame.iterrows()}
    rows = [r for r in table.rows if r.name in records]
    found = []
    for metric in table.metrics:
        for i, a in enumerate(rows):
            for b in rows[i + 1:]:
                pa, pb = a.published.get(metric), b.published.get(metric)
                if pa is None or pb is None or float(pa) == float(pb):
                    continue
                hi, lo = (a, b) if float(pa) > float(pb) else (b, a)
                found.append(compare(metric, records[hi.name], records[lo.name],
                                     float(hi.published[metric]) - float(lo.published[metric]), alpha))
    for text in table.stated:
        hi, lo = (part.strip() for part in str(text).split(">"))
        if hi in records and lo in records:
            for metric in table.metrics:
                found.append(compare(metric, records[hi], records[lo], None, alpha, "stated"))
    for floor in table.floors:
        if floor.like in records and floor.name in records:
            for metric in table.metrics:
                found.append(compare(metric, records[floor.like], records[floor.name], None, alpha,
                                     "floor"))
    return found


def summary_line(orderings: list[Ordering]) -> str:
    """``3 reproduced, 1 contradicted, 5 within noise`` (counts of the verdicts present)."""
    order = [REPRODUCED, CONTRADICTED, NOISE, ONE_SEED, NOT_MEASURED]
    counts = {v: sum(o.verdict == v for o in orderings) for v in order}
    return ", ".join(f"{counts[v]} {v}" for v in order if counts[v]) or "none"


def to_markdown(table: TableDef, orderings: list[Ordering], alpha: float = 0.05) -> str:
    if not orderings:
        return ""
    labels = {r.name: r.label or r.name for r in table.rows + table.floors}
    paper = [o for o in orderings if o.source == "published"]
    stated = [o for o in orderings if o.source == "stated"]
    floors = [o for o in orderings if o.source == "floor"]
    lines = ["", f"## The paper's orderings in our numbers (Welch's t-test over seeds, "
             f"{100 * (1 - alpha):.0f} %)", ""]
    if paper:
        lines.append(f"Paper orderings: {summary_line(paper)}.")
    if stated:
        lines.append(f"Orderings the paper states without numbers: {summary_line(stated)}.")
    if floors:
        lines.append(f"Pre-trained above its random-init floor: {summary_line(floors)}.")
    lines += ["", "| metric | higher | lower | paper gap | ours: gap ± se | p | verdict |",
              "|---|---|---|---|---|---|---|"]
    for o in orderings:
        gap = f"({o.source})" if o.paper_gap is None else f"{o.paper_gap:+.1f}"
        ours = "—" if o.diff is None else (f"{o.diff:+.1f}" if o.se is None else f"{o.diff:+.1f} ± {o.se:.1f}")
        p = "—" if o.p is None else (f"{o.p:.3f}" if o.p >= 0.001 else "< 0.001")
        lines.append(f"| {o.metric} | {labels.get(o.higher, o.higher)} | {labels.get(o.lower, o.lower)} "
                     f"| {gap} | {ours} | {p} | {o.verdict} |")
    return "\n".join(lines) + "\n"


def to_frame(orderings: list[Ordering]) -> pd.DataFrame:
    return pd.DataFrame([o.__dict__ for o in orderings],
                        columns=["metric", "higher", "lower", "source", "paper_gap", "diff", "se", "p",
                                 "verdict"])
