"""params.yaml sections -> typed configs: unknown keys, wrong types, overrides."""
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import pytest

from vsslpipe.config import from_dict, load_section, to_dict
from vsslpipe.errors import ConfigError
from vsslpipe.registry import Registry


@dataclass(frozen=True)
class Demo:
    name: str = "x"
    count: int = 1
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"
    path: Optional[Path] = None
    sizes: tuple = (1, 2)


def test_types_are_checked_and_converted(tmp_path):
    cfg = from_dict(Demo, {"rate": "1e-3", "count": 3, "path": "p/q", "mode": "b"}, "f: demo")
    assert cfg.rate == 1e-3 and cfg.path == Path("p/q") and cfg.mode == "b"
    with pytest.raises(ConfigError, match=r"f: demo.count: expected an integer"):
        from_dict(Demo, {"count": 1.5}, "f: demo")
    with pytest.raises(ConfigError, match=r"demo.mode: 'c' is not one of"):
        from_dict(Demo, {"mode": "c"}, "f: demo")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) cuont; valid: name, count"):
        from_dict(Demo, {"cuont": 2}, "f: demo")
    assert to_dict(cfg)["path"] == "p/q"


def test_load_section_with_overrides(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("demo:\n  count: 4\nother: {}\n")
    assert load_section(Demo, "demo", params).count == 4
    assert load_section(Demo, "demo", params, {"count": 9, "name": None}).count == 9
    assert load_section(Demo, "missing_section", params).count == 1
    with pytest.raises(ConfigError, match="params file not found"):
        load_section(Demo, "demo", tmp_path / "none.yaml")
    params.write_text("demo: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_section(Demo, "demo", params)


def test_registry_lists_valid_names():
    reg = Registry("widget")

    @reg.register("small")
    def small(size=1):
        return ("small", size)

    assert reg.build("small", size=2) == ("small", 2)
    with pytest.raises(ConfigError, match="unknown widget 'big'; valid: small"):
        reg.build("big")
    with pytest.raises(ValueError):
        reg.register("small")(small)
