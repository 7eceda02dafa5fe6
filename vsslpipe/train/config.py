"""``params.yaml`` ``pretrain`` section: shared ``defaults`` plus named ``experiments``.

An experiment is a mapping of overrides deep-merged onto ``defaults`` (nested mappings such as
``augment`` and ``method_args`` merge key by key), then validated into :class:`PretrainConfig`.
``method_args.<method>`` holds each method's hyper-parameters (validated by the method's own
``Config`` dataclass when it is built).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from ..config import from_dict, read_params
from ..data.augment_config import AugmentConfig
from ..errors import ConfigError


@dataclass(frozen=True)
class PretrainConfig:
    method: str = "cvrl"
    modality: Literal["rgb", "flow"] = "rgb"
    backbone: str = "tiny3d"
    backbone_args: dict = field(default_factory=dict)
    clip_len: int = 8
    stride: int = 2
    size: int = 48
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    method_args: dict = field(default_factory=dict)    # {method name: {hyper-parameter: value}}
    epochs: int = 10
    batch_size: int = 32
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9                 # SGD only
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.0
    min_lr: float = 0.0                   # cosine schedule floor
    grad_clip: float = 0.0                # max gradient norm; 0 = off
    precision: Literal["auto", "fp32", "bf16"] = "auto"   # auto: bf16 on CUDA, fp32 on CPU
    channels_last: bool = True            # channels_last_3d on CUDA
    sync_bn: bool = False                 # distributed: SyncBN in the whole model
    seed: int = 0
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    workers: int = 2
    threads: int = 0                      # torch threads in the training process; 0 = default
    prefetch: bool = True                 # prepare (augment) the next batch in a thread
    checkpoint_every: int = 1             # epochs between resumable checkpoints
    frames: Path = Path("data/frames.h5")
    flow: Path = Path("data/flow.h5")
    manifest: Path = Path("data/manifest.csv")
    split: str = "train"
    out_dir: Path = Path("models")
    live_dir: Path = Path("dvclive")

    def validate(self) -> None:
        for name in ("clip_len", "stride", "size", "epochs", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.lr <= 0:
            raise ConfigError("lr must be > 0")
        if self.workers < 0 or self.threads < 0:
            raise ConfigError("workers and threads must be >= 0")
        if not isinstance(self.method_args, Mapping) or not all(
                isinstance(v, Mapping) for v in self.method_args.values()):
            raise ConfigError("method_args must map method names to mappings")

    def method_args_for(self, name: Optional[str] = None) -> dict:
        return dict(self.method_args.get(name or self.method) or {})


def deep_merge(base: Mapping, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def experiment_names(params: str | Path) -> list[str]:
    section = read_params(params).get("pretrain") or {}
    return list((section.get("experiments") or {}).keys())


def load_experiment(params: str | Path, name: str,
                    overrides: Optional[Mapping[str, Any]] = None) -> PretrainConfig:
    """``pretrain.defaults`` <- ``pretrain.experiments.<name>`` <- non-None ``overrides``.

    ``params`` is a params file or an already-read mapping (table rows validate in memory).
    """
    section = read_params(params).get("pretrain")
    if isinstance(params, Mapping):
        params = "params"
    if not isinstance(section, Mapping):
        raise ConfigError(f"{params}: no 'pretrain' section")
    experiments = section.get("experiments") or {}
    if name not in experiments:
        raise ConfigError(f"{params}: unknown pretrain experiment {name!r}; "
                          f"valid: {', '.join(experiments) or '(none)'}")
    unknown = sorted(set(section) - {"defaults", "experiments"})
    if unknown:
        raise ConfigError(f"{params}: pretrain: unknown key(s) {', '.join(unknown)}; "
                          "valid: defaults, experiments")
    merged = deep_merge(section.get("defaults") or {}, experiments[name] or {})
    merged = deep_merge(merged, {k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(PretrainConfig, merged, f"{params}: pretrain.experiments.{name}")
