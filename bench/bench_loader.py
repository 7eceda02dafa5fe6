"""Loader cost per training sample, for the demo and every paper experiment, against a GPU.

For each experiment (the ``*_paper*`` ones of params.yaml, ``pretrain_frames_paper``, MoCo and
CVRL with R3D-18 at 16x112x112 stride 2 when params.yaml has none, and the demo's cvrl_rgb):

- bytes per sample that cross the worker boundary: *before* = the whole-frame windows the old
  loader sent, *after* = training-size views (``decode: cpu``) or JPEG bytes + crop boxes
  (``decode: gpu``);
- CPU-ms per sample (thread CPU time, so other work on a shared machine does not count): the
  real sampler in this process (a worker's work) plus the collation into shared memory that a
  worker does to send its batch; the same for the old loader's worker (decode the whole
  windows, no crop). Wall ms through a real DataLoader with one worker are kept for reference;
- the GPU's sample rate, estimated from FLOPs: ``vsslpipe.train.flops`` (the counts `tables plan`
  uses: ``torch.utils.flop_counter`` on the real backbone at the training shape, a trained pass =
  3 forwards (forward + backward), frozen and key encoders one forward), per co-training phase,
  at 320 TFLOP/s achieved (40 % of an H100's bf16 dense peak). AN ESTIMATE, not a GPU
  measurement;
- worker cores needed = GPU samples/s x CPU-s per sample (``gpu``: the worker's share plus the
  training process's host-side work per sample; the JPEG decode itself runs on the GPU).

Frames are 171x128 JPEG (quality 90; UCF101 at short side 128) cut from photographs
(scikit-image's sample images, slightly blurred as video frames are) panning over 64 frames; flow is Farneback flow of those frames,
quantised and gzip-compressed as the flow store stores it. Targets (issue 17): <= 8 cores per GPU
with ``decode: cpu``, <= 2 with ``decode: gpu``.

    python bench/bench_loader.py [--samples 40] [--params params.yaml]
Writes bench/results/loader.json.
"""
from __future__ import annotations

import argparse
import json
import pickle
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd
import torch

from vsslpipe.config import from_dict, load_params
from vsslpipe.data.clips import ClipDataset, make_loader
from vsslpipe.data.flowstore import SCHEMA as FLOW_SCHEMA, quantize_flow, write_flow_group
from vsslpipe.data.framestore import SCHEMA as FRAME_SCHEMA, encode_jpeg, write_video_group
from vsslpipe.data.sampling import read_clip
from vsslpipe.data.twostream import TwoStreamSampler, trained_stream
from vsslpipe.data.views import JPEG_PREFIX, collate
from vsslpipe.methods import METHODS, build_method, cvtcl
from vsslpipe.train.config import load_experiment
from vsslpipe.train.engine import method_spec
from vsslpipe.train.flops import ACHIEVED_FLOPS, training_cost
from vsslpipe.train.frame_pretrain import load_frame_moco_config

GPU_FLOPS = ACHIEVED_FLOPS  # H100 bf16 dense ~800 TFLOP/s peak, 40 % achieved
CHANNELS = {"rgb": 3, "flow": 2}
EXTRA = {   # the MoCo / CVRL settings, used when params.yaml has no paper experiment of them
    "moco_paper_r3d_18": dict(method="moco", backbone="r3d_18", clip_len=16, stride=2, size=112,
                              batch_size=64, augment={"preset": "coclr", "overrides": {"flip_p": 0.5}}),
    "cvrl_paper_r3d_18": dict(method="cvrl", backbone="r3d_18", clip_len=16, stride=2, size=112,
                              batch_size=64, augment={"preset": "cvrl", "overrides": {"flip_p": 0.5}}),
}


# -- stores --------------------------------------------------------------------------------------
def _photos() -> list[np.ndarray]:
    try:
        from skimage import data
        return [getattr(data, n)() for n in ("astronaut", "chelsea", "coffee", "rocket")]
    except ImportError:   # smooth noise: decodes faster than real frames
        rng = np.random.default_rng(0)
        return [cv2.resize(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), (640, 480)) for _ in range(4)]


def make_stores(root: Path, videos: int, frames: int, size: tuple[int, int]) -> dict:
    """Frame and flow stores (schema 1, one file each) of ``videos`` panning shots."""
    w, h = size
    ids = [f"Bench/v_{v:03d}" for v in range(videos)]
    with h5py.File(root / "frames.h5", "w") as ff, h5py.File(root / "flow.h5", "w") as fl:
        ff.attrs.update(schema=FRAME_SCHEMA, schema_version=1)
        fl.attrs.update(schema=FLOW_SCHEMA, schema_version=1, bound=20.0)
        for v, vid in enumerate(ids):
            photo = _photos()[v % 4]
            scale = max((h + 40) / photo.shape[0], (w + frames) / photo.shape[1])
            big = cv2.resize(photo, (int(np.ceil(photo.shape[1] * scale)), int(np.ceil(photo.shape[0] * scale))))
            big = cv2.GaussianBlur(big, (0, 0), 1.0)      # video frames are softer than photos
            shots = [np.ascontiguousarray(big[(i // 4) % 40:(i // 4) % 40 + h, i:i + w])
                     for i in range(frames)]
            jpegs = [encode_jpeg(cv2.cvtColor(x, cv2.COLOR_RGB2BGR), 90) for x in shots]
            write_video_group(ff.create_group(vid), jpegs, h, w, 25.0, vid)
            gray = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in shots]
            flow = np.stack([cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 2, 9, 2, 5, 1.1, 0)
                             for a, b in zip(gray, gray[1:])])
            write_flow_group(fl.create_group(vid), quantize_flow(flow))
        for f in (ff, fl):
            f.create_dataset("video_ids", data=np.array(ids, dtype=h5py.string_dtype()))
    table = pd.DataFrame({"video_id": ids, "label": 0, "group": "g01", "split": "train"})
    return {"rgb": root / "frames.h5", "flow": root / "flow.h5", "table": table, "hw": (h, w)}


# -- experiments ---------------------------------------------------------------------------------
def experiments(params: str) -> dict:
    loaded = load_params(params)
    names = [n for n in (loaded.data.get("pretrain", {}).get("experiments") or {}) if "_paper" in n]
    out = {n: load_experiment(loaded, n, check_method=False) for n in names}
    base = load_experiment(loaded, "cvrl_rgb", check_method=False)
    for name, over in EXTRA.items():
        if not any(n.startswith(name.split("_paper")[0] + "_paper") for n in names):
            cfg = from_dict(type(base), {**_plain(base), **over}, "bench")
            out[name] = cfg
    if "pretrain_frames_paper" in loaded.data:
        out["pretrain_frames_paper"] = load_frame_moco_config(loaded, section_name="pretrain_frames_paper")
    out["demo_cvrl_rgb"] = base
    return out


def _plain(cfg) -> dict:
    from vsslpipe.config import to_dict

    return {k: v for k, v in to_dict(cfg).items() if k not in ("frames", "flow", "manifest")}


def method_config(cfg):
    return from_dict(METHODS.get(cfg.method).Config, cfg.method_args_for(), "bench")


def phases(cfg) -> list[tuple[str, int]]:
    """(label, epoch) of the distinct sample kinds: co-training has an RGB and a flow phase."""
    if cfg.method in ("cvtcl", "coclr") and method_config(cfg).stage == "cotrain":
        mc = method_config(cfg)
        first = mc.first_phase
        return [(f"{first} phase", 0), (f"{'flow' if first == 'rgb' else 'rgb'} phase", mc.epochs_per_phase)]
    return [("", 0)]


def make_sampler(cfg):
    spec = method_spec(cfg)
    if cfg.method in ("cvtcl", "coclr"):
        return cvtcl.make_sampler(spec, method_config(cfg))
    if cfg.method == "cacl":   # the frame CNN's weights do not change the loader
        t = {**spec.args.get("transformer", {}), "frame_weights": None}
        spec = replace(spec, args={**spec.args, "transformer": t})
    return build_method(spec).make_sampler()


def old_windows(cfg, epoch: int) -> list[tuple[str, int]]:
    """The whole-frame windows the earlier loader sent per sample: (modality, frames)."""
    t, m = cfg.clip_len, cfg.modality
    if cfg.method == "image_moco":                        # K random frames, one read each
        return [("rgb", 1)] * method_config(cfg).frames_per_video
    if cfg.method == "cvrl" or (cfg.method == "moco" and method_config(cfg).clips != "same"):
        return [(m, t), (m, t)]
    if cfg.method in ("cvtcl", "coclr"):
        mc = method_config(cfg)
        n = 2 if mc.clips == "independent" else 1
        return [(s, t) for s in ("rgb", "flow") for _ in range(n)] if mc.stage == "cotrain" else [(m, t)] * n
    return [(m, t)]


# -- FLOPs ---------------------------------------------------------------------------------------
def sample_flops(cfg, phase_epoch: int) -> float:
    """FLOPs of one training sample's step (vsslpipe.train.flops, the counts `tables plan` uses);
    for co-training, those of the phase that ``phase_epoch`` falls in (one stream trained, the
    other frozen) rather than the average over both phases."""
    cost = training_cost(cfg)
    mc = method_config(cfg) if cfg.method in ("cvtcl", "coclr") else None
    if mc is None or mc.stage != "cotrain":
        return cost.per_sample
    trained = trained_stream(phase_epoch, mc.epochs_per_phase, mc.first_phase)

    def stream_of(what: str):          # "rgb phase: ...", "LTCL ... (rgb)", or None (both phases)
        return next((m for m in ("rgb", "flow")
                     if what.startswith(f"{m} phase") or what.endswith(f"({m})")), None)

    # training_cost weights each phase's passes by 1/2 (half the epochs each): undo that
    phase = sum(2 * v for what, v in cost.parts if stream_of(what) == trained)
    shared = sum(v for what, v in cost.parts if stream_of(what) is None)
    return phase + shared          # + the memory banks re-embedded at each phase change


# -- measurements --------------------------------------------------------------------------------
def nbytes(x) -> int:
    if isinstance(x, np.ndarray):
        return x.nbytes
    if isinstance(x, dict):
        return sum(nbytes(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return sum(nbytes(v) for v in x)
    return 8


def per_sample_ms(fn, n: int) -> float:
    """CPU ms of this thread per call (CPU time, not wall: other work on a shared machine does
    not count, and CPU time is what a worker core spends)."""
    fn(0)
    t0 = time.thread_time()
    for i in range(1, n + 1):
        fn(i)
    return 1e3 * (time.thread_time() - t0) / n


def ipc_ms(samples: list) -> float:
    """CPU ms per sample of what a worker adds to send a batch: arrays are stacked straight
    into shared memory (as DataLoader workers collate), the rest (JPEG bytes, boxes) pickled."""
    arrays = [k for k, v in samples[0].items() if isinstance(v, np.ndarray)]
    t0 = time.thread_time()
    for k in arrays:
        first = torch.from_numpy(samples[0][k])
        out = torch.empty((len(samples), *first.shape), dtype=first.dtype).share_memory_()
        torch.stack([torch.from_numpy(s[k]) for s in samples], out=out)
    pickle.dumps([{k: v for k, v in s.items() if k not in arrays} for s in samples])
    return 1e3 * (time.thread_time() - t0) / len(samples)


class RawWindows:
    """The earlier loader's sample: whole-frame windows, decoded in the worker."""

    def __init__(self, windows, clip_len, stride):
        self.windows, self.clip_len, self.stride = windows, clip_len, stride

    def __call__(self, video, rng):
        out = {}
        for k, (m, t) in enumerate(self.windows):
            start = int(rng.integers(0, max(video.num_frames - (t - 1) * self.stride, 1)))
            out[f"w{k}"] = read_clip(video, start, t, self.stride if t == self.clip_len else 1, m)
        return out


def loader_ms(ds: ClipDataset, epoch: int, n: int, batch: int = 8) -> float:
    """Wall ms per sample through a DataLoader with one worker (worker-bound on this box)."""
    order = [(epoch, i % len(ds)) for i in range(n + 2 * batch)]
    loader = make_loader(ds, batch, 1, order, drop_last=True, persistent=False)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    got = 0
    for b in it:
        got += len(b["index"])
        if got >= n:
            break
    return 1e3 * (time.perf_counter() - t0) / max(got, 1)


def host_ms(ds: ClipDataset, epoch: int, n: int) -> float:
    """decode: gpu, training-process host work per sample before the device decodes: one
    tensor per JPEG (what torchvision's decode_jpeg takes)."""
    batch = collate([ds[(epoch, i % len(ds))] for i in range(n)])
    t0 = time.thread_time()
    for k in [k for k in batch if k.startswith(JPEG_PREFIX)]:
        [torch.from_numpy(np.asarray(a)) for s in batch[k] for a in s]
    return 1e3 * (time.thread_time() - t0) / n


def measure(name: str, cfg, stores: dict, n: int) -> list[dict]:
    rows = []
    sampler = make_sampler(cfg)
    mods = ("rgb", "flow") if isinstance(sampler, TwoStreamSampler) else (cfg.modality,)
    paths = {m: stores[m] for m in mods}
    table = stores["table"]
    for label, epoch in phases(cfg):
        windows = old_windows(cfg, epoch)
        h, w = stores["hw"]
        before = sum(t * h * w * CHANNELS[m] for m, t in windows)
        old = ClipDataset(table, paths, RawWindows(windows, cfg.clip_len, cfg.stride), decode="cpu")
        ds = {d: ClipDataset(table, paths, sampler, seed=0, default_modality=cfg.modality, decode=d)
              for d in ("cpu", "gpu")}
        after = {d: nbytes(ds[d][(epoch, 0)]) for d in ds}
        cost = {"old": per_sample_ms(lambda i: old[(epoch, i % len(table))], n)}
        for d in ds:
            cost[d] = per_sample_ms(lambda i, d=d: ds[d][(epoch, i % len(table))], n)
        cost["gpu_host"] = host_ms(ds["gpu"], epoch, n)
        batch = 16
        ipc = {"old": ipc_ms([old[(epoch, i % len(table))] for i in range(batch)]),
               "cpu": ipc_ms([ds["cpu"][(epoch, i % len(table))] for i in range(batch)]),
               "gpu": ipc_ms([ds["gpu"][(epoch, i % len(table))] for i in range(batch)])}
        old_loader, new_loader = loader_ms(old, epoch, n), loader_ms(ds["cpu"], epoch, n)
        flops = sample_flops(cfg, epoch)
        demo = name.startswith("demo")       # tiny3d on CPU: no GPU to feed
        rate = None if demo else GPU_FLOPS / flops
        ms = {"before": cost["old"] + ipc["old"], "cpu": cost["cpu"] + ipc["cpu"],
              "gpu": cost["gpu"] + ipc["gpu"] + cost["gpu_host"]}
        row = {
            "experiment": name + (f" ({label})" if label else ""), "method": cfg.method,
            "modality": cfg.modality, "backbone": cfg.backbone,
            "clip": f"{cfg.clip_len}x{cfg.size}x{cfg.size}/{cfg.stride}",
            "gflop_per_sample": flops / 1e9, "gpu_samples_per_s_est": rate,
            "bytes_before": before, "bytes_after_cpu": after["cpu"], "bytes_after_gpu": after["gpu"],
            "worker_ms_before": cost["old"], "worker_ms_cpu": cost["cpu"],
            "worker_ms_gpu": cost["gpu"], "host_ms_gpu": cost["gpu_host"],
            "ipc_ms_before": ipc["old"], "ipc_ms_cpu": ipc["cpu"], "ipc_ms_gpu": ipc["gpu"],
            "cpu_ms_per_sample": ms,
            "loader_wall_ms_before": old_loader, "loader_wall_ms_cpu": new_loader,
        }
        if rate:
            row["cores"] = {k: rate * v / 1e3 for k, v in ms.items()}
            row["meets_cpu_target"] = row["cores"]["cpu"] <= 8
            row["meets_gpu_target"] = row["cores"]["gpu"] <= 2
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


HEADER = (f"{'experiment':36s} {'clip':>13s} {'GFLOP':>6s} {'GPU/s*':>6s} | {'MB/sample':^19s} | "
          f"{'CPU-ms/sample':^17s} | {'cores per GPU*':^18s}\n"
          f"{'':36s} {'':>13s} {'':>6s} {'':>6s} | {'before  cpu   gpu':^19s} | "
          f"{'before cpu  gpu':^17s} | {'before  cpu   gpu':^18s}")


def format_row(r: dict) -> str:
    rate = r["gpu_samples_per_s_est"]
    ms, cores = r["cpu_ms_per_sample"], r.get("cores")
    mb = lambda k: r[k] / 1e6  # noqa: E731
    line = (f"{r['experiment']:36s} {r['clip']:>13s} {r['gflop_per_sample']:6.0f} "
            f"{rate or 0:6.0f} | {mb('bytes_before'):5.2f} {mb('bytes_after_cpu'):5.2f} "
            f"{mb('bytes_after_gpu'):5.2f} | {ms['before']:5.1f} {ms['cpu']:5.1f} {ms['gpu']:4.1f} | ")
    if cores:
        line += f"{cores['before']:5.1f} {cores['cpu']:5.1f} {cores['gpu']:5.1f}"
    return line + ("" if cores else "  (demo: CPU training)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--only", nargs="*", help="experiment names (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    exps = experiments(args.params)
    if args.only:
        exps = {k: v for k, v in exps.items() if k in args.only}
    rows = []
    print(HEADER)
    with tempfile.TemporaryDirectory() as tmp:
        paper = make_stores(Path(tmp), videos=8, frames=64, size=(171, 128))
        from vsslpipe.data.framestore import FrameStore

        store = FrameStore(paper["rgb"])
        decode_ms = per_sample_ms(lambda i: store.read(paper["table"].video_id[i % 8], 0, 64), 8) / 64
        print(f"JPEG decode of a 171x128 frame: {decode_ms:.3f} ms (the issue measured 0.11 on UCF101)")
        (Path(tmp) / "demo").mkdir()
        demo = make_stores(Path(tmp) / "demo", videos=8, frames=32, size=(64, 48))
        for name, cfg in exps.items():
            rows += measure(name, cfg, demo if name.startswith("demo") else paper, args.samples)
    out = Path("bench/results/loader.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"gpu_tflops_assumed": GPU_FLOPS / 1e12, "samples": args.samples,
                               "note": "GPU rates are FLOP estimates, not measurements",
                               "jpeg_decode_ms_per_frame_171x128": decode_ms, "rows": rows},
                              indent=2))
    print("\n" + HEADER)
    for row in rows:
        print(format_row(row))
    print("* GPU samples/s: FLOP estimate at 320 TFLOP/s (H100, 40 % of bf16 peak), not measured; "
          "targets: <= 8 cores with decode cpu, <= 2 with decode gpu")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
