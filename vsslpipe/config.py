"""Parameters -> frozen, validated dataclasses that remember where each value came from.

Three layers, lowest first:

1. **The package's defaults**: the repository's ``params.yaml``, shipped inside the package as
   ``vsslpipe/defaults.yaml`` (see ``setup.py``; a source checkout reads ``params.yaml`` itself).
   Every stage dataclass carries the same values as its defaults (a test keeps them equal), so a
   section missing from a params file, or a key missing from a section, means the shipped value.
2. **A params file**: ``--params PATH``, or ``./params.yaml`` when the current folder has one.
   A section it holds replaces the shipped section (keys it leaves out take the dataclass
   defaults); ``pretrain.experiments`` is the exception: experiments are added to, or replace by
   name, the shipped ones, so a small project file can define one experiment and still run the
   shipped ones.
3. **Command-line options** override single values.

Errors name where the bad value came from — ``--max-failed-fraction: must be in [0, 1], got 2``
or ``params.yaml: extract.max_failed_fraction: ...`` — through :class:`Origin`, which maps each
key of a section to its place (a file and key path, or an option).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Type, TypeVar, Union

import yaml

from .errors import ConfigError

C = TypeVar("C")

DEFAULT_PARAMS = Path("params.yaml")
PACKAGE_DEFAULTS = "vsslpipe defaults"      # how messages name the shipped defaults
# A loaded config's Origin, by id (kept off the instance: code that walks a dataclass's
# __dict__ must see its fields only); removed when the config is garbage-collected.
_ORIGINS: dict[int, "Origin"] = {}


class FieldError(ConfigError):
    """A validation failure of one field (dotted for nested dataclasses): the loader prefixes it
    with where that field's value came from."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field, self.message = field_name, message


def check(condition: bool, field_name: str, message: str) -> None:
    """Raise :class:`FieldError` for ``field_name`` unless ``condition`` holds."""
    if not condition:
        raise FieldError(field_name, message)


# -- where values come from ---------------------------------------------------------------------
@dataclass(frozen=True)
class Origin:
    """Where the keys of one mapping came from: ``prefix`` (``"params.yaml: extract"``) for keys
    with no entry in ``fields``; ``fields`` maps a key to its exact place (an option such as
    ``"--epochs"``) or to the :class:`Origin` of a nested mapping."""

    prefix: str
    fields: Mapping[str, Union[str, "Origin"]] = field(default_factory=dict)

    def of(self, key: str) -> str:
        """The place of ``key`` (dotted keys walk nested mappings)."""
        head, _, rest = key.partition(".")
        if rest:
            return self.child(head).of(rest)
        value = self.fields.get(key)
        if isinstance(value, Origin):
            return value.prefix
        return value if isinstance(value, str) else _join(self.prefix, key)

    def child(self, key: str) -> "Origin":
        value = self.fields.get(key)
        if isinstance(value, Origin):
            return value
        return Origin(value if isinstance(value, str) else _join(self.prefix, key))


def _join(prefix: str, key: str) -> str:
    return f"{prefix}{key}" if prefix.endswith((": ", ".")) else f"{prefix}.{key}"


def origin_of(cfg: Any, key: str) -> str:
    """Where field ``key`` of a loaded config came from (``--frames``, ``params.yaml: data.frames``)."""
    origin = config_origin(cfg)
    return origin.of(key) if origin is not None else key


def config_origin(cfg: Any) -> Optional["Origin"]:
    return _ORIGINS.get(id(cfg))


def remember_origin(cfg: Any, origin: "Origin") -> None:
    _ORIGINS[id(cfg)] = origin
    weakref.finalize(cfg, _ORIGINS.pop, id(cfg), None)


def option_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def cli_origin(prefix: str, overrides: Mapping[str, Any], options: Optional[Mapping[str, str]] = None,
               ) -> Origin:
    """The origin of a section whose non-None ``overrides`` came from command-line options
    (``--field-name`` unless ``options`` names another)."""
    options = options or {}
    return Origin(prefix, {k: options.get(k, option_name(k)) for k, v in overrides.items()
                           if v is not None})


# -- params files -------------------------------------------------------------------------------
def package_defaults_path() -> Optional[Path]:
    """The shipped defaults: ``vsslpipe/defaults.yaml`` in an installed package, else the
    ``params.yaml`` of the source checkout the package is imported from."""
    here = Path(__file__).resolve().parent
    shipped = here / "defaults.yaml"
    if shipped.is_file():
        return shipped
    checkout = here.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "params.yaml").is_file():
        return checkout / "params.yaml"
    return None


@functools.lru_cache(maxsize=None)
def _package_params() -> tuple[dict, str]:
    path = package_defaults_path()
    if path is None:
        return {}, PACKAGE_DEFAULTS
    return _read_yaml(path), PACKAGE_DEFAULTS


def package_params() -> dict:
    """The shipped defaults as a dict (a copy)."""
    return copy.deepcopy(_package_params()[0])


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def params_path(path: Optional[str | Path]) -> Optional[Path]:
    """The params file to read: ``path`` if given (it must exist), else ``./params.yaml`` when
    present, else None (the shipped defaults alone)."""
    if path is None:
        return DEFAULT_PARAMS if DEFAULT_PARAMS.is_file() else None
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--params: {path}: params file not found")
    return path


@dataclass
class Params:
    """Layered parameters: ``data`` (the merged dict) and the label of the file each section
    (and each pretrain experiment) came from, for messages."""

    data: dict
    sources: dict = field(default_factory=dict)      # section or "pretrain.experiments.X" -> label
    path: Optional[Path] = None

    def label(self, section: str) -> str:
        return self.sources.get(section, PACKAGE_DEFAULTS)

    def section_origin(self, section: str) -> Origin:
        return Origin(f"{self.label(section)}: {section}")


def load_params(path: Union[None, str, Path, Mapping, Params] = None) -> Params:
    """The shipped defaults layered with the params file (see the module docstring)."""
    if isinstance(path, Params):
        return path
    if isinstance(path, Mapping):   # already-read params (table rows validate in memory)
        data = copy.deepcopy(dict(path))
        return Params(data, {k: "params" for k in data}, None)
    user_path = params_path(path)
    base, base_label = _package_params()
    data = copy.deepcopy(base)
    sources = {k: base_label for k in base}
    if user_path is None:
        return Params(data, sources, None)
    if package_defaults_path() is not None and user_path.resolve() == package_defaults_path():
        return Params(data, {k: str(user_path) for k in data}, user_path)
    label = str(user_path)
    for section, value in _read_yaml(user_path).items():
        sources[section] = label
        if section == "pretrain" and isinstance(value, Mapping) and isinstance(data.get(section), Mapping):
            shipped = data["pretrain"]
            merged = dict(value)
            if "defaults" not in value:
                merged["defaults"] = shipped.get("defaults")
                sources["pretrain.defaults"] = base_label
            experiments = dict(shipped.get("experiments") or {})
            for name in experiments:
                sources.setdefault(f"pretrain.experiments.{name}", base_label)
            for name, exp in (value.get("experiments") or {}).items():
                experiments[name] = exp
                sources[f"pretrain.experiments.{name}"] = label
            merged["experiments"] = experiments
            value = merged
        data[section] = copy.deepcopy(value)
    return Params(data, sources, user_path)


def read_params(path: Union[None, str, Path, Mapping, Params] = None) -> dict:
    """The layered parameters as a plain dict."""
    return load_params(path).data


# -- typed sections -----------------------------------------------------------------------------
def _coerce(value: Any, annotation: Any, where: str, origin: Optional[Origin] = None) -> Any:
    """Check ``value`` against a (simple) type annotation, converting where it is lossless."""
    origin_ = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin_ in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, origin)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin_ is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin_ in (list, tuple):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin_ is tuple else items
    if origin_ is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if annotation is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{where}: expected a path, got {value!r}")
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, origin or Origin(where))
    return value


def from_dict(cls: Type[C], values: Mapping[str, Any], where: Union[str, Origin]) -> C:
    """Build dataclass ``cls`` from ``values``; unknown keys, bad types and failed validation
    raise ConfigError naming the place of the value (``where``: a prefix or an :class:`Origin`)."""
    origin = where if isinstance(where, Origin) else Origin(where)
    fields_ = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields_))
    if len(unknown) == 1:
        raise ConfigError(f"{origin.of(unknown[0])}: unknown parameter; valid: {', '.join(fields_)}")
    if unknown:
        raise ConfigError(f"{origin.prefix}: unknown parameters {', '.join(unknown)}; "
                          f"valid: {', '.join(fields_)}")
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(value, hints[name], origin.of(name), origin.child(name))
    missing = [
        n for n, f in fields_.items()
        if n not in kwargs and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise ConfigError(f"{origin.prefix}: missing parameter(s) {', '.join(missing)}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except FieldError as exc:
            raise ConfigError(f"{origin.of(exc.field)}: {exc.message}") from None
        except ConfigError as exc:
            raise ConfigError(f"{origin.prefix}: {exc}") from None
    remember_origin(obj, origin)
    return obj


def load_section(cls: Type[C], section: str, params: Union[None, str, Path, Mapping, Params] = None,
                 overrides: Optional[Mapping[str, Any]] = None,
                 options: Optional[Mapping[str, str]] = None) -> C:
    """Read ``section`` of the layered parameters into ``cls``, then apply the non-None
    ``overrides`` (command-line values; ``options`` names the option of a key whose option is
    not ``--key``)."""
    loaded = load_params(params)
    values = loaded.data.get(section) or {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{loaded.label(section)}: section {section!r} must be a mapping")
    merged = dict(values)
    for key, value in (overrides or {}).items():
        if value is not None:
            merged[key] = value
    origin = cli_origin(f"{loaded.label(section)}: {section}", overrides or {}, options)
    return from_dict(cls, merged, origin)


def to_dict(cfg: Any) -> dict:
    """A dataclass config as plain JSON/YAML-able values (paths as strings)."""

    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        return v

    return plain(cfg)


def default_of(cls: type, key: str) -> Any:
    """The shipped default of a config field (for --help)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[key]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None
