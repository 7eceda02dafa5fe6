"""Run commands side by side, at most one per GPU (or N at a time), each with its own log.

Each task's environment gets ``VSSLPIPE_SCRATCH`` (pretrain resume scratch that outlives a
failed temporary experiment) and, with GPUs, ``CUDA_VISIBLE_DEVICES=<its GPU>``: a process sees
exactly one device, so ``cuda`` in it is that GPU. A failed task does not stop the others; its
last error line is kept for the summary. Threads only wait on subprocesses here.
"""
from __future__ import annotations

import os
import queue
import random
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

SCRATCH_ENV = "VSSLPIPE_SCRATCH"       # read by vsslpipe/train/experiment.py
STATE_DIR = ".vsslpipe"                # per project: scratch/, logs/ (git- and DVC-ignored)


@dataclass(frozen=True)
class Task:
    name: str
    cmd: list
    env: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    name: str
    returncode: int
    error: str = ""            # the last error line of a failed task
    log: Optional[Path] = None
    gpu: Optional[str] = None


# What says best what went wrong, first choice first: a vsslpipe stage's one-line error, a
# Python exception's last line, DVC's own error line.
_ERROR_LINES = (re.compile(r"^error: "), re.compile(r"^[\w.]*(Error|Exception|Interrupt)\b.*:"),
                re.compile(r"^ERROR"))
_FAILED_STAGE = re.compile(r"failed to reproduce '([^']+)'")


def last_error_line(text: str) -> str:
    """The line that says what went wrong, with the DVC stage that failed in front of it."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    stage = _FAILED_STAGE.search(text)
    for pattern in _ERROR_LINES:
        found = next((ln for ln in reversed(lines) if pattern.search(ln)), None)
        if found is not None:
            if stage and not found.startswith("ERROR"):
                return f"{stage.group(1)}: {found}"
            return found
    return lines[-1] if lines else "(no output)"


def parse_gpus(text: Optional[str]) -> Optional[list[str]]:
    """``"0,1,2,3"`` -> ["0", "1", "2", "3"]; None stays None."""
    if text is None:
        return None
    from ..errors import ConfigError

    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not gpus or len(set(gpus)) != len(gpus) or not all(g.isdigit() for g in gpus):
        raise ConfigError(f"--gpus: expected distinct GPU indices such as 0,1,2,3, got {text!r}")
    return gpus


def task_env(root: Path, gpu: Optional[str], extra: Optional[dict] = None) -> dict:
    env = {**os.environ, SCRATCH_ENV: str(Path(root).resolve() / STATE_DIR / "scratch"),
           **(extra or {})}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def experiment_commit(root: Path, name: str) -> Optional[str]:
    """The commit of the DVC experiment ``name`` (``refs/exps/.../<name>``), or None."""
    proc = subprocess.run(["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"],
                          cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    for line in proc.stdout.splitlines():
        commit, _, ref = line.partition(" ")
        if ref.rsplit("/", 1)[-1] == name:
            return commit
    return None


LOCK_BUSY = "Unable to acquire lock"
LOCK_RETRIES, LOCK_WAIT_S = 30, 2.0


def run_tasks(tasks: Sequence[Task], root: Path, gpus: Optional[Sequence[str]] = None,
              jobs: int = 1, log: Callable[[str], None] = print) -> list[Outcome]:
    """Run ``tasks`` in ``root``: one per GPU of ``gpus`` at a time, else ``jobs`` at a time.
    Output goes to ``<root>/.vsslpipe/logs/<task>.log``; outcomes in the order of ``tasks``."""
    slots: "queue.Queue[Optional[str]]" = queue.Queue()
    for slot in (list(gpus) if gpus else [None] * max(1, jobs)):
        slots.put(slot)
    log_dir = Path(root) / STATE_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def one(task: Task) -> Outcome:
        gpu = slots.get()
        path = log_dir / f"{task.name}.log"
        try:
            with lock:
                log(f"{task.name}: running" + (f" on GPU {gpu}" if gpu is not None else ""))
            # `dvc exp run --temp` holds the project's lock while it sets up its temporary copy;
            # a row starting at that moment fails at once with "Unable to acquire lock" without
            # having run anything: wait and start it again. A row can also meet the lock after
            # its experiment was saved (seen with -j 2: the retry then failed with "conflicts with
            # existing experiment"): an experiment of that name that this task made counts as done.
            before = experiment_commit(root, task.name)
            returncode = 1
            for attempt in range(LOCK_RETRIES + 1):
                with open(path, "w" if attempt == 0 else "a") as out:   # every attempt's output kept
                    if attempt:
                        out.write(f"\n--- attempt {attempt + 1} (the project's lock was busy) ---\n")
                        out.flush()
                    proc = subprocess.run(task.cmd, cwd=root, env=task_env(root, gpu, task.env),
                                          stdout=out, stderr=subprocess.STDOUT, text=True)
                returncode = proc.returncode
                text = path.read_text(errors="replace")
                if returncode == 0 or LOCK_BUSY not in text.rsplit("\n--- attempt", 1)[-1]:
                    break
                made = experiment_commit(root, task.name)
                if made is not None and made != before:
                    returncode = 0
                    with open(path, "a") as out:
                        out.write(f"\nexperiment {task.name} was saved ({made[:7]}) before DVC met "
                                  "the busy lock: done\n")
                    break
                if attempt == LOCK_RETRIES:
                    break
                time.sleep(LOCK_WAIT_S * (1 + random.random()))
            error = "" if returncode == 0 else last_error_line(text)
            with lock:
                log(f"{task.name}: {'done' if not error else 'FAILED: ' + error}")
            return Outcome(task.name, returncode, error, path, gpu)
        except OSError as exc:      # the command could not start
            return Outcome(task.name, 127, f"{task.cmd[0]}: {exc.strerror}", path, gpu)
        finally:
            slots.put(gpu)

    width = len(gpus) if gpus else max(1, jobs)
    with ThreadPoolExecutor(max_workers=width) as pool:
        return list(pool.map(one, tasks))
