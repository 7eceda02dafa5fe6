"""Dotted-key overrides as ``dvc exp run -S`` applies them to params.yaml, and their layering."""
from __future__ import annotations

import copy
from typing import Any, Mapping

from ..errors import ConfigError


def get_dotted(params: Mapping, key: str, default: Any = None) -> Any:
    """The value at dotted ``key`` of a nested params tree (``default`` where a part is absent)."""
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def set_dotted(params: dict, key: str, value: Any, must_exist: bool, where: str) -> None:
    node = params
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: {'.'.join(parts[:i])} is not a mapping (key {key!r})")
        if part not in node:
            if must_exist:
                raise ConfigError(f"{where}: unknown parameter {key!r} (no {'.'.join(parts[:i + 1])!r} "
                                  "in params.yaml)")
            node[part] = {}
        node = node[part]
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: {'.'.join(parts[:-1])} is not a mapping (key {key!r})")
    if must_exist and parts[-1] not in node:
        raise ConfigError(f"{where}: unknown parameter {key!r}")
    # A copy: a later key may write into this value (``a: {}`` then ``a.b: 1``), and the
    # definition it came from must stay as written.
    node[parts[-1]] = copy.deepcopy(value)


def merge_layers(*layers: Mapping[str, Any]) -> dict:
    """Override layers, later on top. A key set again moves to the end, so that it also lands
    after the keys of lower layers below it (a later ``a: {}`` clears an earlier ``a.b``)."""
    out: dict = {}
    for layer in layers:
        for key, value in layer.items():
            out.pop(key, None)
            out[key] = value
    return out


def flatten_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A non-empty mapping value becomes one key per leaf, so it merges into what params.yaml
    holds (as DVC's ``-S`` does); an empty mapping stays, and replaces."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten_overrides({f"{key}.{k}": v for k, v in value.items()}))
        else:
            flat[key] = value
    return flat


def may_add(key: str) -> bool:
    """Keys that may be new: pretrain experiments and their keys (validated by resolving them),
    and ``pretrain_frames`` keys (that section takes any pretrain key, e.g. ``seed``)."""
    return key.startswith(("pretrain.", "pretrain_frames."))


def apply_overrides(params: Mapping, overrides: Mapping[str, Any], where: str,
                    strict: bool = True) -> dict:
    """params with ``overrides`` applied as ``dvc exp run -S`` applies them (mappings merge key
    by key, an empty mapping replaces); with ``strict``, other keys must exist already."""
    out = copy.deepcopy(dict(params))
    for key, value in flatten_overrides(overrides).items():
        set_dotted(out, key, value, must_exist=strict and not may_add(key), where=where)
    return out
