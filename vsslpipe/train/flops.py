"""Training and inference FLOPs of the methods, counted on the real backbones built on PyTorch's
meta device (shapes only, no compute, no memory), for GPU-hour estimates (``tables plan``,
bench scripts).

``torch.utils.flop_counter.FlopCounterMode`` counts the forward pass of one clip. Per training
sample (one video of a batch) each method's passes are then added up: the trained encoder's
forward + backward is taken as 3x its forward, a momentum (key) or frozen encoder's as 1x.
Heads, losses, queues and augmentation are left out (a few percent for video backbones). These
are estimates: achieved throughput depends on the GPU, precision, data loading and batch size.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping, Optional

CHANNELS = {"rgb": 3, "flow": 2}
# One H100 at 40 % of its dense bf16 peak: the rate assumed for GPU-hours (an estimate).
ACHIEVED_FLOPS = 320e12
TRAIN_FACTOR, FORWARD_FACTOR = 3.0, 1.0


def _freeze(args: Optional[Mapping]) -> tuple:
    return tuple(sorted((k, _freeze(v) if isinstance(v, Mapping) else v)
                        for k, v in (args or {}).items()))


@functools.lru_cache(maxsize=None)
def _backbone(name: str, in_channels: int, args: tuple, clip_len: int, size: int) -> tuple[float, int, int]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..models import build_backbone

    with torch.device("meta"):
        model = build_backbone(name, in_channels=in_channels, **dict(args))
        clip = torch.empty(1, in_channels, clip_len, size, size)
    with FlopCounterMode(display=False) as counter:
        model(clip)
    params = sum(p.numel() for p in model.parameters())
    return float(counter.get_total_flops()), params, int(getattr(model, "feature_dim", 0))


def backbone_forward(name: str, modality: str, clip_len: int, size: int,
                     args: Optional[Mapping] = None) -> float:
    """Forward FLOPs of one ``(C, clip_len, size, size)`` clip."""
    return _backbone(name, CHANNELS[modality], _freeze(args), clip_len, size)[0]


def backbone_params(name: str, modality: str, args: Optional[Mapping] = None) -> tuple[int, int]:
    """(parameter count, feature dimension) of a backbone."""
    _, params, dim = _backbone(name, CHANNELS[modality], _freeze(args),
                               1 if name == "frame_cnn" else 16, 112)
    return params, dim


@functools.lru_cache(maxsize=None)
def _transformer(frame_cnn: str, size: int, frames: int, targs: tuple) -> tuple[float, float]:
    """(frame CNN forward per frame, temporal transformer forward per clip)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..models.video_transformer import FrameCNN, TemporalTransformer

    kwargs = {k: v for k, v in targs if k in ("token_dim", "layers", "heads", "mlp_ratio",
                                               "dropout", "pooling")}
    with torch.device("meta"):
        cnn = FrameCNN(3, frame_cnn)
        temporal = TemporalTransformer(cnn.feature_dim, max_frames=max(64, frames), **kwargs)
        image = torch.empty(1, 3, size, size)
        feats = torch.empty(1, frames, cnn.feature_dim)
    with FlopCounterMode(display=False) as c1:
        cnn.embed_frames(image)
    with FlopCounterMode(display=False) as c2:
        temporal(feats)
    return float(c1.get_total_flops()), float(c2.get_total_flops())


@dataclass(frozen=True)
class TrainingCost:
    per_sample: float        # training FLOPs per video per epoch
    parts: tuple             # (what, FLOPs) making up per_sample


def _cvtcl_ltcl(cfg, args: Mapping, modality: str, factor_q: float) -> list:
    subs = int(args.get("num_subclips", 4))
    length = args.get("subclip_len") or cfg.clip_len // subs
    f = backbone_forward(cfg.backbone, modality, length, cfg.size, cfg.backbone_args)
    return [(f"LTCL sub-clip query ({modality})", factor_q * f),
            (f"LTCL {subs} key sub-clips ({modality})", subs * FORWARD_FACTOR * f)]


def training_cost(cfg: Any) -> TrainingCost:
    """FLOPs per training sample of a resolved ``PretrainConfig`` (see the module docstring)."""
    from ..methods.cvtcl import CvtclConfig

    method, args = cfg.method, cfg.method_args_for()
    f = backbone_forward(cfg.backbone, cfg.modality, cfg.clip_len, cfg.size, cfg.backbone_args)
    parts: list = []
    if method == "cvrl":
        parts = [("2 views, trained encoder", 2 * TRAIN_FACTOR * f)]
    elif method in ("moco", "image_moco"):
        clips = int(args.get("frames_per_video", 1)) if method == "image_moco" else 1
        parts = [("query, trained", clips * TRAIN_FACTOR * f), ("key, momentum", clips * f)]
    elif method in ("cvtcl", "coclr"):
        full = {**CvtclConfig().__dict__, **args}
        ltcl = method == "cvtcl" and (full["use_local"] or full["use_lt"])
        if full["stage"] != "cotrain":
            parts = [("query, trained", TRAIN_FACTOR * f), ("key, momentum", f)]
            if ltcl:
                parts += _cvtcl_ltcl(cfg, full, cfg.modality, TRAIN_FACTOR)
        else:
            fs = {m: backbone_forward(cfg.backbone, m, cfg.clip_len, cfg.size, cfg.backbone_args)
                  for m in CHANNELS}
            for trained, frozen in (("rgb", "flow"), ("flow", "rgb")):   # half the epochs each
                parts += [(f"{trained} phase: query, trained", 0.5 * TRAIN_FACTOR * fs[trained]),
                          (f"{trained} phase: key, momentum", 0.5 * fs[trained]),
                          (f"{trained} phase: frozen {frozen} stream", 0.5 * fs[frozen])]
                if method == "cvtcl" and full[f"ltcl_{trained}"] and ltcl:
                    parts += [(w, 0.5 * v) for w, v in _cvtcl_ltcl(cfg, full, trained, TRAIN_FACTOR)]
            per_phase = int(full["epochs_per_phase"])
            parts.append(("memory banks re-embedded each phase", (fs["rgb"] + fs["flow"]) / per_phase))
    elif method == "cacl":
        from ..losses.cacl import networks

        pairs = args.get("pairs", "all")
        parts = [("CNN: 2 views x (clip + shuffled), trained", 4 * TRAIN_FACTOR * f),
                 ("CNN: 2 views x (clip + shuffled), momentum", 4 * f)]
        if "T" in networks(pairs):
            t = dict(args.get("transformer") or {})
            frame, temporal = _transformer(t.get("frame_cnn", "resnet50"), cfg.size, cfg.clip_len,
                                           _freeze(t))
            parts += [("frozen frame CNN: 2 views x frames", 2 * cfg.clip_len * frame),
                      ("transformer: 2 views x (clip + shuffled), trained", 4 * TRAIN_FACTOR * temporal),
                      ("transformer: 2 views x (clip + shuffled), momentum", 4 * temporal)]
    else:
        parts = [("one clip, trained (unknown method: a guess)", TRAIN_FACTOR * f)]
    return TrainingCost(sum(v for _, v in parts), tuple(parts))


def gpu_hours(flops: float) -> float:
    """Hours on one GPU at :data:`ACHIEVED_FLOPS` (an estimate)."""
    return flops / ACHIEVED_FLOPS / 3600.0
