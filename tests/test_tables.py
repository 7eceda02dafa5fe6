"""Table definitions validate with clear errors; rows render measured beside published."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vsslpipe.errors import ConfigError
from vsslpipe.tables.definitions import get_table, load_tables, row_overrides
from vsslpipe.tables.render import table_frame, to_markdown
from vsslpipe.tables.runner import experiment_name, override_args, row_command, row_metrics

ROOT = Path(__file__).resolve().parents[1]


def _params_with(tmp_path, table: dict) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["tables"]["definitions"] = {"t": table}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _table(**row):
    base_row = {"name": "a", "label": "A", "encoder": "cvrl_rgb",
                "set": {"pretrain.experiments.cvrl_rgb.method_args.cvrl.gap": "uniform"},
                "published": {"R@1": 40.0}}
    return {"title": "T", "paper": "P", "metrics": ["R@1", "linear_top1"],
            "rows": [{**base_row, **row}]}


def test_project_tables_validate():
    tables, scales = load_tables(ROOT / "params.yaml", validate=True)
    assert {"cvrl_sampling", "cvrl_consistency"} <= set(tables)
    assert set(scales) == {"demo", "paper"}


@pytest.mark.parametrize("row, message", [
    ({"set": {"pretrain.experiments.cvrl_rgb.method_args.cvrl.gapp": "uniform"}}, "gapp"),
    ({"set": {"pretrain.experiments.cvrl_rgb.epoch": 3}}, "unknown parameter(s) epoch"),
    ({"set": {"pretrain.experiments.cvrl_rgb.method_args.cvrl.gap": "cubic"}}, "gap must be one of"),
    ({"set": {"retrieve.kz": [1]}}, "unknown parameter 'retrieve.kz'"),
    ({"encoder": "nope"}, "encoder 'nope' is not in evaluate.encoders"),
    ({"published": {"R@2": 1.0}}, "'R@2' is not one of the table's metrics"),
])
def test_bad_rows_give_clear_errors(tmp_path, row, message):
    with pytest.raises(ConfigError) as err:
        load_tables(_params_with(tmp_path, _table(**row)))
    assert message in str(err.value) and "t" in str(err.value)


def test_unknown_table_and_metric(tmp_path):
    tables, _ = load_tables(_params_with(tmp_path, _table()))
    with pytest.raises(ConfigError, match="unknown table 'x'; valid: t"):
        get_table(tables, "x")
    bad = _table()
    bad["metrics"] = ["R@1", "top1"]
    with pytest.raises(ConfigError, match="unknown metric 'top1'"):
        load_tables(_params_with(tmp_path, bad))


def test_row_command_and_overrides(tmp_path):
    tables, scales = load_tables(_params_with(tmp_path, _table()))
    table = tables["t"]
    row = table.rows[0]
    paper = row_overrides(scales, "paper", table, row)
    assert paper["extract.short_side"] == 128
    assert paper["pretrain.experiments.cvrl_rgb.method_args.cvrl.gap"] == "uniform"
    cmd = row_command(table, row, "demo", row_overrides(scales, "demo", table, row))
    assert cmd[:6] == ["dvc", "exp", "run", "--temp", "retrieve@cvrl_rgb", "linear@cvrl_rgb"]
    assert cmd[-2:] == ["--name", experiment_name(table, row, "demo")] == ["--name", "t-a-demo"]
    assert override_args({"a.b": False, "c": "x y", "d": [1, 2]}) == [
        "-S", "++a.b=false", "-S", '++c="x y"', "-S", "++d=[1, 2]"]


def test_render_measured_beside_published(tmp_path):
    tables, _ = load_tables(_params_with(tmp_path, _table()))
    table = tables["t"]
    experiment = {"metrics": {
        "results/eval/cvrl_rgb/retrieval.json": {"R@1": 52.5, "R@5": 80.0, "queries": 60},
        "results/eval/cvrl_rgb/linear.json": {"top1": 71.25, "top5": 99.0}}}
    measured = {"a": row_metrics(experiment, "cvrl_rgb")}
    assert measured["a"] == {"R@1": 52.5, "R@5": 80.0, "linear_top1": 71.25, "linear_top5": 99.0}
    frame = table_frame(table, "demo", measured, {"a": "t-a-demo"})
    assert list(frame.columns[:5]) == ["row", "label", "encoder", "R@1 (ours)", "R@1 (paper)"]
    md = to_markdown(table, frame, "demo")
    assert "| A | 52.5 / 40.0 | 71.2 / — | `t-a-demo` |" in md
    unrun = to_markdown(table, table_frame(table, "demo", {}, {}), "demo")
    assert "— / 40.0" in unrun and "(not run)" in unrun
