"""``params.yaml`` ``pretrain`` section: shared ``defaults`` plus named ``experiments``.

An experiment is a mapping of overrides deep-merged onto ``defaults`` (nested mappings such as
``augment`` and ``method_args`` merge key by key), then command-line options, then validated into
:class:`PretrainConfig`; ``method_args.<method>`` is validated by the method's own ``Config``
dataclass at the same time (:func:`load_experiment` with ``check_method``). Every value keeps its
place (``params.yaml: pretrain.experiments.cvrl_rgb.method_args.cvrl.temperature``,
``pretrain.defaults.lr``, ``--epochs``), so an error names the key that holds the bad value.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

from ..config import Origin, Params, check, from_dict, load_params, option_name
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
    # demo: no mirroring (it would merge MoveLeft/MoveRight, CW/CCW of the built-in classes)
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(overrides={"flip_p": 0.0}))
    method_args: dict = field(default_factory=dict)    # {method name: {hyper-parameter: value}}
    epochs: int = 40
    batch_size: int = 24
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9                 # SGD only
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    min_lr: float = 0.0                   # cosine schedule floor
    grad_clip: float = 0.0                # max gradient norm; 0 = off
    precision: Literal["auto", "fp32", "bf16"] = "auto"   # auto: bf16 on CUDA, fp32 on CPU
    channels_last: bool = True            # channels_last_3d on CUDA
    sync_bn: bool = False                 # distributed: SyncBN in the whole model
    seed: int = 0
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    workers: int = 1
    threads: int = 1                      # torch threads in the training process; 0 = default
    prefetch: bool = True                 # prepare (augment) the next batch in a thread
    # cpu: loader workers decode JPEG frames and cut the training views; gpu: workers send JPEG
    # bytes + crop boxes, the training process decodes and cuts on its device (RGB; flow is
    # always cut in the workers)
    decode: Literal["cpu", "gpu"] = "cpu"
    checkpoint_every: int = 5             # epochs between resumable checkpoints
    split: str = "train"
    out_dir: Path = Path("models")
    live_dir: Path = Path("dvclive")
    # Inputs: set from params.yaml `data` (or --frames/--flow/--manifest) by the stage, never
    # from this section (stages/pretrain.py).
    frames: Path = Path("data/frames")
    flow: Path = Path("data/flow")
    manifest: Path = Path("data/manifest.csv")

    def validate(self) -> None:
        for name in ("clip_len", "stride", "size", "epochs", "batch_size", "checkpoint_every"):
            check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr:g}")
        check(self.workers >= 0, "workers", f"must be >= 0, got {self.workers}")
        check(self.threads >= 0, "threads", f"must be >= 0 (0: torch's default), got {self.threads}")
        check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
              "device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        check(isinstance(self.method_args, Mapping) and all(
            isinstance(v, Mapping) for v in self.method_args.values()),
            "method_args", "must map method names to mappings of hyper-parameters")

    def method_args_for(self, name: Optional[str] = None) -> dict:
        return dict(self.method_args.get(name or self.method) or {})


# The input paths of PretrainConfig come from `data`, not from `pretrain`.
INPUT_FIELDS = ("frames", "flow", "manifest")


def deep_merge(base: Mapping, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def merge_with_origin(layers: list[tuple[Mapping, Origin]]) -> tuple[dict, Origin]:
    """Deep-merge ``layers`` (lowest first), keeping for every key the :class:`Origin` of the
    layer its value came from (a mapping merges key by key into a mapping, as :func:`deep_merge`;
    anything else replaces)."""
    values: dict = {}
    places: dict = {}
    for layer, origin in layers:
        for key, value in layer.items():
            child = origin.child(key)
            if isinstance(value, Mapping) and isinstance(values.get(key), Mapping):
                prev = places.get(key)
                prev = prev if isinstance(prev, Origin) else Origin(str(prev))
                values[key], places[key] = merge_with_origin([(values[key], prev), (value, child)])
            else:
                values[key] = dict(value) if isinstance(value, Mapping) else value
                places[key] = child if isinstance(value, Mapping) else origin.of(key)
    return values, Origin(layers[-1][1].prefix if layers else "", places)


def experiment_names(params: Union[None, str, Path, Mapping, Params]) -> list[str]:
    section = load_params(params).data.get("pretrain") or {}
    return list((section.get("experiments") or {}).keys())


def load_experiment(params: Union[None, str, Path, Mapping, Params], name: str,
                    overrides: Optional[Mapping[str, Any]] = None,
                    check_method: bool = True) -> PretrainConfig:
    """``pretrain.defaults`` <- ``pretrain.experiments.<name>`` <- non-None ``overrides``
    (command-line options ``--<key>``). With ``check_method`` the method and backbone names and
    the method's hyper-parameters are validated too (this imports torch)."""
    loaded = load_params(params)
    section = loaded.data.get("pretrain")
    label = loaded.label("pretrain")
    if not isinstance(section, Mapping):
        raise ConfigError(f"{label}: no 'pretrain' section")
    experiments = section.get("experiments") or {}
    if name not in experiments:
        raise ConfigError(f"-e/--experiment: unknown pretrain experiment {name!r}; "
                          f"valid: {', '.join(experiments) or '(none)'}")
    unknown = sorted(set(section) - {"defaults", "experiments"})
    if unknown:
        raise ConfigError(f"{label}: pretrain: unknown key(s) {', '.join(unknown)}; "
                          "valid: defaults, experiments")
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged, origin = merge_with_origin([
        (section.get("defaults") or {}, Origin(f"{loaded.sources.get('pretrain.defaults', label)}: "
                                               "pretrain.defaults")),
        (experiments[name] or {}, Origin(f"{loaded.sources.get(f'pretrain.experiments.{name}', label)}"
                                         f": pretrain.experiments.{name}")),
        (cli, Origin("", {k: option_name(k) for k in cli})),
    ])
    misplaced = sorted(set(merged) & set(INPUT_FIELDS) - set(cli))
    if misplaced:
        raise ConfigError(f"{origin.of(misplaced[0])}: the inputs are set in the `data` section "
                          f"(data.{misplaced[0]}) or with --{misplaced[0]}, not per experiment")
    origin = Origin(f"{label}: pretrain.experiments.{name}", origin.fields)
    cfg = from_dict(PretrainConfig, merged, origin)
    if check_method:
        check_method_args(cfg, origin)
    return cfg


def check_method_args(cfg: PretrainConfig, origin: Origin) -> None:
    """The method and backbone exist, and ``method_args.<method>`` is valid for the method."""
    from ..methods import METHODS
    from ..models import BACKBONES

    if cfg.method not in METHODS:
        raise ConfigError(f"{origin.of('method')}: unknown method {cfg.method!r}; "
                          f"valid: {', '.join(METHODS.names())}")
    if cfg.backbone not in BACKBONES:
        raise ConfigError(f"{origin.of('backbone')}: unknown backbone {cfg.backbone!r}; "
                          f"valid: {', '.join(BACKBONES.names())}")
    config_cls = getattr(METHODS.get(cfg.method), "Config", None)
    if config_cls is not None:
        from_dict(config_cls, cfg.method_args_for(), origin.child("method_args").child(cfg.method))
