"""`vsslpipe linear`: linear probe on frozen features (weight decay chosen on held-out train)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, List

import typer

from vsslpipe.atomic import write_json_atomic
from vsslpipe.config import check, load_section

from .common import ParamsOpt, echo, features_arg, report_user_errors


@dataclass(frozen=True)
class LinearConfig:
    weight_decays: List[float] = field(default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    val_fraction: float = 0.25        # of the training groups (or videos) held out for selection
    max_iter: int = 300               # L-BFGS iterations per fit
    seed: int = 0

    def validate(self) -> None:
        check(bool(self.weight_decays) and min(self.weight_decays) >= 0, "weight_decays",
              f"must be a non-empty list of values >= 0, got {self.weight_decays}")
        check(0 < self.val_fraction < 1, "val_fraction", f"must be in (0, 1), got {self.val_fraction:g}")
        check(self.max_iter >= 1, "max_iter", f"must be >= 1, got {self.max_iter}")


@report_user_errors
def main(
    features: Annotated[List[Path], typer.Option("--features", help="Features file(s) from `vsslpipe export` (several are concatenated).")],
    out: Annotated[Path, typer.Option(help="Metrics JSON to write.")],
    params: ParamsOpt = None,
) -> None:
    """Linear classifier on frozen, standardised video features; top-1/top-5 on the test split.

    Example: vsslpipe linear --features results/eval/cvrl_rgb/features.h5 --out results/eval/cvrl_rgb/linear.json
    """
    import time

    import numpy as np

    from vsslpipe.errors import DataError
    from vsslpipe.eval.features import read_features
    from vsslpipe.eval.linear import linear_probe

    cfg = load_section(LinearConfig, "linear", params)
    sets = [features_arg(read_features, p) for p in features]
    ref = sets[0]
    if any(s.train.ids != ref.train.ids or s.test.ids != ref.test.ids for s in sets[1:]):
        raise DataError("--features: the files hold different videos; cannot concatenate "
                        "(export them with the same manifest and stores)")
    train_x = np.concatenate([s.train.features for s in sets], axis=1)
    test_x = np.concatenate([s.test.features for s in sets], axis=1)
    start = time.perf_counter()
    try:
        result = linear_probe(train_x, ref.train.labels, test_x, ref.test.labels,
                              len(ref.class_names), cfg.weight_decays, ref.train.groups,
                              cfg.val_fraction, cfg.seed, cfg.max_iter)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    write_json_atomic(out, {
        "top1": round(result.top1, 4), "top5": round(result.top5, 4),
        "weight_decay": result.weight_decay,
        "selection": {"held_out": result.held_out, "num_fit": result.num_train,
                      "num_held_out": result.num_val, "metric": "held-out top-1 (%)",
                      "grid": result.selection},
        "num_train": len(ref.train.ids), "num_test": result.num_test,
        "skipped_at_export": ref.json_attr("selection").get("videos_skipped", 0),
        "seconds": round(time.perf_counter() - start, 2)})
    echo(f"linear: top-1 {result.top1:.1f} %, top-5 {result.top5:.1f} % on {result.num_test} test "
         f"videos, trained on {len(ref.train.ids)} (weight decay {result.weight_decay:g} chosen on {result.num_val} held-out "
         f"training videos by {result.held_out}) -> {out}")
