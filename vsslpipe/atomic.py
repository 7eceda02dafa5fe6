"""Outputs that appear whole or not at all: write ``<name>.tmp-<host>-<pid>-<rand>``, then rename.

A rerun removes temporaries left by a killed run (:func:`remove_stale_temporaries`); an orphan
still writing one of them loses it (its rename fails), which is harmless: the rerun redoes that
unit of work deterministically.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Iterator

TMP_MARK = ".tmp-"


def temp_name(path: str | Path) -> Path:
    path = Path(path)
    tag = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return path.with_name(f"{path.name}{TMP_MARK}{tag}")


def is_temporary(path: str | Path) -> bool:
    return TMP_MARK in Path(path).name


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, obj: object) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def remove_stale_temporaries(directory: str | Path, prefix: str = "", dirs: bool = False) -> int:
    """Delete every temporary (``*.tmp-*``) under ``directory`` whose name starts with ``prefix``
    (files; folders too with ``dirs``: a store moved aside by a killed run)."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    removed = 0
    for entry in directory.iterdir():
        if not (entry.name.startswith(prefix) and is_temporary(entry)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            if dirs:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed += 1
    return removed
