"""`vsslpipe flow`: TV-L1 optical flow between consecutive frames into an HDF5 flow store."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from vsslpipe.atomic import write_json_atomic, write_text_atomic
from vsslpipe.config import check, load_params, load_section, origin_of
from vsslpipe.data.dataset_config import DataConfig
from vsslpipe.errors import DataError, VsslpipeError
from vsslpipe.flow.params import TVL1Params

from .common import ParamsOpt, device_opt, echo, report_user_errors, shipped, workers_opt


@dataclass(frozen=True)
class FlowConfig:
    video_list: Optional[Path] = None          # only these video ids, one a line
    metrics: Path = Path("metrics/flow.json")
    backend: Literal["opencv", "torch"] = "opencv"
    device: str = "cpu"
    workers: int = 2
    batch_size: int = 64
    compile: bool = False
    bound: float = 20.0
    check_every: Optional[int] = None    # torch: read convergence back every N iterations (null: 1 on CPU, 4 on CUDA)
    videos_per_shard: int = 100          # store layout: videos per shard file (a kill loses at most one)
    tvl1: TVL1Params = field(default_factory=TVL1Params)

    def validate(self) -> None:
        check(self.workers >= 1, "workers", f"must be >= 1, got {self.workers}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.bound > 0, "bound", f"must be > 0, got {self.bound:g}")
        check(self.check_every is None or self.check_every >= 1, "check_every",
              f"must be >= 1 (or null), got {self.check_every}")
        check(self.videos_per_shard >= 1, "videos_per_shard", f"must be >= 1, got {self.videos_per_shard}")
        check(self.tvl1.gamma == 0 or self.backend == "opencv", "tvl1.gamma",
              "!= 0 is only supported by the opencv backend")


def _selected(cfg: FlowConfig, data: DataConfig, store):
    """The manifest videos to compute (those extract decoded), and the selection report."""
    from vsslpipe.data.manifest import read_manifest
    from vsslpipe.data.usable import select_usable
    from vsslpipe.video.extract import failures_path

    table = read_manifest(data.manifest, origin_of(data, "manifest"))
    if cfg.video_list is not None:
        if not cfg.video_list.is_file():
            raise DataError(f"{origin_of(cfg, 'video_list')}: {cfg.video_list}: video list not found")
        wanted = {ln.split()[0] for ln in cfg.video_list.read_text().splitlines() if ln.strip()}
        table = table[table["video_id"].isin(wanted)]
    selection = select_usable(table, {"rgb": store}, {"rgb": failures_path(data.frames)},
                              {"rgb": origin_of(data, "frames")})
    return sorted(selection.rows["video_id"]), selection


F, D = FlowConfig, DataConfig


@report_user_errors
def main(
    params: ParamsOpt = None,
    frames: Annotated[Optional[Path], typer.Option(show_default=False, help=f"Frame store to read. {shipped(D, 'frames', 'data')}")] = None,
    out: Annotated[Optional[Path], typer.Option(show_default=False, help=f"Flow store to write (a folder). {shipped(D, 'flow', 'data')}")] = None,
    manifest: Annotated[Optional[Path], typer.Option(show_default=False, help=f"Manifest of the videos. {shipped(D, 'manifest', 'data')}")] = None,
    metrics: Annotated[Optional[Path], typer.Option(show_default=False, help=f"Metrics JSON to write. {shipped(F, 'metrics', 'flow')}")] = None,
    video_list: Annotated[Optional[Path], typer.Option(show_default=False, help="Only these video ids (one a line).")] = None,
    backend: Annotated[Optional[str], typer.Option(show_default=False, help=f"opencv (reference, CPU) or torch (batched, CUDA). {shipped(F, 'backend', 'flow')}")] = None,
    device: Annotated[Optional[str], device_opt(F, "flow")] = None,
    workers: Annotated[Optional[int], workers_opt(F, "flow")] = None,
    batch_size: Annotated[Optional[int], typer.Option(show_default=False, help=f"torch backend: pairs per batch. {shipped(F, 'batch_size', 'flow')}")] = None,
    bound: Annotated[Optional[float], typer.Option(show_default=False, help=f"Clip flow to [-bound, bound] px before uint8. {shipped(F, 'bound', 'flow')}")] = None,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile", show_default=False, help=f"torch backend: torch.compile the iteration. {shipped(F, 'compile', 'flow')}")] = None,
    max_failed_fraction: Annotated[Optional[float], typer.Option(show_default=False, help=f"Exit 1 when more videos than this fraction fail. {shipped(D, 'max_failed_fraction', 'data')}")] = None,
    record_versions: Annotated[Optional[Path], typer.Option(help="Only write the library versions the flow depends on to this JSON (a DVC dependency).")] = None,
) -> None:
    """Compute TV-L1 optical flow between consecutive frames of every video into a flow store.

    Resumable after a kill; videos it cannot read go to <out>/failures.csv; a single-frame video
    is stored with no pair (flow training and export skip it, counted). Several GPUs or
    processes: `torchrun --nproc_per_node=N $(which vsslpipe) flow --backend torch --device cuda`.
    Example: vsslpipe flow --frames data/frames --out data/flow -j 8
    """
    from vsslpipe.data.framestore import FrameStore
    from vsslpipe.flow.compute import FlowSettings, compute_flow, failures_path
    from vsslpipe.flow.opencv_backend import opencv_version

    loaded = load_params(params)
    cfg = load_section(FlowConfig, "flow", loaded, dict(
        metrics=metrics, video_list=video_list, backend=backend, device=device, workers=workers,
        batch_size=batch_size, bound=bound, compile=compile))
    data = load_section(DataConfig, "data", loaded, dict(
        frames=frames, flow=out, manifest=manifest, max_failed_fraction=max_failed_fraction),
        options={"flow": "--out"})
    if record_versions is not None:
        versions = {"opencv": opencv_version(), "backend": cfg.backend}
        if cfg.backend == "torch":
            import torch
            versions["torch"] = str(torch.__version__)
        write_text_atomic(record_versions, json.dumps(versions, indent=1, sort_keys=True) + "\n")
        echo(f"flow: recorded {versions} in {record_versions}")
        return
    try:
        store = FrameStore(data.frames)
    except DataError as exc:
        raise DataError(f"{origin_of(data, 'frames')}: {exc}") from None
    ids, selection = _selected(cfg, data, store)
    if not ids:
        raise DataError(f"{origin_of(data, 'frames')}: {data.frames}: no videos to compute")
    selection.check(data.max_failed_fraction, origin_of(data, "max_failed_fraction"))
    settings = FlowSettings(cfg.backend, cfg.bound, cfg.tvl1, cfg.device, cfg.batch_size,
                            cfg.compile, cfg.videos_per_shard, cfg.check_every)
    result = compute_flow(data.frames, ids, data.flow, settings, cfg.workers)
    if result.rank != 0:       # under torchrun: every rank has the whole store's counts; one reports
        return
    see = failures_path(data.flow)
    metrics_out = {
        "videos": result.videos, "failed": len(result.failures), "failures_file": str(see),
        "pairs_computed": result.pairs, "videos_without_pairs": result.without_pairs,
        "skipped_before_flow": selection.metrics(),
        "reused_from_interrupted_run": result.reused, "seconds": round(result.seconds, 2),
        "pairs_per_second": round(result.pairs_per_second, 1), "backend": cfg.backend,
        "opencv_version": opencv_version()}
    if result.iterations:
        metrics_out["mean_iterations_per_pair"] = round(sum(result.iterations) / len(result.iterations), 1)
    write_json_atomic(cfg.metrics, metrics_out)
    echo(f"flow: {result.videos} videos in {data.flow} ({result.computed} computed, {result.reused} "
         f"resumed, {result.without_pairs} single-frame with 0 pairs), {result.pairs} pairs in "
         f"{result.seconds:.1f} s = {result.pairs_per_second:.1f} pairs/s [{cfg.backend}]; "
         f"{len(result.failures)} failed (see {see})")
    if selection.line():
        echo(f"flow: {selection.line()}")
    for video_id, reason in result.failures[:5]:
        echo(f"  failed: {video_id}: {reason}")
    if result.failures and len(result.failures) / len(ids) > data.max_failed_fraction:
        raise VsslpipeError(f"{len(result.failures)} of {len(ids)} videos failed (> "
                            f"{origin_of(data, 'max_failed_fraction')} "
                            f"{data.max_failed_fraction:.1%}); see {see}")
