"""`vsslpipe flow`: TV-L1 optical flow between consecutive frames into one HDF5 flow store."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from vsslpipe.atomic import write_json_atomic, write_text_atomic
from vsslpipe.config import ConfigError, load_section
from vsslpipe.data.framestore import FrameStore
from vsslpipe.data.manifest import read_manifest
from vsslpipe.errors import DataError, VsslpipeError
from vsslpipe.flow.compute import FlowSettings, compute_flow, failures_path
from vsslpipe.flow.opencv_backend import opencv_version
from vsslpipe.flow.params import TVL1Params
from vsslpipe.flow.sharding import merge_shards, parse_shard, select_shard, shard_out_path

from .common import DeviceOpt, ParamsOpt, WorkersOpt, echo, report_user_errors


@dataclass(frozen=True)
class FlowConfig:
    frames: Path = Path("data/frames.h5")
    manifest: Optional[Path] = Path("data/manifest.csv")  # null: every video of the frame store
    video_list: Optional[Path] = None                      # video ids, one a line
    out: Path = Path("data/flow.h5")
    metrics: Path = Path("metrics/flow.json")
    backend: Literal["opencv", "torch"] = "opencv"
    device: str = "cpu"
    workers: int = 2
    batch_size: int = 64
    compile: bool = False
    bound: float = 20.0
    max_failed_fraction: float = 0.05
    tvl1: TVL1Params = field(default_factory=TVL1Params)

    def validate(self) -> None:
        if self.workers < 1 or self.batch_size < 1 or self.bound <= 0:
            raise ConfigError("flow: workers >= 1, batch_size >= 1 and bound > 0 required")
        if self.tvl1.gamma != 0 and self.backend == "torch":
            raise ConfigError("flow.tvl1.gamma != 0 is only supported by the opencv backend")
        self.tvl1.validate()


def _video_ids(cfg: FlowConfig, store: FrameStore) -> tuple[list[str], int]:
    """Selected ids present in the frame store, and how many selected ids it lacks."""
    if cfg.video_list is not None:
        if not cfg.video_list.is_file():
            raise DataError(f"{cfg.video_list}: video list not found")
        wanted = [ln.split()[0] for ln in cfg.video_list.read_text().splitlines() if ln.strip()]
    elif cfg.manifest is not None:
        wanted = list(read_manifest(cfg.manifest)["video_id"])
    else:
        wanted = store.video_ids()
    have = set(store.video_ids())
    # Videos the extract stage could not decode are absent (listed in its failures CSV).
    return sorted(v for v in set(wanted) if v in have), len(set(wanted) - have)


@report_user_errors
def main(
    params: ParamsOpt = Path("params.yaml"),
    frames: Annotated[Optional[Path], typer.Option(help="Frame store to read (.h5).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Flow store to write (.h5).")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="Only the videos of this manifest CSV.")] = None,
    video_list: Annotated[Optional[Path], typer.Option(help="Only these video ids (one a line).")] = None,
    backend: Annotated[Optional[str], typer.Option(help="opencv (reference, CPU) or torch (batched, CUDA).")] = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    batch_size: Annotated[Optional[int], typer.Option(help="torch backend: pairs per batch.")] = None,
    bound: Annotated[Optional[float], typer.Option(help="Clip flow to [-bound, bound] px before uint8.")] = None,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch backend: torch.compile the iteration.")] = None,
    shard: Annotated[Optional[str], typer.Option(help="K/N: compute the K-th of N disjoint parts of the videos into its own file.")] = None,
    merge: Annotated[Optional[list[Path]], typer.Option(help="Merge these shard stores into --out instead of computing (repeat).")] = None,
    record_versions: Annotated[Optional[Path], typer.Option(help="Only write the library versions the flow depends on to this JSON (a DVC dependency).")] = None,
) -> None:
    """Compute TV-L1 optical flow between consecutive frames of every video into an HDF5 store.

    Resumable after a kill; unreadable videos go to <out>.failures.csv. Example:
    vsslpipe flow --frames data/frames.h5 --out data/flow.h5 -j 8; on a cluster run
    `vsslpipe flow --shard K/N` per job, then `vsslpipe flow --merge a.h5 --merge b.h5 --out flow.h5`.
    """
    cfg = load_section(FlowConfig, "flow", params, dict(
        frames=frames, out=out, manifest=manifest, video_list=video_list, backend=backend,
        device=device, workers=workers, batch_size=batch_size, bound=bound, compile=compile))
    if record_versions is not None:
        versions = {"opencv": opencv_version(), "backend": cfg.backend}
        if cfg.backend == "torch":
            import torch
            versions["torch"] = str(torch.__version__)
        write_text_atomic(record_versions, json.dumps(versions, indent=1, sort_keys=True) + "\n")
        echo(f"flow: recorded {versions} in {record_versions}")
        return
    if merge:
        n = merge_shards(merge, cfg.out)
        echo(f"flow: merged {len(merge)} shard(s), {n} videos, into {cfg.out}")
        return
    store = FrameStore(cfg.frames)
    ids, missing = _video_ids(cfg, store)
    out_path, shard_text = cfg.out, None
    if shard:
        k, n = parse_shard(shard)
        ids, shard_text = select_shard(ids, k, n), f"{k}/{n}"
        out_path = cfg.out if out is not None else shard_out_path(cfg.out, k, n)
    if not ids:
        raise DataError(f"{cfg.frames}: no videos selected")
    settings = FlowSettings(cfg.backend, cfg.bound, cfg.tvl1, cfg.device, cfg.batch_size, cfg.compile)
    result = compute_flow(cfg.frames, ids, out_path, settings, cfg.workers, shard_text)
    metrics = {
        "videos": result.videos, "failed": len(result.failures), "pairs_computed": result.pairs,
        "videos_without_pairs": result.without_pairs, "missing_in_frame_store": missing,
        "reused_from_interrupted_run": result.reused, "seconds": round(result.seconds, 2),
        "pairs_per_second": round(result.pairs_per_second, 1), "backend": cfg.backend,
        "opencv_version": opencv_version()}
    if result.iterations:
        metrics["mean_iterations_per_pair"] = round(sum(result.iterations) / len(result.iterations), 1)
    if not shard_text:
        write_json_atomic(cfg.metrics, metrics)
    echo(f"flow: {result.videos} videos in {out_path} ({result.computed} computed, {result.reused} "
         f"resumed, {result.without_pairs} single-frame with 0 pairs), {result.pairs} pairs in "
         f"{result.seconds:.1f} s = {result.pairs_per_second:.1f} pairs/s [{cfg.backend}]; "
         f"{len(result.failures)} failed (see {failures_path(out_path)})")
    for video_id, reason in result.failures[:5]:
        echo(f"  failed: {video_id}: {reason}")
    if result.failures and len(result.failures) / len(ids) > cfg.max_failed_fraction:
        raise VsslpipeError(f"{len(result.failures)} of {len(ids)} videos failed (> "
                            f"max_failed_fraction {cfg.max_failed_fraction:.1%}); "
                            f"see {failures_path(out_path)}")
