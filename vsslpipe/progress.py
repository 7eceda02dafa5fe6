"""Progress reporting: a rich bar on a terminal, a plain log line every few seconds otherwise.

Carriage-return bars fill CI logs and DVC's captured output, so when stderr is not a terminal we
print ``<desc>: n/total (rate unit/s)`` lines at most every ``log_every_s`` seconds.
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")


class ProgressBar:
    """Counts work items; ``advance(n, **postfix)`` after each; use as a context manager."""

    def __init__(self, total: Optional[int], desc: str, unit: str = "it",
                 log_every_s: float = 10.0, enabled: bool = True):
        self.total, self.desc, self.unit = total, desc, unit
        self.count = 0
        self.start = time.perf_counter()
        self._last_log = self.start
        self._log_every_s = log_every_s
        self._enabled = enabled
        self._rich = None
        self._task = None
        self._postfix = ""
        if enabled and sys.stderr.isatty():
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._rich = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[postfix]}"), transient=False,
            )

    def __enter__(self) -> "ProgressBar":
        if self._rich is not None:
            self._rich.start()
            self._task = self._rich.add_task(self.desc, total=self.total, rate="", postfix="")
        return self

    @property
    def rate(self) -> float:
        return self.count / max(time.perf_counter() - self.start, 1e-9)

    def advance(self, n: int = 1, **postfix: object) -> None:
        self.count += n
        if postfix:
            self._postfix = " ".join(f"{k}={v}" for k, v in postfix.items())
        if self._rich is not None:
            self._rich.update(self._task, advance=n, rate=f"{self.rate:.1f} {self.unit}/s",
                              postfix=self._postfix)
        elif self._enabled:
            now = time.perf_counter()
            if now - self._last_log >= self._log_every_s:
                self._last_log = now
                self._log()

    def _log(self) -> None:
        total = f"/{self.total}" if self.total is not None else ""
        print(f"{self.desc}: {self.count}{total} ({self.rate:.1f} {self.unit}/s) {self._postfix}",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()
        elif self._enabled and self.count:
            self._log()


def track(items: Iterable[T], total: Optional[int] = None, desc: str = "", unit: str = "it",
          enabled: bool = True) -> Iterator[T]:
    """Iterate ``items`` with a progress bar."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with ProgressBar(total, desc, unit, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.advance()
