"""Options shared by every stage, defined once, and the error handling every command uses."""
from __future__ import annotations

import functools
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer

from vsslpipe.config import default_of
from vsslpipe.errors import VsslpipeError

F = TypeVar("F", bound=Callable[..., Any])

ParamsOpt = Annotated[
    Optional[Path], typer.Option(
        "--params", show_default=False,
        help="Params file to read [default: ./params.yaml when the folder has one, else the "
             "package's shipped defaults].")
]


def shipped(cls: type, key: str, section: str) -> str:
    """``[default: VALUE; params: section.key]`` for an option's help: the shipped default and the
    params key the option overrides."""
    value = default_of(cls, key)
    if isinstance(value, (list, tuple)):
        value = ", ".join(map(str, value))
    return f"[default: {value}; params: {section}.{key}]"


def workers_opt(cls: type, section: str) -> Any:
    return typer.Option("--workers", "-j", show_default=False,
                        help=f"Worker processes. {shipped(cls, 'workers', section)}")


def device_opt(cls: type, section: str) -> Any:
    return typer.Option("--device", show_default=False,
                        help=f"auto, cpu, cuda or cuda:N. {shipped(cls, 'device', section)}")


def report_user_errors(func: F) -> F:
    """Turn a VsslpipeError into one line on stderr and exit status 1 (VSSLPIPE_DEBUG=1: traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except VsslpipeError as exc:
            if os.environ.get("VSSLPIPE_DEBUG"):
                traceback.print_exc()
            print(f"error: {one_line(exc)}", file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def one_line(exc: BaseException) -> str:
    """The message of a user error; one raised in a DataLoader worker comes back wrapped in
    "Caught DataError in DataLoader worker ... Original Traceback ..." (torch): keep its own line."""
    text = str(exc)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        name = type(exc).__name__
        for prefix in (f"{type(exc).__module__}.{name}: ", f"{name}: "):
            if last.startswith(prefix):
                return last[len(prefix):]
        return last
    return text


def echo(message: str) -> None:
    """Stage summaries go to stderr so stdout stays clean for piping."""
    print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    echo(f"warning: {message}")


def under_dvc() -> bool:
    """True when DVC runs this command as a pipeline stage (``dvc repro`` / ``dvc exp run``):
    DVC then owns the stage's outputs (it removes them before the command runs)."""
    return bool(os.environ.get("DVC_STAGE"))


def features_arg(read: Callable[[Path], Any], path: Path) -> Any:
    """A features file given with --features, its problems reported against the option."""
    try:
        return read(path)
    except VsslpipeError as exc:
        raise type(exc)(f"--features: {exc}") from None
