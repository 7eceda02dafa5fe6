"""`vsslpipe retrieve`: test videos query training videos; R@k with exact FAISS search."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, List, Literal, Optional

import typer

from vsslpipe.atomic import atomic_path, write_json_atomic
from vsslpipe.config import check, load_section

from .common import ParamsOpt, echo, features_arg, report_user_errors, shipped, warn


@dataclass(frozen=True)
class RetrieveConfig:
    ks: List[int] = field(default_factory=lambda: [1, 5, 10, 20, 50])
    protocol: Optional[str] = None    # null: the protocol the features were exported with
    fusion: Literal["concat", "average"] = "concat"
    use_gpu: bool = True

    def validate(self) -> None:
        from vsslpipe.eval.protocols import PROTOCOLS

        check(bool(self.ks) and min(self.ks) >= 1, "ks",
              f"must be a non-empty list of positive integers, got {self.ks}")
        check(self.protocol is None or self.protocol in PROTOCOLS, "protocol",
              f"unknown protocol {self.protocol!r}; valid: {', '.join(PROTOCOLS.names())}")


def topk_path(out: Path) -> Path:
    return out.with_name(out.stem + "_topk.csv")


@report_user_errors
def main(
    features: Annotated[List[Path], typer.Option("--features", help="Features file from `vsslpipe export`; twice to fuse two streams.")],
    out: Annotated[Path, typer.Option(help="R@k JSON to write; the per-query CSV goes beside it (<out>_topk.csv).")],
    protocol: Annotated[Optional[str], typer.Option(show_default=False, help="Post-processing preset: coclr (centre + L2), vcop, tclr (L2) [default: the export's; params: retrieve.protocol].")] = None,
    fusion: Annotated[Optional[str], typer.Option(show_default=False, help=f"Two streams: concat (= sum of similarities) or average. {shipped(RetrieveConfig, 'fusion', 'retrieve')}")] = None,
    params: ParamsOpt = None,
) -> None:
    """Nearest-neighbour retrieval: R@k of test queries against the training videos.

    Example: vsslpipe retrieve --features results/eval/cvrl_rgb/features.h5 --out results/eval/cvrl_rgb/retrieval.json
    """
    import pandas as pd

    from vsslpipe.errors import DataError
    from vsslpipe.eval.features import read_features
    from vsslpipe.eval.protocols import get_protocol
    from vsslpipe.eval.retrieval import first_hit_rank, prepare, recall_at_k, search

    cfg = load_section(RetrieveConfig, "retrieve", params, dict(protocol=protocol, fusion=fusion))
    if len(features) > 2:
        raise DataError(f"--features: {len(features)} files given; retrieval fuses at most two "
                        "streams (RGB and flow of the same videos)")
    sets = [features_arg(read_features, p) for p in features]
    ref = sets[0]
    for other, path in zip(sets[1:], features[1:]):
        if other.train.ids != ref.train.ids or other.test.ids != ref.test.ids:
            raise DataError(f"--features: {path}: its videos differ from {features[0]}'s; cannot "
                            "fuse (export both with the same manifest and stores)")
    exported = [s.attrs.get("protocol", "coclr") for s in sets]
    name = cfg.protocol or exported[0]
    for path, used in zip(features, exported):
        if used != name:
            warn(f"{path} was exported with protocol {used!r}, retrieval post-processes it as "
                 f"{name!r} (the papers pair each protocol's export with its own retrieval)")
    preset = get_protocol(name)
    db, queries = prepare([s.train.features for s in sets], [s.test.features for s in sets],
                          preset.center, cfg.fusion)
    kmax = max(cfg.ks)
    sims, idx = search(db, queries, kmax, cfg.use_gpu)
    neighbour_labels = ref.train.labels[idx]
    result = recall_at_k(ref.test.labels, neighbour_labels, cfg.ks)
    missing = sorted(set(ref.test.labels.tolist()) - set(ref.train.labels.tolist()))
    write_json_atomic(out, {
        **{k: round(v, 4) for k, v in result.items()},
        "queries": len(queries), "database": len(db), "protocol": name,
        "streams": [s.attrs.get("modality", "") for s in sets],
        "fusion": cfg.fusion if len(sets) > 1 else None,
        "queries_whose_class_is_not_in_database": int(sum(l in missing for l in ref.test.labels)),
        "k_beyond_database": [k for k in cfg.ks if k > len(db)],
        "skipped_at_export": [s.json_attr("selection").get("videos_skipped", 0) for s in sets]})
    names = ref.class_names
    table = pd.DataFrame({
        "query_id": ref.test.ids, "query_label": ref.test.labels,
        "query_class": [names[l] for l in ref.test.labels],
        "query_group": ref.test.groups,
        "first_hit_rank": first_hit_rank(ref.test.labels, neighbour_labels),
        "neighbour_ids": [";".join(ref.train.ids[j] for j in row) for row in idx],
        "neighbour_labels": [";".join(str(l) for l in row) for row in neighbour_labels],
        # a neighbour from the query's own source group (UCF101 gXX: clips cut from one long
        # video) is not a real retrieval; the gallery marks it
        "neighbour_groups": [";".join(ref.train.groups[j] for j in row) for row in idx],
        "similarities": [";".join(f"{s:.5f}" for s in row) for row in sims]})
    with atomic_path(topk_path(out)) as tmp:
        table.to_csv(tmp, index=False)
    skipped = sum(s.json_attr("selection").get("videos_skipped", 0) for s in sets[:1])
    note = f" ({skipped} videos skipped at export)" if skipped else ""
    echo(f"retrieve: {len(queries)} test queries x {len(db)} training videos{note} ({name}): "
         + ", ".join(f"{k} {v:.1f}" for k, v in result.items()) + f" -> {out}")
