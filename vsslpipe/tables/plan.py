"""``vsslpipe tables plan``: per row, the stages that would run and those DVC's run-cache already
holds, the disk each new output needs and the GPU-hours from FLOP counts — all estimates.

Disk per stage kind: a frame store is frames x bytes per frame at the extraction's short side
(UCF101 at 128: ~17 GB for 2.5 M frames, ~6.8 kB a frame; bytes grow with the pixel count); a
flow store ~4 kB a pair at 128 (9-11 GB for UCF101); a checkpoint 4 bytes per parameter of the
encoders it holds; features videos x dim x 4 bytes. GPU-hours: epochs x training videos x
training FLOPs per sample (``vsslpipe.train.flops``) at 320 TFLOP/s (one H100 at 40 % of its
bf16 peak); export: windows x forward FLOPs; TV-L1 on the torch backend ~1 ms per 170x128 pair
on an H100 (the OpenCV backend: ~0.34 s per pair per CPU core). The dataset's size comes from
the workspace's manifest when the row extracts the same dataset the workspace did, else from
UCF101's published figures when the row points at UCF101, else it is unknown.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from .overrides import get_dotted

UCF101 = {"videos": 13320, "train": 9537, "test": 3783, "frames": 2_500_000}
FRAME_BYTES_128, FLOW_BYTES_128 = 6800.0, 4000.0
TVL1_GPU_S, TVL1_CPU_S, TVL1_PIXELS = 1e-3, 0.343, 170 * 128


@dataclass
class Dataset:
    videos: Optional[int] = None
    train: Optional[int] = None
    test: Optional[int] = None
    frames: Optional[int] = None
    source: str = "unknown"


@dataclass
class Estimate:
    kind: str = ""
    disk: Optional[float] = None         # bytes of new outputs
    gpu_hours: Optional[float] = None
    cpu_hours: Optional[float] = None
    note: str = ""
    details: list = field(default_factory=list)


def dataset_size(root: Path, params: Mapping, lock: Mapping) -> Dataset:
    """The row's dataset size (see the module docstring for the sources)."""
    import pandas as pd

    extract = params.get("extract") or {}
    done = ((lock.get("stages") or {}).get("extract") or {}).get("params", {}).get("params.yaml", {})
    manifest = root / str(get_dotted(params, "data.manifest", "data/manifest.csv"))
    if done.get("extract") == extract and manifest.is_file():
        frame = pd.read_csv(manifest)
        if "status" in frame.columns:
            frame = frame[frame["status"].fillna("ok") == "ok"]
        frames = None
        metrics = root / str(extract.get("metrics", "metrics/extract.json"))
        if metrics.is_file():
            frames = json.loads(metrics.read_text()).get("frames_decoded")
        split = frame["split"] if "split" in frame.columns else pd.Series([], dtype=str)
        return Dataset(len(frame), int((split == "train").sum()), int((split == "test").sum()),
                       frames, "the workspace's manifest")
    synth = params.get("synth") or {}
    if synth.get("out") and str(extract.get("videos", "")).startswith(str(synth["out"])):
        per_class = int(synth.get("groups", 0)) * int(synth.get("clips_per_group", 0))
        test = int(synth.get("num_classes", 0)) * int(synth.get("test_groups", 0)) * int(synth.get("clips_per_group", 0))
        videos = int(synth.get("num_classes", 0)) * per_class
        return Dataset(videos, videos - test, test, videos * int(synth.get("frames", 0)),
                       "the built-in generator's settings (synth)")
    where = f"{extract.get('videos', '')} {get_dotted(params, 'data.name', '')}".lower()
    if extract.get("dataset") == "ucf101" and ("ucf" in where):
        return Dataset(**UCF101, source="UCF101's published figures")
    return Dataset()


def _pixels(params: Mapping) -> float:
    short = int(get_dotted(params, "extract.short_side", 0) or 0) or 240    # 0: UCF101's decoded 240
    return short * short * 4 / 3


def _cmd(stage) -> list[str]:
    try:
        return shlex.split(stage.cmd or "")
    except ValueError:
        return []


def _arg(tokens: list, flag: str) -> Optional[str]:
    return tokens[tokens.index(flag) + 1] if flag in tokens and tokens.index(flag) + 1 < len(tokens) else None


def _pretrain_config(params: Mapping, tokens: list):
    from ..train.config import load_experiment
    from ..train.frame_pretrain import load_frame_moco_config

    if "pretrain-frames" in tokens:
        return load_frame_moco_config(params, section_name=_arg(tokens, "--section") or "pretrain_frames")
    name = _arg(tokens, "--experiment") or _arg(tokens, "-e")
    return load_experiment(params, name, check_method=False) if name else None


def _windows(params: Mapping, data: Dataset, span: int) -> Optional[float]:
    from ..eval.protocols import PROTOCOLS

    if data.train is None or data.test is None:
        return None
    proto = PROTOCOLS.build(str(get_dotted(params, "export.protocol", "coclr")))
    mean_frames = (data.frames / data.videos) if data.frames and data.videos else 186.0

    def per_video(kind: str) -> float:
        if kind == "middle":
            return 1.0
        if kind == "even":
            return float(proto.num_clips)
        return max(1.0, (mean_frames - span) / proto.window_step + 1)

    return data.train * per_video(proto.train_windows) + data.test * per_video(proto.test_windows)


def estimate(stage, params: Mapping, data: Dataset, producers: Mapping[str, Any]) -> Estimate:
    """Disk and compute of one stage that runs (see the module docstring)."""
    from ..train import flops

    tokens = _cmd(stage)
    sub = tokens[1] if len(tokens) > 1 and tokens[0] == "vsslpipe" else ""
    est = Estimate(kind=sub or (tokens[0] if tokens else ""))
    ratio = _pixels(params) / (128 * 128 * 4 / 3)
    pairs = (data.frames - data.videos) if data.frames and data.videos else None
    if sub == "extract" and "--record-listing" not in tokens:
        est.kind = "frame store"
        if data.frames:
            est.disk = data.frames * FRAME_BYTES_128 * ratio
        est.note = "CPU (decode + JPEG)"
    elif sub == "flow" and "--record-versions" not in tokens:
        est.kind = "flow store"
        if pairs:
            est.disk = pairs * FLOW_BYTES_128 * ratio
            scale = _pixels(params) / TVL1_PIXELS
            if get_dotted(params, "flow.backend") == "torch" and str(get_dotted(params, "flow.device", "")).startswith("cuda"):
                est.gpu_hours = pairs * TVL1_GPU_S * scale / 3600
                est.note = "TV-L1 on the GPU, ~1 ms per 170x128 pair (estimate)"
            else:
                est.cpu_hours = pairs * TVL1_CPU_S * scale / 3600
                est.note = "TV-L1 on CPU cores (core-hours; set flow.backend: torch, flow.device: cuda)"
    elif sub in ("pretrain", "pretrain-frames"):
        cfg = _pretrain_config(params, tokens)
        if cfg is not None:
            cost = flops.training_cost(cfg)
            count, _ = flops.backbone_params(cfg.backbone, cfg.modality, cfg.backbone_args)
            copies = {"cvrl": 2}.get(cfg.method, 5 if "cotrain" in json.dumps(cfg.method_args) else 3)
            est.kind, est.disk = f"pretrain ({cfg.method}, {cfg.backbone})", copies * count * 4.0
            est.details = [f"{w}: {_gflop(v)}" for w, v in cost.parts]
            if data.train:
                est.gpu_hours = flops.gpu_hours(cfg.epochs * data.train * cost.per_sample)
                est.note = (f"{cfg.epochs} epochs x {data.train} videos x "
                            f"{_gflop(cost.per_sample)} per sample")
    elif sub == "export":
        checkpoint = str(_arg(tokens, "--checkpoint"))
        producer = next((s for out, s in producers.items()
                         if checkpoint == out or checkpoint.startswith(out.rstrip("/") + "/")), None)
        cfg = _pretrain_config(params, _cmd(producer)) if producer is not None else None
        if cfg is not None and data.videos:
            modality = "flow" if any(d.def_path == get_dotted(params, "data.flow") for d in stage.deps) else "rgb"
            clip = int(get_dotted(params, "export.clip_len") or cfg.clip_len)
            size = int(get_dotted(params, "export.size") or cfg.size)
            forward = flops.backbone_forward(cfg.backbone, modality, clip, size, cfg.backbone_args)
            _, dim = flops.backbone_params(cfg.backbone, modality, cfg.backbone_args)
            est.kind, est.disk = "features", data.videos * dim * 4.0
            windows = _windows(params, data, clip * int(get_dotted(params, "export.stride") or cfg.stride))
            if windows:
                est.gpu_hours = flops.gpu_hours(windows * forward)
                est.note = f"{windows:.0f} windows x {_gflop(forward)}"
    elif sub in ("retrieve", "linear"):
        est.disk = 1e4      # a JSON file
    return est


def _gflop(flop: float) -> str:
    """Three significant digits, so a demo-sized model reads 0.0213 GFLOP rather than 0."""
    return f"{flop / 1e9:.3g} GFLOP"


def row_params(params_file: Path) -> dict:
    return yaml.safe_load(Path(params_file).read_text()) or {}


def human_bytes(value: Optional[float]) -> str:
    if value is None:
        return "?"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def hours(value: Optional[float]) -> str:
    if value is None:
        return "?"
    return "<0.01" if 0 < value < 0.01 else f"{value:.2g}" if value < 10 else f"{value:.0f}"


@dataclass
class JobPlan:
    name: str
    dataset: Dataset
    stages: list        # (StageStatus, Estimate or None)


def make_plan(root: Path, jobs: list, raw_params: Mapping) -> list[JobPlan]:
    """The state and cost of every stage of every job (see the module docstring)."""
    from dvc.utils.serialize import load_yaml

    from .runcache import ALWAYS, CACHED, RunCacheView
    from .runner import override_args, row_targets

    lock_path = Path(root) / "dvc.lock"
    lock = load_yaml(str(lock_path)) if lock_path.is_file() else {}
    plans = []
    with RunCacheView(Path(root)) as view:
        for job in jobs:
            args = override_args(job.overrides, raw_params)
            params_file = view.params_file(args)
            params = row_params(params_file)
            data = dataset_size(Path(root), params, lock)
            statuses = view.walk(args, row_targets(job, raw_params), params_file)
            producers = {out: st.stage for st in statuses for out in st.outs}
            rows = [(st, None if st.state in (CACHED, ALWAYS) else estimate(st.stage, params, data, producers))
                    for st in statuses]
            plans.append(JobPlan(job.name, data, rows))
    return plans


def _total(pairs, unit) -> str:
    """Sum of the known values; the stages without an estimate named after it."""
    pairs = list(pairs)
    known = sum(v for _, v in pairs if v is not None)
    missing = sorted({n for n, v in pairs if v is None})
    text = human_bytes(known) if unit == "disk" else hours(known)
    return text + (f" + unknown ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
                   if missing else "")


def format_plan(table_name: str, scale: str, plans: list[JobPlan]) -> str:
    from .runcache import ALWAYS, CACHED, RUN

    lines = [f"plan: table {table_name} at scale {scale}, {len(plans)} experiments. Disk and "
             "GPU-hours are ESTIMATES: stage kinds; FLOP counts at 320 TFLOP/s per GPU, a "
             "compute-bound figure (data loading and 3D-convolution efficiency can make a real "
             "run several times longer)."]
    datasets = {p.dataset.source: p.dataset for p in plans}
    for source, d in datasets.items():
        size = (f"{d.videos} videos ({d.train} train / {d.test} test), "
                f"{d.frames / 1e6:.2f} M frames" if d.videos and d.frames else
                f"{d.videos} videos" if d.videos else "size unknown")
        lines.append(f"dataset: {size} — {source}")
    once: dict[str, Any] = {}
    width = max((len(st.name) for p in plans for st, _ in p.stages), default=20) + 2
    kinds = max((len(e.kind) for p in plans for _, e in p.stages if e is not None), default=10) + 2
    for plan in plans:
        lines += ["", plan.name]
        new: list = []
        for st, est in plan.stages:
            what = "" if est is None else est.kind
            cost = "" if est is None else "  ".join(filter(None, [
                f"disk {human_bytes(est.disk)}" if est.disk is not None or st.state == RUN else "",
                f"{hours(est.gpu_hours)} GPU-h" if est.gpu_hours is not None else "",
                f"{hours(est.cpu_hours)} CPU core-h" if est.cpu_hours is not None else ""]))
            lines.append(f"  {st.state:8s}{st.name:{width}s}{what:{kinds}s}{cost:34s}{st.reason}")
            if est is not None and est.note:
                lines.append(f"  {'':{8 + width}s}{est.note}")
            if st.state not in (CACHED, ALWAYS):
                new.append((st.name, est))
                once.setdefault(st.ident, (st.name, est))
        lines.append(f"  = new: {len(new)} stages, disk {_total(((n, e.disk) for n, e in new), 'disk')}, "
                     f"{hours(sum(e.gpu_hours or 0 for _, e in new))} GPU-h (estimates)")
    cached = sum(1 for p in plans for st, _ in p.stages if st.state == CACHED)
    lines += ["", f"table: {len(once)} stages to run, each once (rows sharing a stage share its run): "
              f"disk {_total(((n, e.disk) for n, e in once.values()), 'disk')}, "
              f"{hours(sum(e.gpu_hours or 0 for _, e in once.values()))} GPU-h, "
              f"{hours(sum(e.cpu_hours or 0 for _, e in once.values()))} CPU core-h (estimates); "
              f"{cached} stage results already in the run-cache"]
    return "\n".join(lines) + "\n"
