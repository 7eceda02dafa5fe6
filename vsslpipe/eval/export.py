"""Per-video features of a frozen encoder, following a protocol preset (see ``protocols``).

Every window of a video (the protocol decides which) is encoded in batches across videos; clip
features are combined into one vector per video by their mean (after per-clip L2 normalisation
for ``coclr``). ``tclr`` keeps the time axis: the feature map entering the backbone's final
``AdaptiveAvgPool3d`` is pooled over space only and flattened (channels x time).

DataLoader workers read only the frames the windows use, as uint8 (:mod:`.clips`); the device
normalises and resizes. On CUDA: pinned memory, ``non_blocking`` copies, bf16 autocast,
``channels_last_3d`` and cuDNN autotuning; on CPU the computation is plain fp32.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.modality import CHANNELS
from ..errors import ConfigError, DataError
from ..models import build_backbone
from ..models.checkpoint import EXPORT_NEEDS, check_video_encoder, load_backbone, load_checkpoint
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
    ckpt = load_checkpoint(checkpoint, needs=EXPORT_NEEDS)
    check_video_encoder(ckpt, checkpoint)
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


def loader_for(dataset, device: torch.device, workers: int, **kwargs) -> DataLoader:
    """Workers read uint8 windows; on CUDA they land in pinned memory, so the copies to the
    device (``non_blocking``) overlap with compute."""
    return DataLoader(dataset, num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=False, prefetch_factor=4 if workers else None, **kwargs)


def autocast(device: torch.device):
    """bf16 autocast on CUDA (tensor cores; features are read back as float32), fp32 elsewhere
    (CPU bf16 would change the features and is slower on most CPUs)."""
    return torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")


@contextmanager
def cudnn_autotune(device: torch.device) -> Iterator[None]:
    """cuDNN picks the fastest kernels for the (fixed) clip shape on CUDA; restored after."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = previous or device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on ``device`` in eval mode; on CUDA in ``channels_last_3d`` (cuDNN's fast
    layout for 3D convolutions) when every weight allows it."""
    model = model.to(device).eval()
    if device.type == "cuda":
        try:
            model = model.to(memory_format=torch.channels_last_3d)
        except RuntimeError:   # 4D weights (a 2D CNN inside): keep the default layout
            pass
    return model


@torch.no_grad()
def encode_windows(encode: Callable[[torch.Tensor], torch.Tensor], dataset: WindowedVideos,
                   combine: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                   batch_size: int = 32, workers: int = 0,
                   desc: str = "export") -> tuple[torch.Tensor, np.ndarray]:
    """``combine(encode(clips))`` per video, (videos, D) float32 on the host, and the clips per
    video. Clips are batched across videos in forward passes of exactly ``batch_size`` (one
    shape for cuDNN's autotuner; only the last is smaller); results stay on the device until the
    end: one host sync per call, not one per batch."""
    loader = loader_for(dataset, device, workers, batch_size=None, shuffle=False)
    counts = np.zeros(len(dataset), np.int64)
    waiting: list[torch.Tensor] = []   # network input not yet encoded, in video order
    queued = 0
    outputs: list[torch.Tensor] = []
    memory_format = torch.channels_last_3d if device.type == "cuda" else torch.contiguous_format

    def forward(clips: torch.Tensor) -> None:
        with autocast(device):
            outputs.append(encode(clips.to(memory_format=memory_format)).float())

    with ProgressBar(len(dataset), desc, "videos") as bar:
        for index, item in enumerate(loader):
            x = dataset.to_input(item, device)
            counts[index] = len(x)
            waiting.append(x)
            queued += len(x)
            while queued >= batch_size:
                clips = torch.cat(waiting) if len(waiting) > 1 else waiting[0]
                forward(clips[:batch_size])
                waiting = [clips[batch_size:]] if len(clips) > batch_size else []
                queued -= batch_size
            bar.advance(1)
        if waiting:
            forward(torch.cat(waiting))
    if not len(dataset):
        return torch.zeros(0), counts
    per_clip = torch.cat(outputs)
    results = [combine(c) for c in per_clip.split(counts.tolist())]
    return torch.stack(results).cpu(), counts.astype(np.int32)


def encode_videos(backbone: nn.Module, dataset: WindowedVideos, protocol: Protocol,
                  device: torch.device, batch_size: int = 32, workers: int = 0,
                  desc: str = "export") -> tuple[np.ndarray, np.ndarray]:
    """Features (videos, D) float32 and clips per video, following ``protocol``."""
    combine = functools.partial(combine_clips, l2_normalize=protocol.clip_l2_normalize)
    with clip_encoder(backbone, protocol.keep_time) as encode:
        features, counts = encode_windows(encode, dataset, combine, torch.device(device),
                                          batch_size, workers, desc)
    return features.numpy().astype(np.float32), counts


def export_splits(backbone: nn.Module, modality: str, store: str | Path, manifest: pd.DataFrame,
                  protocol: Protocol, clip: dict, device: str | torch.device = "cpu",
                  batch_size: int = 32, workers: int = 0) -> dict[str, SplitFeatures]:
    """Features of the manifest's train and test videos, one :class:`SplitFeatures` each."""
    in_channels = getattr(backbone, "in_channels", CHANNELS[modality])
    if in_channels != CHANNELS[modality]:
        raise DataError(f"the encoder takes {in_channels} input channels but modality "
                        f"{modality!r} has {CHANNELS[modality]}")
    device = torch.device(device)
    backbone = prepare_model(backbone, device)
    for split in ("train", "test"):   # before any work
        if not (manifest["split"] == split).any():
            raise DataError(f"export: no usable '{split}' videos (the manifest lists none, or "
                            f"every one was skipped); retrieval and the probes need features of "
                            f"both the train and the test split")
    source = VideoSource(modality, store)
    out = {}
    for split, mode in (("train", protocol.train_windows), ("test", protocol.test_windows)):
        rows = manifest[manifest["split"] == split]
        ids = rows["video_id"].tolist()
        check_ids(source, ids, modality)
        starts = functools.partial(window_starts, mode=mode, step=protocol.window_step,
                                   num_clips=protocol.num_clips)
        dataset = WindowedVideos(source, ids, clip, starts, protocol.crop_fraction)
        with cudnn_autotune(device):
            feats, counts = encode_videos(backbone, dataset, protocol, device, batch_size, workers,
                                          desc=f"export {split}")
        out[split] = SplitFeatures(feats, rows["label"].to_numpy(), ids,
                                   rows["group"].fillna("").astype(str).tolist(), counts)
    return out
