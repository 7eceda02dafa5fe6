"""Does an encoder see motion? Cosine (after centring over videos) between a clip's feature and
the features of the same clip reversed in time and of a still clip (its first frame repeated).

Values near 1 mean the encoder ignores motion (an appearance-only representation), which makes
class retrieval on the built-in dataset (classes are motions, appearance is random) fail.
Usage: python bench/eval_motion_sensitivity.py models/cvrl_rgb/final.pt [--videos 20]
Writes bench/results/motion_sensitivity_<experiment>.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from vsslpipe.eval.clips import VideoSource, cut_window, eval_view
from vsslpipe.eval.export import load_encoder


@torch.no_grad()
def sensitivity(checkpoint: Path, init: str, frames: Path, flow: Path, n_videos: int) -> dict:
    backbone, meta = load_encoder(checkpoint, init)
    clip = meta["clip"]
    source = VideoSource(meta["modality"], frames if meta["modality"] == "rgb" else flow)
    ids = source.video_ids()
    ids = ids[:: max(1, len(ids) // n_videos)][:n_videos]
    feats = {"clip": [], "reversed": [], "still": []}
    for vid in ids:
        video = source.read(vid)
        span = (clip["clip_len"] - 1) * clip["stride"] + 1
        c = eval_view(cut_window(video, max(0, (video.shape[1] - span) // 2), clip["clip_len"],
                                 clip["stride"]), clip["size"])
        f = backbone(torch.stack([c, c.flip(1), c[:, :1].expand_as(c).contiguous()]))
        for key, row in zip(feats, f):
            feats[key].append(row)
    x = {k: torch.stack(v) for k, v in feats.items()}
    mean = x["clip"].mean(0)
    n = {k: F.normalize(v - mean, dim=1) for k, v in x.items()}
    off = n["clip"] @ n["clip"].T
    return {"cos_reversed": float((n["clip"] * n["reversed"]).sum(1).mean()),
            "cos_still": float((n["clip"] * n["still"]).sum(1).mean()),
            "cos_other_videos": float(off[~torch.eye(len(ids), dtype=torch.bool)].mean())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--frames", type=Path, default=Path("data/frames"))
    ap.add_argument("--flow", type=Path, default=Path("data/flow"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = {init: sensitivity(args.checkpoint, init, args.frames, args.flow, args.videos)
              for init in ("pretrained", "random")}
    out = Path(f"bench/results/motion_sensitivity_{args.checkpoint.parent.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
