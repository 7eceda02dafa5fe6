"""Seeds: which parameter a row's seed sets, one experiment per seed, mean / sample std / n over
hand-made results (a missing seed reported), and the per-table chart."""
from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest

from vsslpipe.config import read_params
from vsslpipe.tables.definitions import RowDef, TableDef, load_tables, row_overrides
from vsslpipe.tables.render import table_frame, to_markdown
from vsslpipe.tables.seeds import aggregate, aggregate_rows, make_jobs, seed_overrides

ROOT = Path(__file__).resolve().parents[1]
PARAMS = read_params(ROOT / "params.yaml")


def test_seed_keys_per_kind_of_encoder():
    params = {**PARAMS, "pretrain": {**PARAMS["pretrain"], "experiments": {
        **PARAMS["pretrain"]["experiments"],
        "cvrl_rgb": {**PARAMS["pretrain"]["experiments"]["cvrl_rgb"], "seed": 7}}}}
    # pretrained: every pretrain stage (defaults), an experiment with its own seed too
    assert seed_overrides(params, "cvtcl_cotrain_rgb", 2) == {
        "pretrain.defaults.seed": 2, "pretrain.experiments.cvrl_rgb.seed": 2}
    assert seed_overrides(params, "cvtcl_cotrain_rgb", 7) == {"pretrain.defaults.seed": 7}
    # CACL: its frozen frame CNN (pretrain_frames) is part of the row
    assert seed_overrides(PARAMS, "cacl_rgb", 1) == {"pretrain.defaults.seed": 1,
                                                     "pretrain_frames.seed": 1}
    # random init: the export seed; seed 0 is the value already there: no override at all
    assert seed_overrides(PARAMS, "random_tiny3d_flow", 3) == {"export.seed": 3}
    assert seed_overrides(PARAMS, "random_tiny3d_flow", 0) == {}
    assert seed_overrides(PARAMS, "cvrl_rgb", 0) == {}


def test_jobs_per_row_and_seed_with_floors_last():
    tables, scales = load_tables(ROOT / "params.yaml", validate=False)
    table = tables["cvtcl_table3"]
    jobs = make_jobs(table, "demo", 3, PARAMS, lambda r: row_overrides(scales, "demo", table, r))
    assert len(jobs) == 3 * (len(table.rows) + len(table.floors))
    assert [j.name for j in jobs[:3]] == [f"cvtcl-table3-k0-demo-s{k}" for k in range(3)]
    floor = [j for j in jobs if j.row.floor]
    assert floor and all(j is jobs[-len(floor) + i] for i, j in enumerate(floor))
    k5 = next(j for j in jobs if j.row.name == "k5" and j.seed == 2)
    f2 = next(j for j in floor if j.seed == 2)
    # the floor takes row k5's settings and checkpoint, varies only the export seed
    assert f2.overrides["evaluate.rgb.random_tiny3d_rgb.checkpoint"] == "models/cvtcl_cotrain/final.pt"
    assert f2.overrides["export.seed"] == 2 and "pretrain.defaults.seed" not in f2.overrides
    assert {k: v for k, v in k5.overrides.items() if k != "pretrain.defaults.seed"} == {
        k: v for k, v in f2.overrides.items() if not k.startswith(("export.", "evaluate."))}
    assert k5.overrides["pretrain.defaults.seed"] == 2


def test_aggregate_against_statistics():
    values = {0: 24.4, 1: 27.0, 2: 22.1}
    stat = aggregate(values, 3)
    assert stat.mean == pytest.approx(statistics.mean(values.values()))
    assert stat.std == pytest.approx(statistics.stdev(values.values()))   # sample std, n - 1
    assert stat.std == pytest.approx(np.std(list(values.values()), ddof=1))
    assert (stat.n, stat.of, stat.missing) == (3, 3, ())
    gap = aggregate({0: 24.4, 2: 22.1, 5: 99.0}, 3)      # seed 1 missing; seed 5 not asked for
    assert (gap.n, gap.missing) == (2, (1,)) and gap.mean == pytest.approx(23.25)
    one = aggregate({1: 30.0}, 3)
    assert one.mean == 30.0 and one.std is None and one.missing == (0, 2)
    none = aggregate({}, 2)
    assert none.mean is None and none.n == 0


def _two_rows(floor: bool = True) -> TableDef:
    rows = [RowDef("a", "cvrl_rgb", "gap A", published={"R@1": 40.0}),
            RowDef("b", "cvrl_rgb", "gap B", published={"R@1": 45.0, "linear_top1": 60.0})]
    floors = [RowDef("floor_a", "random_tiny3d_rgb", "random init (gap A)", floor=True)] if floor else []
    return TableDef("t", "Two rows", "P", ["R@1", "linear_top1"], rows, floors=floors)


HAND_MADE = {"a": {0: {"R@1": 20.0, "linear_top1": 30.0}, 1: {"R@1": 24.0, "linear_top1": 34.0},
                   2: {"R@1": 25.0, "linear_top1": 35.0}},
             "b": {0: {"R@1": 31.0, "linear_top1": 40.0}, 2: {"R@1": 35.0, "linear_top1": 44.0}},
             "floor_a": {0: {"R@1": 10.0}, 1: {"R@1": 12.0}, 2: {"R@1": 11.0}}}
NAMES = {row: [f"t-{row}-demo-s{s}" for s in seeds] for row, seeds in HAND_MADE.items()}


def test_markdown_and_csv_report_mean_std_n_and_missing_seed(tmp_path):
    table = _two_rows()
    stats = aggregate_rows(HAND_MADE, table.metrics, 3)
    frame = table_frame(table, "demo", stats, NAMES, 3)
    md = to_markdown(table, frame, "demo")
    a = statistics.stdev([20.0, 24.0, 25.0])
    assert f"| gap A | 3 | {statistics.mean([20.0, 24.0, 25.0]):.1f} ± {a:.1f} / 40.0 |" in md
    assert "| gap B | 2 of 3 | 33.0 ± 2.8 / 45.0 | 42.0 ± 2.8 / 60.0 |" in md
    assert "gap B: n = 2 of 3 (seed 1 missing)" in md
    assert "*random init (gap A)* (floor) | 3 | 11.0 ± 1.0 / — | — / — |" in md
    assert "`t-a-demo-s{0,1,2}`" in md
    csv = frame.set_index("row")
    assert csv.loc["b", "R@1 mean"] == 33.0 and csv.loc["b", "R@1 n"] == 2
    assert csv.loc["b", "R@1 std"] == pytest.approx(statistics.stdev([31.0, 35.0]))
    assert csv.loc["b", "missing_seeds"] == "1" and csv.loc["floor_a", "kind"] == "floor"
    assert {"R@1 mean", "R@1 std", "R@1 n", "linear_top1 mean", "linear_top1 std",
            "linear_top1 n"} <= set(frame.columns)


def test_chart_written_for_a_two_row_table(tmp_path):
    import matplotlib.image as mpimg

    from vsslpipe.tables.chart import write_chart

    table = _two_rows()
    frame = table_frame(table, "demo", aggregate_rows(HAND_MADE, table.metrics, 3), NAMES, 3,
                        beyond={"a": {"linear_top1"}})
    path = write_chart(table, frame, "demo", tmp_path / "t.png")
    assert path.stat().st_size > 10_000
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    assert float(image[..., :3].std()) > 0.05          # bars, not a blank canvas
    # no floors, a rehearsal: still a picture
    plain = _two_rows(floor=False)
    other = write_chart(plain, table_frame(plain, "rehearsal", {}, {}, 1), "rehearsal",
                        tmp_path / "empty.png")
    assert other.stat().st_size > 5_000
