"""Table definitions (``params.yaml`` ``tables`` section) and their validation.

Schema::

    tables:
      scales:                      # overrides applied to every row at that scale
        demo: {}                   # the built-in dataset, CPU, minutes per row
        paper: {extract.videos: /data/UCF-101, pretrain.defaults.backbone: s3d, ...}
      definitions:
        <table name>:
          title: "..."
          paper: "CVTCL (Wang et al., 2024), Table 1"
          dataset: UCF101 split 1
          metrics: [linear_top1, R@1, R@5]
          scale_set: {paper: {pretrain.defaults.backbone: s3d, ...}}   # this table's paper setup
          rows:
            - name: rgb_infonce                    # short id (experiment name <table>-<row>)
              label: "RGB, InfoNCE only"            # as the paper's table writes it
              encoder: cvtcl_init_rgb               # an entry of evaluate.encoders
              set: {pretrain.experiments.cvtcl_init_rgb.method_args.cvtcl.local: false}
              published: {linear_top1: 43.1, R@1: 30.2, R@5: 46.6}

A row's ``set`` maps dotted ``params.yaml`` keys to values. Keys under ``pretrain`` are validated
by resolving every pretrain experiment (and its method's hyper-parameters) with the overrides
applied; any other key must already exist in params.yaml (every stage section lists all its keys).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ..config import from_dict, read_params
from ..errors import ConfigError

METRICS = ("R@1", "R@5", "R@10", "R@20", "R@50", "linear_top1", "linear_top5")
SCALES = ("demo", "paper")


@dataclass(frozen=True)
class RowDef:
    name: str
    encoder: str
    label: str = ""
    set: dict = field(default_factory=dict)
    published: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TableDef:
    name: str
    title: str
    paper: str
    metrics: list
    rows: list
    dataset: str = ""
    notes: str = ""
    scale_set: dict = field(default_factory=dict)   # {scale: {key: value}} for this table only


def _check_key(key: str, where: str) -> None:
    bad = set(key) & set(".@=,+~ ") - {"."}
    if not key or bad or key.startswith(".") or key.endswith(".") or ".." in key:
        raise ConfigError(f"{where}: bad parameter key {key!r}")


def parse_tables(params: Mapping) -> tuple[dict[str, TableDef], dict[str, dict]]:
    """Every table definition and the scale overrides, structurally validated."""
    section = params.get("tables")
    if not isinstance(section, Mapping):
        raise ConfigError("params.yaml has no 'tables' section")
    unknown = sorted(set(section) - {"scales", "definitions"})
    if unknown:
        raise ConfigError(f"tables: unknown key(s) {', '.join(unknown)}; valid: scales, definitions")
    scales = {name: dict(section.get("scales", {}).get(name) or {}) for name in SCALES}
    extra = sorted(set(section.get("scales") or {}) - set(SCALES))
    if extra:
        raise ConfigError(f"tables.scales: unknown scale(s) {', '.join(extra)}; valid: demo, paper")
    tables = {}
    for name, raw in (section.get("definitions") or {}).items():
        where = f"tables.definitions.{name}"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: must be a mapping")
        raw = dict(raw)
        rows = raw.pop("rows", None)
        if not rows or not isinstance(rows, list):
            raise ConfigError(f"{where}: needs a non-empty list 'rows'")
        table = from_dict(TableDef, {**raw, "name": name, "rows": []}, where)
        for metric in table.metrics:
            if metric not in METRICS:
                raise ConfigError(f"{where}.metrics: unknown metric {metric!r}; valid: {', '.join(METRICS)}")
        parsed = []
        for i, row in enumerate(rows):
            row_where = f"{where}.rows[{i}]"
            parsed.append(from_dict(RowDef, row if isinstance(row, Mapping) else {}, row_where))
            for key in parsed[-1].set:
                _check_key(key, row_where)
            for metric in parsed[-1].published:
                if metric not in table.metrics:
                    raise ConfigError(f"{row_where}.published: {metric!r} is not one of the "
                                      f"table's metrics ({', '.join(table.metrics)})")
        names = [r.name for r in parsed]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: row names must be unique")
        tables[name] = TableDef(**{**table.__dict__, "rows": parsed})
        for scale, overrides in table.scale_set.items():
            if scale not in SCALES or not isinstance(overrides, Mapping):
                raise ConfigError(f"{where}.scale_set: {scale!r} must be one of {', '.join(SCALES)} "
                                  "mapping keys to values")
            for key in overrides:
                _check_key(key, f"{where}.scale_set.{scale}")
    for scale, overrides in scales.items():
        for key in overrides:
            _check_key(key, f"tables.scales.{scale}")
    return tables, scales


def set_dotted(params: dict, key: str, value: Any, must_exist: bool, where: str) -> None:
    node = params
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: {'.'.join(parts[:i])} is not a mapping (key {key!r})")
        if part not in node:
            if must_exist:
                raise ConfigError(f"{where}: unknown parameter {key!r} (no {'.'.join(parts[:i + 1])!r} "
                                  "in params.yaml)")
            node[part] = {}
        node = node[part]
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: {'.'.join(parts[:-1])} is not a mapping (key {key!r})")
    if must_exist and parts[-1] not in node:
        raise ConfigError(f"{where}: unknown parameter {key!r}")
    # A copy: a later key may write into this value (``a: {}`` then ``a.b: 1``), and the
    # definition it came from must stay as written.
    node[parts[-1]] = copy.deepcopy(value)


def row_overrides(scales: Mapping[str, dict], scale: str, table: TableDef, row: RowDef) -> dict:
    """The row's overrides at ``scale``: the scale's, the table's at that scale, the row's own."""
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    return {**scales.get(scale, {}), **(table.scale_set.get(scale) or {}), **row.set}


def flatten_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A non-empty mapping value becomes one key per leaf, so it merges into what params.yaml
    holds (as DVC's ``-S`` does); an empty mapping stays, and replaces."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten_overrides({f"{key}.{k}": v for k, v in value.items()}))
        else:
            flat[key] = value
    return flat


def apply_overrides(params: Mapping, overrides: Mapping[str, Any], where: str) -> dict:
    """params with ``overrides`` applied as ``dvc exp run -S`` applies them (mappings merge key
    by key, an empty mapping replaces); keys outside ``pretrain`` must exist already."""
    out = copy.deepcopy(dict(params))
    for key, value in flatten_overrides(overrides).items():
        set_dotted(out, key, value, must_exist=not key.startswith("pretrain."), where=where)
    return out


def validate_row(params: Mapping, table: TableDef, row: RowDef, overrides: Mapping[str, Any]) -> None:
    """Resolve the pretrain experiments the overrides touch, and their methods' hyper-parameters."""
    from ..methods import METHODS
    from ..train.config import experiment_names, load_experiment

    where = f"table {table.name!r} row {row.name!r}"
    encoders = (params.get("evaluate") or {}).get("encoders") or {}
    if row.encoder not in encoders:
        raise ConfigError(f"{where}: encoder {row.encoder!r} is not in evaluate.encoders "
                          f"(valid: {', '.join(encoders)})")
    resolved = apply_overrides(params, overrides, where)
    names = experiment_names(resolved)
    if not any(k.startswith("pretrain.defaults.") for k in overrides):
        touched = {k.split(".")[2] for k in overrides if k.startswith("pretrain.experiments.")}
        names = [n for n in names if n in touched]
        unknown = touched - set(names)
        if unknown:
            raise ConfigError(f"{where}: unknown pretrain experiment(s) {', '.join(sorted(unknown))}")
    for name in names:
        try:
            cfg = load_experiment(resolved, name)
            config_cls = getattr(METHODS.get(cfg.method), "Config", None)
            if config_cls is not None:
                from_dict(config_cls, cfg.method_args_for(), f"method_args.{cfg.method}")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def load_tables(params_path: str | Path, validate: bool = True) -> tuple[dict[str, TableDef], dict]:
    params = read_params(params_path)
    tables, scales = parse_tables(params)
    if validate:
        for table in tables.values():
            for row in table.rows:
                for scale in SCALES:
                    validate_row(params, table, row, row_overrides(scales, scale, table, row))
    return tables, scales


def get_table(tables: Mapping[str, TableDef], name: str) -> TableDef:
    if name not in tables:
        raise ConfigError(f"unknown table {name!r}; valid: {', '.join(sorted(tables)) or '(none)'}")
    return tables[name]


def published_value(row: RowDef, metric: str) -> Optional[float]:
    value = row.published.get(metric)
    return None if value is None else float(value)
