"""Per-video features of a frozen encoder, following a protocol preset (see ``protocols``).

Every window of a video (the protocol decides which) is encoded in batches across videos; clip
features are combined into one vector per video by their mean (after per-clip L2 normalisation
for ``coclr``). ``tclr`` keeps the time axis: the feature map entering the backbone's final
``AdaptiveAvgPool3d`` is pooled over space only and flattened (channels x time).
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.modality import CHANNELS
from ..errors import ConfigError, DataError
from ..models import build_backbone
from ..models.checkpoint import load_backbone, load_checkpoint
from ..progress import ProgressBar
from .clips import VideoSource, WindowedVideos, check_ids
from .features import SplitFeatures
from .protocols import Protocol, window_starts

INITS = ("pretrained", "random")


def load_encoder(checkpoint: str | Path, init: str = "pretrained",
                 seed: int = 0) -> tuple[nn.Module, dict]:
    """The checkpoint's backbone, or (``init="random"``) a freshly initialised backbone of the
    same architecture and input (the baseline floor), seeded so it is the same on every run."""
    if init not in INITS:
        raise ConfigError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if init == "pretrained":
        backbone, meta = load_backbone(checkpoint)
        return backbone, {**meta, "init": "pretrained"}
    ckpt = load_checkpoint(checkpoint)
    spec = ckpt["backbone"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = build_backbone(spec["name"], **spec.get("kwargs", {}))
    backbone.eval()
    meta = {"method": "random", "modality": ckpt.get("modality"), "backbone": spec,
            "clip": ckpt.get("clip"), "init": "random", "seed": seed,
            "architecture_of": ckpt.get("method")}
    return backbone, meta


def _final_pool(backbone: nn.Module) -> nn.Module:
    pools = [m for m in backbone.modules() if isinstance(m, nn.AdaptiveAvgPool3d)]
    if not pools:
        raise ConfigError("protocol 'tclr' keeps the time axis and needs a backbone whose "
                          "pooling is an nn.AdaptiveAvgPool3d")
    return pools[-1]


@contextmanager
def clip_encoder(backbone: nn.Module, keep_time: bool) -> Iterator:
    """A function clips (B, C, T, H, W) -> features (B, D); time kept if asked (tclr)."""
    if not keep_time:
        yield backbone
        return
    captured: list[torch.Tensor] = []
    handle = _final_pool(backbone).register_forward_hook(
        lambda module, inputs, output: captured.append(inputs[0].mean(dim=(-2, -1)).flatten(1)))

    def encode(x: torch.Tensor) -> torch.Tensor:
        captured.clear()
        backbone(x)
        return captured[-1]

    try:
        yield encode
    finally:
        handle.remove()


def combine_clips(clip_features: torch.Tensor, l2_normalize: bool) -> torch.Tensor:
    """(n_clips, D) -> (D,): mean of the clip features (each L2-normalised first if asked)."""
    if l2_normalize:
        clip_features = nn.functional.normalize(clip_features, dim=1)
    return clip_features.mean(dim=0)


@torch.no_grad()
def encode_videos(backbone: nn.Module, dataset: WindowedVideos, protocol: Protocol,
                  device: torch.device, batch_size: int = 32, workers: int = 0,
                  desc: str = "export") -> tuple[np.ndarray, np.ndarray]:
    """Features (videos, D) float32 and clips per video, batching clips across videos."""
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers)
    features: list[Optional[torch.Tensor]] = [None] * len(dataset)
    counts = np.zeros(len(dataset), np.int32)
    pending: list[tuple[int, torch.Tensor]] = []  # (video index, its clips)

    def flush(encode) -> None:
        clips = torch.cat([c for _, c in pending]).to(device, non_blocking=True)
        out = torch.cat([encode(chunk) for chunk in clips.split(batch_size)]).float().cpu()
        offset = 0
        for index, c in pending:
            features[index] = combine_clips(out[offset:offset + len(c)], protocol.clip_l2_normalize)
            counts[index] = len(c)
            offset += len(c)
        pending.clear()

    with clip_encoder(backbone, protocol.keep_time) as encode, \
            ProgressBar(len(dataset), desc, "videos") as bar:
        queued = 0
        for index, clips in enumerate(loader):
            pending.append((index, clips))
            queued += len(clips)
            if queued >= batch_size:
                flush(encode)
                queued = 0
            bar.advance(1)
        if pending:
            flush(encode)
    return torch.stack(features).numpy().astype(np.float32), counts


def export_splits(backbone: nn.Module, modality: str, store: str | Path, manifest: pd.DataFrame,
                  protocol: Protocol, clip: dict, device: str | torch.device = "cpu",
                  batch_size: int = 32, workers: int = 0) -> dict[str, SplitFeatures]:
    """Features of the manifest's train and test videos, one :class:`SplitFeatures` each."""
    in_channels = getattr(backbone, "in_channels", CHANNELS[modality])
    if in_channels != CHANNELS[modality]:
        raise DataError(f"the encoder takes {in_channels} input channels but modality "
                        f"{modality!r} has {CHANNELS[modality]}")
    device = torch.device(device)
    backbone = backbone.to(device).eval()
    source = VideoSource(modality, store)
    out = {}
    for split, mode in (("train", protocol.train_windows), ("test", protocol.test_windows)):
        rows = manifest[manifest["split"] == split]
        if rows.empty:
            raise DataError(f"the manifest has no '{split}' videos")
        ids = rows["video_id"].tolist()
        check_ids(source, ids, modality)
        starts = functools.partial(window_starts, mode=mode, step=protocol.window_step,
                                   num_clips=protocol.num_clips)
        dataset = WindowedVideos(source, ids, clip, starts, protocol.crop_fraction)
        feats, counts = encode_videos(backbone, dataset, protocol, device, batch_size, workers,
                                      desc=f"export {split}")
        out[split] = SplitFeatures(feats, rows["label"].to_numpy(), ids,
                                   rows["group"].fillna("").astype(str).tolist(), counts)
    return out
