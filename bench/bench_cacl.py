"""Where a CACL step's time goes, to decide whether caching the frozen frame features pays.

Measures (CPU process time, robust to a shared machine) the frozen frame CNN's share of a full
CACL training step (forward, backward, momentum update) at the demo settings of params.yaml, and
prints the analytic share at the paper's scale (R3D-18 16x112x112 + ResNet-50 frames).

    python bench/bench_cacl.py [--experiment cacl_rgb] [--steps 5]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from vsslpipe.methods import build_method
from vsslpipe.train.config import load_experiment
from vsslpipe.train.engine import method_spec

# Forward multiply-accumulates per clip / frame (R3D-18: the engine issue's figure; ResNet-50:
# 4.1 GMAC at 224 px, scaled by area).
R3D18_16x112_GMAC = 40.7
RESNET50_112_GMAC = 4.1 * (112 / 224) ** 2


class _Video:
    def __init__(self, frames):
        self.frames, self.num_frames = frames, len(frames)

    def read(self, start, stop, step=1, modality=None):
        return self.frames[start:stop:step]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--experiment", default="cacl_rgb")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_experiment(args.params, args.experiment)
    spec = method_spec(cfg)
    spec = spec.__class__(**{**spec.__dict__, "args": {**spec.args, "transformer": {
        **spec.args.get("transformer", {}), "frame_weights": None}}})   # weights do not change cost
    method = build_method(spec).train()
    opt = torch.optim.SGD(method.trainable_parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    sampler = method.make_sampler()
    videos = [_Video(rng.integers(0, 255, (32, 48, 64, 3), dtype=np.uint8)) for _ in range(cfg.batch_size)]
    batches = [default_collate([sampler(v, rng) for v in videos]) for _ in range(args.steps + 1)]
    step_s, frame_s = [], []
    for i, batch in enumerate(batches):
        t0 = time.process_time()
        loss, _ = method(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            method.after_step(i, None)
        t1 = time.process_time()
        x = method.augment(batch["clip0"], view=0)
        t2 = time.process_time()
        method.transformer.frame_features(x)
        method.transformer.frame_features(x)      # two views per step
        t3 = time.process_time()
        if i:   # the first step warms up
            step_s.append(t1 - t0)
            frame_s.append(t3 - t2)
    share = float(np.sum(frame_s) / np.sum(step_s))
    # paper scale, per sample: CNN queries 4 clips fwd+bwd (~3x fwd), keys 4 clips fwd;
    # frame CNN: 2 views x 16 frames forward (x_hat reuses x's frames, the key shares them)
    cnn = R3D18_16x112_GMAC * (4 * 3 + 4)
    frames = RESNET50_112_GMAC * 2 * 16
    result = {"experiment": args.experiment, "batch_size": cfg.batch_size, "threads": args.threads,
              "cpu_s_per_step": float(np.mean(step_s)), "frame_cnn_cpu_s_per_step": float(np.mean(frame_s)),
              "frame_cnn_share_demo": share, "paper_cnn_gmac_per_sample": cnn,
              "paper_frame_cnn_gmac_per_sample": frames,
              "frame_cnn_share_paper": frames / (cnn + frames)}
    for k, v in result.items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    out = Path(__file__).parent / "results" / "bench_cacl.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
