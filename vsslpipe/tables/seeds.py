"""Seeds: one DVC experiment per (row, seed), and the mean, spread and count over seeds.

A pretrained row's seed is ``pretrain.defaults.seed`` (every pretrain stage of the row:
co-training and its initialisations included; an experiment that sets its own ``seed`` gets it
too, and CACL's frame CNN ``pretrain_frames.seed``). A random-init encoder (a floor, or a row
whose encoder has ``init: random``) varies ``export.seed``. A seed equal to the value the
parameters already hold adds no override, so seed 0 is today's single run (same run-cache).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from .definitions import (RowDef, TableDef, apply_overrides, encoder_entry, floor_overrides,
                          merge_layers)
from .overrides import get_dotted


@dataclass(frozen=True)
class Job:
    """One row (or floor) at one seed: a DVC experiment."""

    table: TableDef
    row: RowDef
    scale: str
    seed: int
    overrides: dict = field(default_factory=dict)   # scale, table, row and seed, in order

    @property
    def name(self) -> str:
        return experiment_name(self.table, self.row, self.scale, self.seed)

    @property
    def legacy_name(self) -> Optional[str]:
        """The name a single-seed run had before seeds (seed 0 only)."""
        if self.seed != 0:
            return None
        return f"{self.table.name}-{self.row.name}-{self.scale}".replace("_", "-")


def experiment_name(table: TableDef, row: RowDef, scale: str, seed: int = 0) -> str:
    return f"{table.name}-{row.name}-{scale}-s{seed}".replace("_", "-")


def _uses_frame_cnn(params: Mapping, checkpoint: str) -> bool:
    """Whether the pretrain experiment that writes ``checkpoint`` is a CACL run (whose frozen
    frame CNN comes from ``pretrain_frames``)."""
    from ..errors import ConfigError
    from ..train.config import load_experiment

    name = Path(checkpoint).parent.name
    try:
        return load_experiment(params, name, check_method=False).method == "cacl"
    except ConfigError:
        return False


def seed_overrides(params: Mapping, encoder: str, seed: int) -> dict:
    """The overrides that give ``encoder``'s row seed ``seed`` (``params``: with the row's
    other overrides applied)."""
    entry = encoder_entry(params, encoder)
    if entry.get("init") == "random":
        keys = {"export.seed": get_dotted(params, "export.seed", 0)}
    else:
        keys = {"pretrain.defaults.seed": get_dotted(params, "pretrain.defaults.seed", 0)}
        for name, exp in (get_dotted(params, "pretrain.experiments", {}) or {}).items():
            if isinstance(exp, Mapping) and "seed" in exp:
                keys[f"pretrain.experiments.{name}.seed"] = exp["seed"]
        if "pretrain_frames" in params and _uses_frame_cnn(params, str(entry.get("checkpoint", ""))):
            keys["pretrain_frames.seed"] = get_dotted(params, "pretrain_frames.seed", 0)
    return {key: seed for key, current in keys.items() if current != seed}


def make_jobs(table: TableDef, scale: str, seeds: int, params: Mapping, overrides_for,
              rows: Optional[set] = None, floors: bool = True) -> list[Job]:
    """Every (row, seed) job of the table, rows first, then the floors; ``overrides_for(row)``
    gives the row's overrides at ``scale``."""
    jobs = []
    chosen = [r for r in table.rows if rows is None or r.name in rows]
    if floors:
        chosen += [f for f in table.floors if rows is None or f.name in rows]
    for row in chosen:
        where = f"table {table.name!r} row {row.name!r}"
        base = overrides_for(row)
        base = merge_layers(base, floor_overrides(apply_overrides(params, base, where), table, row))
        resolved = apply_overrides(params, base, where)
        for seed in range(seeds):
            extra = seed_overrides(resolved, row.encoder, seed)
            jobs.append(Job(table, row, scale, seed, merge_layers(base, extra)))
    return jobs


@dataclass(frozen=True)
class Stat:
    """One metric of one row over its seeds."""

    mean: Optional[float]
    std: Optional[float]        # sample standard deviation (n - 1); None when n < 2
    n: int                      # seeds with a value
    of: int                     # seeds asked for
    missing: tuple = ()         # the seeds without a value


def aggregate(values: Mapping[int, Optional[float]], seeds: int) -> Stat:
    """Mean and sample std of the values of seeds 0..seeds-1 (a missing seed is reported, never
    counted as zero)."""
    have = {s: float(v) for s, v in values.items() if v is not None and s < seeds}
    missing = tuple(s for s in range(seeds) if s not in have)
    n = len(have)
    if n == 0:
        return Stat(None, None, 0, seeds, missing)
    mean = math.fsum(have.values()) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in have.values()) / (n - 1)) if n > 1 else None
    return Stat(mean, std, n, seeds, missing)


def aggregate_rows(per_seed: Mapping[str, Mapping[int, Mapping[str, float]]], metrics: list,
                   seeds: int) -> dict[str, dict[str, Stat]]:
    """row -> metric -> Stat, from row -> seed -> {metric: value}."""
    return {row: {m: aggregate({s: vals.get(m) for s, vals in by_seed.items()}, seeds)
                  for m in metrics}
            for row, by_seed in per_seed.items()}
