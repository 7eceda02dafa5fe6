"""Table definitions (the package's ``vsslpipe/tables/tables.yaml``, or ``--tables FILE``) and
their validation.

Schema (top level ``scales`` and ``definitions``)::

    scales:                        # overrides applied to every row at that scale
      demo: {}                     # the built-in dataset, CPU, minutes per row
      paper: {extract.videos: /data/UCF-101, pretrain.defaults.backbone: s3d, ...}
      rehearsal: {...}             # on top of paper: a tiny generated set, one or two steps
    definitions:
      <table name>:
        title: "..."
        paper: "CVTCL (Wang et al., 2024), Table 1"
        dataset: UCF101 split 1
        metrics: [linear_top1, R@1, R@5]
        seeds: {demo: 3}           # default of `--seeds` (a number, or per scale; else 1)
        floors:                    # random-init encoders shown below the rows
          - {encoder: random_tiny3d_rgb, row: rgb_all}   # that row's settings and network
        scale_set: {paper: {pretrain.defaults.backbone: s3d, ...}}   # this table's setup
        stated: ["rgb_all > rgb_infonce"]   # orderings the paper states without numbers
        rows:
          - name: rgb_infonce                    # short id (experiment <table>-<row>-<scale>-s<k>)
            label: "RGB, InfoNCE only"            # as the paper's table writes it
            encoder: cvtcl_init_rgb               # an entry of evaluate.rgb / evaluate.flow
            set: {pretrain.experiments.cvtcl_init_rgb.method_args.cvtcl.local: false}
            published: {linear_top1: 43.1, R@1: 30.2, R@5: 46.6}

A row's ``set`` maps dotted params keys to values. Keys under ``pretrain`` (and
``pretrain_frames``, which takes any pretrain key) are validated by resolving every pretrain
experiment with the overrides applied; any other key must exist in the parameters already.
Layers, later on top: ``demo``: scale, table's ``scale_set.demo``, row. ``paper``: the same with
``paper``. ``rehearsal``: everything ``paper`` sets, then the ``rehearsal`` scale and the
table's ``scale_set.rehearsal``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from ..config import from_dict, read_params
from ..errors import ConfigError
from .overrides import apply_overrides, merge_layers

METRICS = ("R@1", "R@5", "R@10", "R@20", "R@50", "linear_top1", "linear_top5")
SCALES = ("demo", "rehearsal", "paper")
TABLES_FILE = Path(__file__).with_name("tables.yaml")
# Layers of each scale, lowest first: (scale whose overrides apply, include the row's set here)
LAYERS = {"demo": ("demo",), "paper": ("paper",), "rehearsal": ("paper", "rehearsal")}


@dataclass(frozen=True)
class RowDef:
    name: str
    encoder: str
    label: str = ""
    set: dict = field(default_factory=dict)
    published: dict = field(default_factory=dict)
    floor: bool = False           # a random-init floor (from the table's ``floors``), not a row
    like: str = ""                # a floor: the row whose settings and network it takes


@dataclass(frozen=True)
class TableDef:
    name: str
    title: str
    paper: str
    metrics: list
    rows: list
    dataset: str = ""
    notes: str = ""
    seeds: Any = 1                                  # seeds per row: a number or {scale: number}
    floors: list = field(default_factory=list)      # RowDef(floor=True) per random-init encoder
    scale_set: dict = field(default_factory=dict)   # {scale: {key: value}} for this table only
    # orderings the paper states without numbers, "row_a > row_b" (tested on every metric)
    stated: list = field(default_factory=list)
    source: str = ""                                # the definitions file (for messages)

    def seeds_for(self, scale: str) -> int:
        return int(self.seeds.get(scale, 1) if isinstance(self.seeds, Mapping) else self.seeds)


def _check_key(key: str, where: str) -> None:
    bad = set(key) & set(".@=,+~ ") - {"."}
    if not key or bad or key.startswith(".") or key.endswith(".") or ".." in key:
        raise ConfigError(f"{where}: bad parameter key {key!r}")


def read_tables_file(path: Optional[str | Path] = None) -> tuple[dict, str]:
    """The definitions file's contents and its label (``--tables FILE`` or the shipped file)."""
    file = Path(path) if path is not None else TABLES_FILE
    label = str(file) if path is not None else "vsslpipe/tables/tables.yaml"
    if not file.is_file():
        raise ConfigError(f"--tables: {file}: table definitions file not found")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: not valid YAML ({exc.__class__.__name__})") from None
    if isinstance(data, Mapping) and set(data) == {"tables"}:   # an old params.yaml-style section
        data = data["tables"]
    if not isinstance(data, Mapping):
        raise ConfigError(f"{label}: top level must map 'scales' and 'definitions'")
    return dict(data), label


def _parse_floor(raw: Any, where: str) -> RowDef:
    if isinstance(raw, str):
        raw = {"encoder": raw}
    if not isinstance(raw, Mapping) or set(raw) - {"encoder", "label", "row"} or "encoder" not in raw:
        raise ConfigError(f"{where}: a floor is an encoder name or {{encoder: NAME, row: ROW, "
                          "label: TEXT}}")
    encoder, like = str(raw["encoder"]), str(raw.get("row") or "")
    return RowDef(name=f"floor_{like or encoder}", encoder=encoder, floor=True, like=like,
                  label=str(raw.get("label") or "random init"))


def parse_tables(section: Mapping, label: str = "tables") -> tuple[dict[str, TableDef], dict[str, dict]]:
    """Every table definition and the scale overrides, structurally validated."""
    unknown = sorted(set(section) - {"scales", "definitions"})
    if unknown:
        raise ConfigError(f"{label}: unknown key(s) {', '.join(unknown)}; valid: scales, definitions")
    raw_scales = section.get("scales") or {}
    extra = sorted(set(raw_scales) - set(SCALES))
    if extra:
        raise ConfigError(f"{label}: scales: unknown scale(s) {', '.join(extra)}; "
                          f"valid: {', '.join(SCALES)}")
    scales = {name: dict(raw_scales[name] or {}) for name in SCALES if name in raw_scales}
    tables = {}
    for name, raw in (section.get("definitions") or {}).items():
        where = f"{label}: definitions.{name}"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: must be a mapping")
        raw = dict(raw)
        rows, floors = raw.pop("rows", None), raw.pop("floors", None) or []
        if not rows or not isinstance(rows, list):
            raise ConfigError(f"{where}: needs a non-empty list 'rows'")
        if not isinstance(floors, list):
            raise ConfigError(f"{where}.floors: must be a list of random-init encoder names")
        table = from_dict(TableDef, {**raw, "name": name, "rows": [], "source": label}, where)
        counts = table.seeds.values() if isinstance(table.seeds, Mapping) else [table.seeds]
        if (isinstance(table.seeds, Mapping) and set(table.seeds) - set(SCALES)) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in counts):
            raise ConfigError(f"{where}.seeds: a number >= 1 or {{scale: number}} "
                              f"(scales: {', '.join(SCALES)}), got {table.seeds!r}")
        for metric in table.metrics:
            if metric not in METRICS:
                raise ConfigError(f"{where}.metrics: unknown metric {metric!r}; valid: {', '.join(METRICS)}")
        parsed = []
        for i, row in enumerate(rows):
            row_where = f"{where}.rows[{i}]"
            if isinstance(row, Mapping) and "floor" in row:
                raise ConfigError(f"{row_where}: unknown parameter floor (floors go in 'floors')")
            parsed.append(from_dict(RowDef, row if isinstance(row, Mapping) else {}, row_where))
            for key in parsed[-1].set:
                _check_key(key, row_where)
            for metric in parsed[-1].published:
                if metric not in table.metrics:
                    raise ConfigError(f"{row_where}.published: {metric!r} is not one of the "
                                      f"table's metrics ({', '.join(table.metrics)})")
        floor_rows = [_parse_floor(f, f"{where}.floors[{i}]") for i, f in enumerate(floors)]
        for i, floor in enumerate(floor_rows):
            like = next((r for r in parsed if r.name == floor.like), None) if floor.like else None
            if floor.like and like is None:
                raise ConfigError(f"{where}.floors[{i}].row: no row {floor.like!r} in this table")
            if like is not None and floor.label == "random init":
                floor_rows[i] = RowDef(**{**floor.__dict__, "label": f"random init ({like.label or like.name})"})
        names = [r.name for r in parsed + floor_rows]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: row and floor names must be unique")
        row_names = {r.name for r in parsed}
        for i, text in enumerate(table.stated):
            pair = [part.strip() for part in str(text).split(">")]
            if len(pair) != 2 or not set(pair) <= row_names or pair[0] == pair[1]:
                raise ConfigError(f"{where}.stated[{i}]: {text!r}: expected 'ROW > ROW' with two "
                                  f"of this table's rows ({', '.join(sorted(row_names))})")
        tables[name] = TableDef(**{**table.__dict__, "rows": parsed, "floors": floor_rows})
        for scale, overrides in table.scale_set.items():
            if scale not in SCALES or not isinstance(overrides, Mapping):
                raise ConfigError(f"{where}.scale_set: {scale!r} must be one of {', '.join(SCALES)} "
                                  "mapping keys to values")
            for key in overrides:
                _check_key(key, f"{where}.scale_set.{scale}")
    for scale, overrides in scales.items():
        for key in overrides:
            _check_key(key, f"{label}: scales.{scale}")
    return tables, scales


def row_overrides(scales: Mapping[str, dict], scale: str, table: TableDef, row: RowDef) -> dict:
    """The row's overrides at ``scale`` (see the module docstring for the layers)."""
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    if scale not in scales and scale != "demo":
        raise ConfigError(f"{table.source or 'tables'}: scales.{scale} is not defined (the "
                          f"{scale} scale needs its overrides there)")
    first, *rest = LAYERS[scale]
    own = (like_row(table, row) or row).set      # a floor of a row: that row's settings
    layers = [scales.get(first, {}), table.scale_set.get(first) or {}, own]
    for name in rest:
        layers += [scales.get(name, {}), table.scale_set.get(name) or {}]
    return merge_layers(*layers)


def encoder_modalities(params: Mapping) -> dict[str, str]:
    """Every evaluated encoder's name -> the modality it takes (params ``evaluate``)."""
    evaluate = params.get("evaluate") or {}
    return {name: m for m in ("rgb", "flow") for name in (evaluate.get(m) or {})}


def like_row(table: TableDef, row: RowDef) -> Optional[RowDef]:
    """The row whose settings and network a floor takes (None: the floor's own)."""
    return next((r for r in table.rows if r.name == row.like), None) if row.floor and row.like else None


def floor_overrides(params: Mapping, table: TableDef, row: RowDef) -> dict:
    """A floor of a row evaluates that row's encoder checkpoint (its network at this scale,
    trained with the row's settings, so it is the row's own pretraining) with random weights."""
    like = like_row(table, row)
    if like is None:
        return {}
    modality = encoder_modalities(params).get(row.encoder)
    checkpoint = encoder_entry(params, like.encoder).get("checkpoint")
    return {f"evaluate.{modality}.{row.encoder}.checkpoint": checkpoint} if checkpoint else {}


def encoder_entry(params: Mapping, encoder: str) -> dict:
    """The encoder's ``evaluate.<modality>`` entry ({checkpoint, init})."""
    modality = encoder_modalities(params).get(encoder)
    return dict(((params.get("evaluate") or {}).get(modality) or {}).get(encoder) or {}) if modality else {}


def validate_row(params: Mapping, table: TableDef, row: RowDef, overrides: Mapping[str, Any],
                 seen: Optional[set] = None) -> None:
    """Resolve the pretrain experiments the overrides touch, and their methods' hyper-parameters
    (``seen``: experiments already resolved with the same settings, skipped)."""
    import json

    from ..config import load_params
    from ..methods import METHODS
    from ..train.config import experiment_names, load_experiment

    where = f"table {table.name!r} {'floor' if row.floor else 'row'} {row.name!r}"
    encoders = encoder_modalities(params)
    if row.encoder not in encoders:
        raise ConfigError(f"{where}: encoder {row.encoder!r} is not in evaluate.rgb or "
                          f"evaluate.flow (valid: {', '.join(encoders)})")
    if row.floor and encoder_entry(params, row.encoder).get("init") != "random":
        raise ConfigError(f"{where}: a floor's encoder must have init: random in evaluate")
    like = like_row(table, row)
    if like is not None and encoders.get(like.encoder) != encoders[row.encoder]:
        raise ConfigError(f"{where}: row {like.name!r}'s encoder {like.encoder!r} takes "
                          f"{encoders.get(like.encoder)}, the floor's {encoders[row.encoder]}")
    resolved = load_params(apply_overrides(params, overrides, where))   # read once, not per experiment
    names = experiment_names(resolved)
    if not any(k.startswith("pretrain.defaults.") for k in overrides):
        touched = {k.split(".")[2] for k in overrides if k.startswith("pretrain.experiments.")}
        names = [n for n in names if n in touched]
        unknown = touched - set(names)
        if unknown:
            raise ConfigError(f"{where}: unknown pretrain experiment(s) {', '.join(sorted(unknown))}")
    pretrain = resolved.data.get("pretrain") or {}
    for name in names:
        key = json.dumps([name, pretrain.get("defaults"), (pretrain.get("experiments") or {}).get(name)],
                         sort_keys=True, default=str)
        if seen is not None and key in seen:
            continue
        try:
            cfg = load_experiment(resolved, name)
            config_cls = getattr(METHODS.get(cfg.method), "Config", None)
            if config_cls is not None:
                from_dict(config_cls, cfg.method_args_for(), f"method_args.{cfg.method}")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if seen is not None:
            seen.add(key)


def load_tables(params_path: Any = None, validate: bool = True,
                tables_path: Optional[str | Path] = None,
                only: Optional[str] = None) -> tuple[dict[str, TableDef], dict]:
    """The tables of ``tables_path`` (default: the shipped file), validated against the layered
    parameters of ``params_path`` at every scale the file defines (``only``: that table's rows)."""
    section, label = read_tables_file(tables_path)
    tables, scales = parse_tables(section, label)
    if validate:
        params, seen = read_params(params_path), set()
        for table in tables.values():
            if only is not None and table.name != only:
                continue
            for row in table.rows + table.floors:
                for scale in SCALES:
                    if scale == "demo" or scale in scales:
                        over = row_overrides(scales, scale, table, row)
                        validate_row(params, table, row, merge_layers(over, floor_overrides(
                            apply_overrides(params, over, table.name), table, row)), seen)
    return tables, scales


def get_table(tables: Mapping[str, TableDef], name: str) -> TableDef:
    if name not in tables:
        raise ConfigError(f"unknown table {name!r}; valid: {', '.join(sorted(tables)) or '(none)'}")
    return tables[name]


def published_value(row: RowDef, metric: str) -> Optional[float]:
    value = row.published.get(metric)
    return None if value is None else float(value)
