"""Options shared by every stage, defined once, and the error handling every command uses."""
from __future__ import annotations

import functools
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer

from vsslpipe.errors import VsslpipeError

F = TypeVar("F", bound=Callable[..., Any])

ParamsOpt = Annotated[
    Path, typer.Option("--params", help="params.yaml to read this stage's defaults from.")
]
WorkersOpt = Annotated[
    Optional[int], typer.Option("--workers", "-j", min=1,
                                help="Worker processes [default: from params.yaml].")
]
DeviceOpt = Annotated[
    Optional[str], typer.Option("--device", help="cpu, cuda or cuda:N [default: from params.yaml].")
]


def report_user_errors(func: F) -> F:
    """Turn a VsslpipeError into one line on stderr and exit status 1 (VSSLPIPE_DEBUG=1: traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except VsslpipeError as exc:
            if os.environ.get("VSSLPIPE_DEBUG"):
                traceback.print_exc()
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def echo(message: str) -> None:
    """Stage summaries go to stderr so stdout stays clean for piping."""
    print(message, file=sys.stderr, flush=True)
