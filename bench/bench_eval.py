"""Evaluation throughput on the default dataset: export (videos/s), retrieval and probe seconds.

Usage: python bench/bench_eval.py [--checkpoint models/cvrl_rgb/final.pt] [--workers 2]
Writes bench/results/eval.json. Without a checkpoint a random tiny3d RGB encoder is timed
(the cost does not depend on the weights).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vsslpipe.data.manifest import read_manifest
from vsslpipe.eval.export import export_splits, load_encoder
from vsslpipe.eval.linear import linear_probe
from vsslpipe.eval.protocols import get_protocol, resolve_clip
from vsslpipe.eval.retrieval import prepare, recall_at_k, search
from vsslpipe.models import build_backbone
from vsslpipe.models.checkpoint import save_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--frames", type=Path, default=Path("data/frames.h5"))
    ap.add_argument("--manifest", type=Path, default=Path("data/manifest.csv"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--protocol", default="coclr")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = args.checkpoint
    if ckpt is None:
        ckpt = Path("bench/results/_tiny3d_rgb.pt")
        net = build_backbone("tiny3d", in_channels=3)
        save_checkpoint(ckpt, {"method": "none", "modality": "rgb",
                               "backbone": {"name": "tiny3d", "kwargs": {"in_channels": 3}},
                               "backbone_state": net.state_dict(),
                               "clip": {"clip_len": 8, "stride": 2, "size": 48}, "config": {}})
    backbone, meta = load_encoder(ckpt)
    preset = get_protocol(args.protocol)
    clip = resolve_clip(meta.get("clip"), preset, None, None, None)
    manifest = read_manifest(args.manifest)
    t0 = time.perf_counter()
    splits = export_splits(backbone, meta["modality"], args.frames, manifest, preset, clip,
                           "cpu", 64, args.workers)
    t_export = time.perf_counter() - t0
    t0 = time.perf_counter()
    db, q = prepare([splits["train"].features], [splits["test"].features], preset.center)
    _, idx = search(db, q, 50)
    recall = recall_at_k(splits["test"].labels, splits["train"].labels[idx], [1, 5, 10, 20, 50])
    t_retrieve = time.perf_counter() - t0
    t0 = time.perf_counter()
    probe = linear_probe(splits["train"].features, splits["train"].labels, splits["test"].features,
                         splits["test"].labels, int(manifest["label"].max()) + 1,
                         [1e-4, 1e-3, 1e-2, 1e-1, 1.0], splits["train"].groups)
    t_linear = time.perf_counter() - t0
    videos = sum(len(s.ids) for s in splits.values())
    result = {"checkpoint": str(ckpt), "protocol": args.protocol, "clip": clip,
              "workers": args.workers, "threads": args.threads, "videos": videos,
              "export_s": round(t_export, 2), "export_videos_per_s": round(videos / t_export, 1),
              "retrieve_s": round(t_retrieve, 3), "linear_s": round(t_linear, 2),
              "R@1": recall["R@1"], "linear_top1": probe.top1}
    out = Path("bench/results/eval.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
