"""The paper's orderings in our seeds: each pair with different published values tested by
Welch's t-test, checked against the t-test written out by hand (Welch-Satterthwaite degrees of
freedom), plus rows against their floors, single seeds and unmeasured rows."""
from __future__ import annotations

import math
import statistics

import pytest
from scipy.stats import t as student_t

from vsslpipe.tables import orderings
from vsslpipe.tables.definitions import RowDef, TableDef
from vsslpipe.tables.render import table_frame, to_markdown, write_table
from vsslpipe.tables.seeds import aggregate_rows

SEEDS = {"a": [20.0, 24.0, 25.0], "b": [31.0, 33.0, 35.0], "c": [30.0, 31.0, 32.0],
         "d": [28.0], "floor_a": [10.0, 12.0, 11.0]}


def _table() -> TableDef:
    rows = [RowDef("a", "cvrl_rgb", "A", published={"R@1": 40.0}),
            RowDef("b", "cvrl_rgb", "B", published={"R@1": 45.0}),
            RowDef("c", "cvrl_rgb", "C", published={"R@1": 30.0}),
            RowDef("d", "cvrl_rgb", "D", published={"R@1": 45.0}),
            RowDef("e", "cvrl_rgb", "E", published={"R@1": 10.0})]        # never measured
    floors = [RowDef("floor_a", "random_tiny3d_rgb", "random A", floor=True, like="a")]
    return TableDef("t", "Orderings", "P", ["R@1"], rows, floors=floors)


def _frame(table):
    per_seed = {row: {s: {"R@1": v} for s, v in enumerate(values)} for row, values in SEEDS.items()}
    names = {row: [f"t-{row}-demo-s{s}" for s in range(len(v))] for row, v in SEEDS.items()}
    return table_frame(table, "demo", aggregate_rows(per_seed, table.metrics, 3), names, 3)


def _welch_by_hand(x, y):
    v1, v2 = statistics.variance(x) / len(x), statistics.variance(y) / len(y)
    diff, se = statistics.mean(x) - statistics.mean(y), math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 ** 2 / (len(x) - 1) + v2 ** 2 / (len(y) - 1))
    return diff, se, 2 * student_t.sf(abs(diff / se), df)


def test_pairs_verdicts_against_a_hand_written_welch_test():
    table = _table()
    found = {(o.higher, o.lower): o for o in orderings.table_orderings(table, _frame(table))}
    # every pair with different published values, the higher one first; b and d tie: no pair
    assert set(found) == {("b", "a"), ("a", "c"), ("b", "c"), ("d", "a"), ("d", "c"),
                          ("a", "e"), ("b", "e"), ("c", "e"), ("d", "e"), ("a", "floor_a")}
    for (hi, lo), expect in {("b", "a"): "reproduced", ("a", "c"): "contradicted",
                             ("b", "c"): "within noise", ("a", "floor_a"): "reproduced"}.items():
        o = found[(hi, lo)]
        diff, se, p = _welch_by_hand(SEEDS[hi], SEEDS[lo])
        assert (o.diff, o.se, o.p) == pytest.approx((diff, se, p)), (hi, lo)
        assert o.verdict == expect, (hi, lo, p)
    assert found[("b", "c")].p > 0.05 and found[("a", "c")].p < 0.05
    assert found[("b", "a")].paper_gap == 5.0 and found[("a", "floor_a")].paper_gap is None
    # one seed: a sign, no test; a row never run: not measured
    assert found[("d", "a")].verdict == "one seed" and found[("d", "a")].p is None
    assert found[("d", "a")].diff == pytest.approx(28.0 - statistics.mean(SEEDS["a"]))
    assert found[("a", "e")].verdict == "not measured"


def test_identical_seeds_are_decided_without_dividing_by_zero():
    higher = {"row": "x", "R@1 mean": 5.0, "R@1 std": 0.0, "R@1 n": 3}
    lower = {"row": "y", "R@1 mean": 3.0, "R@1 std": 0.0, "R@1 n": 3}
    assert orderings.compare("R@1", higher, lower, 1.0).verdict == "reproduced"
    assert orderings.compare("R@1", higher, dict(lower, **{"R@1 mean": 5.0}), 1.0).verdict == "within noise"


def test_rendered_with_the_table_and_written_as_csv(tmp_path):
    table = _table()
    frame = _frame(table)
    md = to_markdown(table, frame, "demo")
    assert "## The paper's orderings in our numbers" in md
    assert ("Paper orderings: 1 reproduced, 1 contradicted, 1 within noise, 2 one seed, "
            "4 not measured.") in md
    assert "Pre-trained above its random-init floor: 1 reproduced." in md
    assert "| R@1 | B | A | +5.0 | +10.0 ± 1.9 |" in md
    write_table(table, frame, "demo", tmp_path)
    import pandas as pd

    tested = pd.read_csv(tmp_path / "t.orderings.csv")
    assert len(tested) == 10 and set(tested["verdict"]) >= {"reproduced", "contradicted"}
    # a rehearsal's numbers mean nothing: no verdicts, and none left over from another scale
    write_table(table, table_frame(table, "rehearsal", {}, {}, 1), "rehearsal", tmp_path)
    assert not (tmp_path / "t.orderings.csv").exists()
    assert "orderings" not in to_markdown(table, frame, "rehearsal")


def test_stated_orderings_are_tested_on_every_metric_and_validated():
    from vsslpipe.errors import ConfigError
    from vsslpipe.tables.definitions import parse_tables

    table = TableDef(**{**_table().__dict__, "stated": ["c > a"]})
    stated = [o for o in orderings.table_orderings(table, _frame(table)) if o.source == "stated"]
    assert [(o.metric, o.higher, o.lower, o.paper_gap, o.verdict) for o in stated] == [
        ("R@1", "c", "a", None, "reproduced")]
    md = to_markdown(table, _frame(table), "demo")
    assert "Orderings the paper states without numbers: 1 reproduced." in md
    assert "| R@1 | C | A | (stated) |" in md

    def parse(stated):
        rows = [{"name": "a", "encoder": "cvrl_rgb"}, {"name": "b", "encoder": "cvrl_rgb"}]
        return parse_tables({"definitions": {"t": {"title": "T", "paper": "P", "metrics": ["R@1"],
                                                   "rows": rows, "stated": stated}}}, "x.yaml")

    assert parse(["a > b"])[0]["t"].stated == ["a > b"]
    for bad in (["a > z"], ["a, b"], ["a > a"]):
        with pytest.raises(ConfigError, match=r"x.yaml: definitions.t.stated\[0\]: .*ROW > ROW"):
            parse(bad)
