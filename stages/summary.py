"""`vsslpipe summary`: gather every evaluated encoder into results/summary.csv, draw the pictures."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Dict, List, Optional

import typer

from vsslpipe.atomic import write_json_atomic, write_text_atomic
from vsslpipe.config import ConfigError, load_section

from .common import ParamsOpt, echo, report_user_errors


@dataclass(frozen=True)
class EvaluateConfig:
    """The encoders the pipeline evaluates: ``{name: {checkpoint: PATH, init: pretrained|random}}``
    (dvc.yaml's export/retrieve/linear stages iterate over it with ``foreach``)."""
    encoders: Dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        for name, spec in self.encoders.items():
            if not isinstance(spec, dict) or not isinstance(spec.get("checkpoint"), str):
                raise ConfigError(f"encoders.{name}: expected {{checkpoint: PATH, init: ...}}")
            unknown = set(spec) - {"checkpoint", "init"}
            if unknown:
                raise ConfigError(f"encoders.{name}: unknown key(s) {', '.join(sorted(unknown))}")
            if spec.get("init", "pretrained") not in ("pretrained", "random"):
                raise ConfigError(f"encoders.{name}.init must be pretrained or random")


@dataclass(frozen=True)
class SummaryConfig:
    eval_dir: Path = Path("results/eval")
    out: Path = Path("results/summary.csv")
    metrics: Path = Path("results/summary.json")
    plots: Path = Path("results/plots")
    frames: Path = Path("data/frames.h5")
    gallery_queries: int = 4
    gallery_frames: int = 4

    def validate(self) -> None:
        if self.gallery_queries < 1 or self.gallery_frames < 1:
            raise ConfigError("gallery_queries and gallery_frames must be >= 1")


@report_user_errors
def main(
    params: ParamsOpt = Path("params.yaml"),
    encoders: Annotated[Optional[List[str]], typer.Option("--encoder", help="Only these encoders [default: evaluate.encoders].")] = None,
) -> None:
    """Write results/summary.csv (R@k and linear top-1 of every encoder), the R@k charts and galleries.

    Example: vsslpipe summary --params params.yaml
    """
    import pandas as pd

    from vsslpipe.data.framestore import FrameStore
    from vsslpipe.eval.features import read_features
    from vsslpipe.eval.plots import recall_chart, retrieval_gallery
    from vsslpipe.eval.summary import build_summary, encoder_files, summary_metrics

    cfg = load_section(SummaryConfig, "summary", params)
    names = encoders or list(load_section(EvaluateConfig, "evaluate", params).encoders)
    table = build_summary(cfg.eval_dir, names)
    write_text_atomic(cfg.out, table.to_csv(index=False))
    write_json_atomic(cfg.metrics, summary_metrics(table))
    for dataset, rows in table.groupby("dataset"):
        recall_chart(rows, cfg.plots / f"recall_at_k_{dataset}.png",
                     f"Retrieval on {dataset} ({rows['protocol'].iloc[0]} protocol)")
    store = FrameStore(cfg.frames)
    for name in names:
        files = encoder_files(cfg.eval_dir, name)
        if files["topk"].is_file():
            retrieval_gallery(pd.read_csv(files["topk"]), store.read,
                              cfg.plots / f"gallery_{name}.png",
                              read_features(files["features"]).class_names,
                              cfg.gallery_queries, 3, cfg.gallery_frames, f"{name}: test query, top-3 training neighbours")
    echo(table[["experiment", "init", "modality", "R@1", "R@5", "linear_top1",
                "R@1_gain_over_random"]].to_string(index=False))
    for row in table[table["init"] == "pretrained"].to_dict("records"):
        gain = row["R@1_gain_over_random"]
        if pd.isna(gain):
            echo(f"note: {row['experiment']} has no random-init encoder of the same backbone and "
                 f"modality in evaluate.encoders to compare with")
        elif gain < 5.0:
            echo(f"warning: {row['experiment']} beats its random-init floor by only {gain:.1f} "
                 f"points of R@1")
    echo(f"summary: {len(table)} encoders -> {cfg.out}, pictures in {cfg.plots}")
