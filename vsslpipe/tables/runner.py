"""Run table rows as DVC experiments and read their metrics back.

Each row becomes ``dvc exp run --temp <retrieve@enc> <linear@enc> -S ++key=value ... --name
<table>-<row>-<scale>``: DVC runs exactly the stages the row's encoder needs with the row's
parameters in a temporary copy of the workspace (the workspace itself is untouched), restores
unchanged stages from its run-cache, and keeps the result as a named experiment. A row whose
experiment already exists is reused; ``--queue`` enqueues rows for ``dvc queue start -j N``.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

from ..errors import VsslpipeError
from .definitions import RowDef, TableDef

RETRIEVAL_JSON = "results/eval/{encoder}/retrieval.json"
LINEAR_JSON = "results/eval/{encoder}/linear.json"


def experiment_name(table: TableDef, row: RowDef, scale: str) -> str:
    return f"{table.name}-{row.name}-{scale}".replace("_", "-")


def override_args(overrides: Mapping[str, Any]) -> list[str]:
    """``-S ++key=value`` (Hydra syntax: add or replace); values as JSON, which Hydra parses.

    A non-empty mapping value is flattened into one override per leaf, so it merges into
    what params.yaml holds instead of depending on Hydra's dict syntax.
    """
    args = []
    for key, value in overrides.items():
        if isinstance(value, Mapping) and value:
            args += override_args({f"{key}.{k}": v for k, v in value.items()})
        else:
            args += ["-S", f"++{key}={json.dumps(value)}"]
    return args


def row_command(table: TableDef, row: RowDef, scale: str, overrides: Mapping[str, Any],
                queue: bool = False) -> list[str]:
    targets = [f"retrieve@{row.encoder}", f"linear@{row.encoder}"]
    mode = "--queue" if queue else "--temp"
    return (["dvc", "exp", "run", mode, *targets, *override_args(overrides),
             "--name", experiment_name(table, row, scale)])


def _run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise VsslpipeError(f"`{' '.join(cmd[:4])} ...` failed: " + " | ".join(tail))
    return proc


def existing_experiments(repo: Path) -> dict[str, dict]:
    """Experiment name -> {"metrics": {path: data}, "rev": sha} for every experiment in the repo."""
    proc = _run(["dvc", "exp", "show", "--json", "--all-commits", "--no-fetch"], repo)
    found: dict[str, dict] = {}
    for commit in json.loads(proc.stdout or "[]"):
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                name = rev.get("name")
                data = rev.get("data") or {}
                if name and not rev.get("error"):
                    metrics = {path: (m or {}).get("data", {})
                               for path, m in (data.get("metrics") or {}).items()}
                    found.setdefault(name, {"metrics": metrics, "rev": data.get("rev", "")})
    return found


def run_rows(repo: Path, table: TableDef, scale: str, overrides_for: Callable[[RowDef], dict],
             rows: Optional[Iterable[str]] = None, queue: bool = False, force: bool = False,
             log: Callable[[str], None] = print) -> list[str]:
    """Run (or enqueue) the table's rows; returns the experiment names."""
    existing = existing_experiments(repo)
    wanted = set(rows) if rows else None
    names = []
    for row in table.rows:
        if wanted is not None and row.name not in wanted:
            continue
        name = experiment_name(table, row, scale)
        names.append(name)
        if name in existing and not force:
            log(f"{name}: done before, reused")
            continue
        cmd = row_command(table, row, scale, overrides_for(row), queue)
        if force and name in existing:
            cmd.insert(3, "--force")
        log(f"{name}: {'queued' if queue else 'running'} ({' '.join(cmd[4:6])})")
        _run(cmd, repo)
    if queue:
        log("start the queued rows with `dvc queue start -j N`, then `vsslpipe tables show`")
    return names


def row_metrics(experiment: Mapping, encoder: str) -> dict[str, float]:
    """The table metrics of one finished row (R@k in %, linear top-1/top-5 in %)."""
    metrics = experiment.get("metrics", {})
    out: dict[str, float] = {}
    retrieval = metrics.get(RETRIEVAL_JSON.format(encoder=encoder), {})
    for key, value in retrieval.items():
        if key.startswith("R@") and isinstance(value, (int, float)):
            out[key] = float(value)
    linear = metrics.get(LINEAR_JSON.format(encoder=encoder), {})
    for key in ("top1", "top5"):
        if isinstance(linear.get(key), (int, float)):
            out[f"linear_{key}"] = float(linear[key])
    return out
