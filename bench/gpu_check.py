"""The GPU check: on one GPU, in at most ~8 minutes, measure and write bench/results/gpu.json.

1. TV-L1 (torch backend): pairs/s at 170x128 and 320x240 and agreement with OpenCV on natural
   frames (reference flow shipped in bench/data/tvl1_reference.npz: the GPU machine needs no
   OpenCV contrib) — bench/tvl1_check.py.
2. Training, for every paper experiment (params.yaml `*_paper*`, image MoCo's
   `pretrain_frames_paper`, and CVRL / MoCo on R3D-18 at 16x112x112): samples/s and achieved
   TFLOP/s (FLOPs per sample from vsslpipe.train.flops) through the real loader (a generated
   UCF101-shaped store: 171x128 JPEG frames, `decode` cpu and gpu) and with the batch already on
   the device (the GPU's own rate); and whether a training step synchronises with the host
   (`torch.cuda.set_sync_debug_mode("warn")`, vsslpipe.train.syncs).
3. Export: videos/s of R3D-18 / vcop through the loader and on the device — bench/bench_eval.py.
4. Top-K mining (CVTCL co-training): ms per step at UCF101's bank (9.5 k training videos) and
   Kinetics' (240 k), on the device (matrix product + topk) and with FAISS.

    python bench/gpu_check.py                          # on the GPU machine
    python bench/gpu_check.py --device cpu --quick     # seconds on a CPU (the test suite runs it)

Targets (issue 17): TV-L1 >= 700 pairs/s at 170x128 on an H100-class GPU; R3D-18 16x112x112 in
MoCo or CVRL >= 40 % of the card's bf16 peak with the real loader; no synchronisation in a step.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from vsslpipe.config import from_dict, load_params, to_dict  # noqa: E402
from vsslpipe.train.config import PretrainConfig, load_experiment  # noqa: E402

# peak dense bf16 TFLOP/s of cards this check may meet (for "% of peak")
BF16_PEAK = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
EXTRA = {   # issue 17's CVRL / MoCo settings (no `*_paper*` experiment of theirs in params.yaml)
    "cvrl_r3d_18_16x112": dict(method="cvrl", backbone="r3d_18", clip_len=16, stride=2, size=112,
                               batch_size=64, augment={"preset": "cvrl", "overrides": {"flip_p": 0.5}}),
    "moco_r3d_18_16x112": dict(method="moco", backbone="r3d_18", clip_len=16, stride=2, size=112,
                               batch_size=64, augment={"preset": "coclr", "overrides": {"flip_p": 0.5}}),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def paper_experiments(params, quick: bool) -> dict[str, PretrainConfig]:
    """Name -> config of every paper experiment (quick: a few, at demo shapes, on tiny3d)."""
    from vsslpipe.train.frame_pretrain import load_frame_moco_config

    loaded = load_params(params)
    names = [n for n in loaded.data["pretrain"]["experiments"] if "_paper" in n]
    out = {n: load_experiment(loaded, n, check_method=False) for n in names}
    base = to_dict(load_experiment(loaded, "cvrl_rgb", check_method=False))
    for name, over in EXTRA.items():
        out[name] = from_dict(PretrainConfig, {**base, **over}, "gpu_check")
    out["pretrain_frames_paper"] = load_frame_moco_config(loaded, section_name="pretrain_frames_paper")
    if quick:   # one per method family, small enough for a CPU in seconds
        keep = ["cvrl_r3d_18_16x112", "moco_r3d_18_16x112", "cvtcl_paper_init_rgb",
                "cvtcl_paper_cotrain", "cacl_paper_r3d_18"]
        out = {k: v for k, v in out.items() if k in keep}
        shrink = dict(backbone="tiny3d", clip_len=8, stride=2, size=32, batch_size=4)
        out = {k: from_dict(PretrainConfig, {**to_dict(v), **shrink}, k) for k, v in out.items()}
        cacl = to_dict(out["cacl_paper_r3d_18"])
        cacl["method_args"]["cacl"]["transformer"].update(frame_cnn="tiny2d", token_dim=32, layers=1, heads=2)
        out["cacl_paper_r3d_18"] = from_dict(PretrainConfig, cacl, "cacl_paper_r3d_18")
    return out


def _inputs(cfg: PretrainConfig, name: str, stores: dict, tmp: Path, device: str,
            workers: int, decode: str) -> PretrainConfig:
    """The experiment on the generated stores: its device, workers and decode; co-training gets
    init checkpoints saved from freshly built init models; CACL's frame CNN stays random."""
    from vsslpipe.models.checkpoint import save_checkpoint
    from vsslpipe.train.engine import seeded_method

    values = {**to_dict(cfg), "device": device, "workers": workers, "decode": decode,
              "threads": 0, "prefetch": True, "checkpoint_every": 10_000,
              "live_dir": str(tmp / "dvclive"), "out_dir": str(tmp / "models")}
    args = values["method_args"]
    if cfg.method == "cacl":
        t = dict(args["cacl"].get("transformer") or {})
        t["frame_weights"] = None
        args["cacl"] = {**args["cacl"], "transformer": t}
    if cfg.method in ("cvtcl", "coclr") and args.get(cfg.method, {}).get("stage") == "cotrain":
        for m in ("rgb", "flow"):
            init = {**values, "modality": m, "method_args": {
                **args, cfg.method: {**args[cfg.method], "stage": "init"}}}
            init_cfg = from_dict(PretrainConfig, init, f"{name} init {m}")
            method = seeded_method(init_cfg)
            path = tmp / f"{name}_init_{m}.pt"
            save_checkpoint(path, {"method": init_cfg.method, "modality": m,
                                   "backbone": method.export_spec(),
                                   "backbone_state": method.export_backbone().state_dict(),
                                   "model_state": method.state_dict(),
                                   "clip": {"clip_len": cfg.clip_len, "stride": cfg.stride,
                                            "size": cfg.size}, "config": init})
            args[cfg.method] = {**args[cfg.method], f"init_{m}": str(path)}
        args[cfg.method]["export_other_to"] = str(tmp / f"{name}_other.pt")
    return from_dict(PretrainConfig, values, name)


def train_check(cfg: PretrainConfig, name: str, stores: dict, tmp: Path, device: str,
                steps: int, workers: int, decode: str, syncs: bool) -> dict:
    """samples/s through the loader and on the device, TFLOP/s, and the step's host syncs."""
    from vsslpipe.data.clips import RunSampler, make_loader
    from vsslpipe.train.engine import Trainer
    from vsslpipe.train.flops import training_cost

    cfg = _inputs(cfg, name, stores, tmp, device, workers, decode)
    flops = training_cost(cfg).per_sample
    trainer = Trainer(cfg, name, tmp / f"scratch_{name}_{decode}", table=stores["table"],
                      stores={m: stores[m] for m in ("rgb", "flow")}, progress=False)
    dev = trainer.device
    ctx = trainer._context()
    trainer.method.on_train_start(ctx)
    trainer.method.train()
    trainer.method.on_epoch_start(0, ctx)
    order = RunSampler(trainer.sampler, 0, 10_000, cfg.batch_size)
    loader = make_loader(trainer.dataset, cfg.batch_size, cfg.workers, order, drop_last=False,
                         pin_memory=dev.type == "cuda", persistent=False)
    batches = trainer._prepared_batches(loader, 0)
    kept = []
    for _ in range(2):                          # warm-up: workers start, kernels are chosen
        kept.append(next(batches))
        trainer.train_step(kept[-1], ctx)
    _sync(dev)
    t0 = time.perf_counter()
    for i in range(steps):                      # the GPU's own rate: batches already there
        trainer.train_step(kept[i % len(kept)], ctx)
    _sync(dev)
    device_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):                      # the real loader feeding the same steps
        trainer.train_step(next(batches), ctx)
    _sync(dev)
    loader_s = time.perf_counter() - t0
    batches.close()
    n = steps * cfg.batch_size
    out = {"method": cfg.method, "backbone": cfg.backbone, "modality": cfg.modality,
           "clip": [cfg.clip_len, cfg.stride, cfg.size], "batch_size": cfg.batch_size,
           "decode": decode, "workers": workers, "gflop_per_sample": round(flops / 1e9, 1),
           "samples_per_s_loader": round(n / loader_s, 1),
           "samples_per_s_on_device": round(n / device_s, 1),
           "tflops_loader": round(n * flops / loader_s / 1e12, 2),
           "tflops_on_device": round(n * flops / device_s / 1e12, 2)}
    if syncs and dev.type == "cuda":
        from vsslpipe.train.syncs import step_syncs

        found = step_syncs(trainer)
        out["syncs_in_step"] = len(found)
        out["sync_messages"] = sorted(set(found))[:5]
    trainer.close()
    return out


def mining_check(device: str, quick: bool, dim: int = 128, batch: int = 32, k: int = 5) -> dict:
    """ms per step of top-K mining at UCF101's and Kinetics' bank sizes."""
    import torch.nn.functional as F

    from vsslpipe.methods.mining import BankIndex, DeviceBankIndex, mine_topk

    dev = torch.device(device)
    out = {}
    for label, n in (("ucf101_9537", 9537), ("kinetics_240k", 24_000 if quick else 240_000)):
        bank = F.normalize(torch.randn(n, dim, device=dev), dim=1)
        queries = F.normalize(torch.randn(batch, dim, device=dev), dim=1)
        self_index = torch.randint(0, n, (batch,), device=dev)
        row = {"bank": n}
        for kind, index in (("device", DeviceBankIndex(bank)), ("faiss", BankIndex(bank))):
            mine_topk(index, queries, k, self_index)
            _sync(dev)
            reps = 5 if quick else 50
            t0 = time.perf_counter()
            for _ in range(reps):
                mine_topk(index, queries, k, self_index)
            _sync(dev)
            row[f"{kind}_ms"] = round((time.perf_counter() - t0) / reps * 1e3, 3)
        out[label] = row
    return out


def card_peak(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="small shapes (a CPU in seconds)")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--steps", type=int, default=None, help="timed steps per experiment")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu.json"))
    args = ap.parse_args(argv)
    from bench_eval import export_check
    from bench_loader import make_stores
    from tvl1_check import tvl1_check

    quick = args.quick
    steps = args.steps or (2 if quick else 12)
    workers = 0 if quick else max(1, (os.cpu_count() or 2) - 2)
    result: dict = {"device": args.device, "quick": quick, "torch": str(torch.__version__),
                    "card": torch.cuda.get_device_name(torch.device(args.device))
                    if args.device.startswith("cuda") else "cpu",
                    "bf16_peak_tflops": card_peak(args.device), "cpu_cores": os.cpu_count()}
    started = time.perf_counter()

    def part(name, fn):
        t0 = time.perf_counter()
        try:
            result[name] = fn()
        except Exception as exc:   # one part failing must not lose the others' figures
            result[name] = {"error": f"{exc.__class__.__name__}: {exc}",
                            "traceback": traceback.format_exc()[-2000:]}
        print(f"gpu_check: {name} done in {time.perf_counter() - t0:.1f} s", flush=True)

    part("tvl1", lambda: tvl1_check(args.device, quick=quick))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shape = (64, 48) if quick else (171, 128)
        stores = make_stores(tmp, videos=8 if quick else 96, frames=24 if quick else 64, size=shape)
        training = {}
        for name, cfg in paper_experiments(args.params, quick).items():
            reads_rgb = cfg.modality == "rgb" or "cotrain" in name
            for decode in ("cpu", "gpu") if reads_rgb else ("cpu",):
                key = f"{name}/{decode}"
                t0 = time.perf_counter()
                try:
                    training[key] = train_check(cfg, name, stores, tmp, args.device, steps,
                                                workers, decode, syncs=decode == "cpu")
                except Exception as exc:
                    training[key] = {"error": f"{exc.__class__.__name__}: {exc}",
                                     "traceback": traceback.format_exc()[-2000:]}
                print(f"gpu_check: train {key} in {time.perf_counter() - t0:.1f} s: "
                      f"{ {k: v for k, v in training[key].items() if k != 'traceback'} }", flush=True)
        result["training"] = training
    peak = result["bf16_peak_tflops"]
    if peak:
        for row in result["training"].values():
            if "tflops_loader" in row:
                row["percent_of_bf16_peak_loader"] = round(100 * row["tflops_loader"] / peak, 1)
    part("export", lambda: export_check(args.device, quick=quick))
    part("mining", lambda: mining_check(args.device, quick))
    result["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"gpu_check: {result['seconds']} s -> {out}")
    return result


if __name__ == "__main__":
    main()
