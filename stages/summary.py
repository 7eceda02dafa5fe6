"""`vsslpipe summary`: gather every evaluated encoder into results/summary.csv, draw the pictures."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Dict, List, Optional

import typer

from vsslpipe.atomic import write_json_atomic, write_text_atomic
from vsslpipe.config import PACKAGE_DEFAULTS, ConfigError, check, load_params, load_section, origin_of
from vsslpipe.data.dataset_config import DataConfig

from .common import ParamsOpt, echo, report_user_errors, shipped


@dataclass(frozen=True)
class EvaluateConfig:
    """The encoders the pipeline evaluates, by the modality they take:
    ``{rgb: {name: {checkpoint: PATH, init: pretrained|random}}, flow: {...}}`` (dvc.yaml's
    export/retrieve/linear stages iterate over each with ``foreach``)."""
    rgb: Dict[str, Any] = field(default_factory=dict)
    flow: Dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        for modality in ("rgb", "flow"):
            for name, spec in getattr(self, modality).items():
                where = f"{modality}.{name}"
                check(isinstance(spec, dict) and isinstance(spec.get("checkpoint"), str), where,
                      "expected {checkpoint: PATH, init: pretrained|random}")
                unknown = sorted(set(spec) - {"checkpoint", "init"})
                check(not unknown, where, f"unknown key(s) {', '.join(unknown)}; valid: checkpoint, init")
                check(spec.get("init", "pretrained") in ("pretrained", "random"), f"{where}.init",
                      f"must be pretrained or random, got {spec.get('init')!r}")
        both = sorted(set(self.rgb) & set(self.flow))
        check(not both, f"flow.{both[0]}" if both else "flow", "an encoder name is listed for both modalities")

    @property
    def encoders(self) -> dict:
        return {**self.rgb, **self.flow}


@dataclass(frozen=True)
class SummaryConfig:
    eval_dir: Path = Path("results/eval")
    out: Path = Path("results/summary.csv")
    metrics: Path = Path("results/summary.json")
    plots: Path = Path("results/plots")
    gallery_queries: int = 4
    gallery_frames: int = 4
    # where pretrain wrote its dvclive curves (pretrain.defaults.live_dir): drawn as images
    live_dir: Path = Path("dvclive")

    def validate(self) -> None:
        check(self.gallery_queries >= 1, "gallery_queries", f"must be >= 1, got {self.gallery_queries}")
        check(self.gallery_frames >= 1, "gallery_frames", f"must be >= 1, got {self.gallery_frames}")


S, D = SummaryConfig, DataConfig


@report_user_errors
def main(
    params: ParamsOpt = None,
    encoders: Annotated[Optional[List[str]], typer.Option("--encoder", help="Only these encoders [default: evaluate.encoders; without a params file: every folder of --eval-dir].")] = None,
    eval_dir: Annotated[Optional[Path], typer.Option(show_default=False, help=f"Folder of the evaluation outputs. {shipped(S, 'eval_dir', 'summary')}")] = None,
    out: Annotated[Optional[Path], typer.Option(show_default=False, help=f"Summary CSV to write. {shipped(S, 'out', 'summary')}")] = None,
    metrics: Annotated[Optional[Path], typer.Option(show_default=False, help=f"Summary JSON to write. {shipped(S, 'metrics', 'summary')}")] = None,
    plots: Annotated[Optional[Path], typer.Option(show_default=False, help=f"Folder of the pictures. {shipped(S, 'plots', 'summary')}")] = None,
    frames: Annotated[Optional[Path], typer.Option(show_default=False, help=f"Frame store for the galleries. {shipped(D, 'frames', 'data')}")] = None,
) -> None:
    """Write results/summary.csv (R@k and linear top-1 of every encoder), the R@k charts and galleries.

    Example: vsslpipe summary --params params.yaml
    """
    import pandas as pd

    from vsslpipe.data.usable import open_store
    from vsslpipe.eval.features import read_features
    from vsslpipe.eval.plots import recall_chart, retrieval_gallery, training_curves
    from vsslpipe.eval.summary import build_summary, encoder_files, summary_metrics

    loaded = load_params(params)
    cfg = load_section(SummaryConfig, "summary", loaded, dict(
        eval_dir=eval_dir, out=out, metrics=metrics, plots=plots))
    data = load_section(DataConfig, "data", loaded, dict(frames=frames))
    if not cfg.eval_dir.is_dir():
        raise ConfigError(f"{origin_of(cfg, 'eval_dir')}: {cfg.eval_dir}: folder not found "
                          "(run export, retrieve and linear first)")
    if encoders:
        names = list(encoders)
    elif loaded.label("evaluate") == PACKAGE_DEFAULTS and cfg.eval_dir.is_dir():
        # no project params: the encoders are what the evaluation stages wrote
        names = sorted(p.name for p in cfg.eval_dir.iterdir() if (p / "features.h5").is_file())
    else:
        names = list(load_section(EvaluateConfig, "evaluate", loaded).encoders)
    table = build_summary(cfg.eval_dir, names)
    write_text_atomic(cfg.out, table.to_csv(index=False))
    write_json_atomic(cfg.metrics, summary_metrics(table))
    for dataset, rows in table.groupby("dataset"):
        recall_chart(rows, cfg.plots / f"recall_at_k_{dataset}.png",
                     f"Retrieval on {dataset} ({rows['protocol'].iloc[0]} protocol)")
    store = open_store("rgb", data.frames, origin_of(data, "frames"))
    runs = set()
    for name in names:
        files = encoder_files(cfg.eval_dir, name)
        features = read_features(files["features"])
        if features.attrs.get("init") == "pretrained":
            runs.add(Path(str(features.attrs.get("checkpoint", ""))).parent.name)
        if files["topk"].is_file():
            retrieval_gallery(pd.read_csv(files["topk"]), store.read,
                              cfg.plots / f"gallery_{name}.png",
                              features.class_names,
                              cfg.gallery_queries, 3, cfg.gallery_frames,
                              f"{name}: test query, top-3 training neighbours (dashed frame: "
                              "the query's own source group)")
    # Curves change only with the model, hence with its features (a dependency): no extra dep.
    for run in sorted(r for r in runs if r):
        training_curves(cfg.live_dir / run / "plots" / "metrics", cfg.plots / f"curves_{run}.png",
                        f"pre-training curves of {run} ({cfg.live_dir / run})")
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
