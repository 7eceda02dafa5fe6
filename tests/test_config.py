"""Parameters -> typed configs: unknown keys, wrong types, overrides, layering, and where each
value came from (the place every error message names)."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest
import yaml

from vsslpipe.config import (PACKAGE_DEFAULTS, check, from_dict, load_params, load_section,
                             origin_of, package_defaults_path, package_params, to_dict)
from vsslpipe.errors import ConfigError
from vsslpipe.registry import Registry

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Inner:
    tau: float = 0.25

    def validate(self) -> None:
        check(self.tau > 0, "tau", f"must be > 0, got {self.tau:g}")


@dataclass(frozen=True)
class Demo:
    name: str = "x"
    count: int = 1
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"
    path: Optional[Path] = None
    sizes: tuple = (1, 2)
    inner: Inner = field(default_factory=Inner)

    def validate(self) -> None:
        check(0 <= self.rate <= 1, "rate", f"must be in [0, 1], got {self.rate:g}")


def test_types_are_checked_and_converted():
    cfg = from_dict(Demo, {"rate": "1e-3", "count": 3, "path": "p/q", "mode": "b"}, "f: demo")
    assert cfg.rate == 1e-3 and cfg.path == Path("p/q") and cfg.mode == "b"
    with pytest.raises(ConfigError, match=r"^f: demo.count: expected an integer"):
        from_dict(Demo, {"count": 1.5}, "f: demo")
    with pytest.raises(ConfigError, match=r"^f: demo.mode: 'c' is not one of"):
        from_dict(Demo, {"mode": "c"}, "f: demo")
    with pytest.raises(ConfigError) as err:
        from_dict(Demo, {"cuont": 2}, "f: demo")
    assert str(err.value) == "f: demo.cuont: unknown parameter; valid: name, count, rate, mode, path, sizes, inner"
    assert to_dict(cfg)["path"] == "p/q"


def test_errors_name_the_file_key_or_option():
    params = {"demo": {"rate": 2, "inner": {"tau": -1}}}
    with pytest.raises(ConfigError) as err:
        load_section(Demo, "demo", {"demo": {"rate": 2}})
    assert str(err.value) == "params: demo.rate: must be in [0, 1], got 2"
    with pytest.raises(ConfigError) as err:   # a command-line value is named by its option
        load_section(Demo, "demo", {"demo": {}}, {"rate": 2.0})
    assert str(err.value) == "--rate: must be in [0, 1], got 2"
    with pytest.raises(ConfigError) as err:   # nested sections keep their key path
        load_section(Demo, "demo", {"demo": {"inner": params["demo"]["inner"]}})
    assert str(err.value) == "params: demo.inner.tau: must be > 0, got -1"
    cfg = load_section(Demo, "demo", {"demo": {"count": 4}}, {"name": "y"}, {"name": "--out"})
    assert origin_of(cfg, "name") == "--out" and origin_of(cfg, "count") == "params: demo.count"


def test_params_file_layers_over_the_shipped_defaults(tmp_path, monkeypatch):
    shipped = package_params()
    assert shipped["extract"]["short_side"] == 48 and "cvrl_rgb" in shipped["pretrain"]["experiments"]
    monkeypatch.chdir(tmp_path)
    alone = load_params(None)                     # no params.yaml here: the shipped defaults
    assert alone.data["extract"] == shipped["extract"] and alone.label("extract") == PACKAGE_DEFAULTS
    own = tmp_path / "mine.yaml"
    own.write_text("extract: {short_side: 128}\npretrain:\n  experiments:\n    mine: {epochs: 2}\n")
    loaded = load_params(own)
    assert loaded.data["extract"] == {"short_side": 128}       # a section replaces the shipped one
    assert loaded.data["flow"] == shipped["flow"]               # sections it lacks are shipped
    assert set(loaded.data["pretrain"]["experiments"]) == set(shipped["pretrain"]["experiments"]) | {"mine"}
    assert loaded.data["pretrain"]["defaults"] == shipped["pretrain"]["defaults"]
    assert loaded.label("extract") == str(own) and loaded.label("flow") == PACKAGE_DEFAULTS
    (tmp_path / "params.yaml").write_text("data: {name: here}\n")   # found in the folder
    assert load_params(None).data["data"] == {"name": "here"}
    with pytest.raises(ConfigError) as err:
        load_params(tmp_path / "none.yaml")
    assert str(err.value) == f"--params: {tmp_path / 'none.yaml'}: params file not found"
    own.write_text("demo: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(own)


def test_shipped_defaults_are_the_repository_params():
    assert package_defaults_path() == ROOT / "params.yaml"
    assert package_params() == yaml.safe_load((ROOT / "params.yaml").read_text())


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
