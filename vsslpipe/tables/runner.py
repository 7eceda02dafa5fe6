"""Run table rows as DVC experiments and read their metrics back.

Each row becomes ``dvc exp run --temp <retrieve@enc> <linear@enc> -S ++key=value ... --name
<table>-<row>-<scale>``: DVC runs exactly the stages the row's encoder needs with the row's
parameters in a temporary copy of the workspace (the workspace itself is untouched), restores
unchanged stages from its run-cache, and keeps the result as a named experiment. A row whose
experiment already exists is reused only while it is current — run with the parameters the row
would get now and with today's source files (``stale_reason``); otherwise it runs again, since a
result from an older dataset or older code must not be rendered as today's. ``--queue``
enqueues rows for ``dvc queue start -j N``.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

from ..errors import VsslpipeError
from .definitions import RowDef, TableDef, apply_overrides, flatten_overrides

RETRIEVAL_JSON = "results/eval/{encoder}/retrieval.json"
LINEAR_JSON = "results/eval/{encoder}/linear.json"


def experiment_name(table: TableDef, row: RowDef, scale: str) -> str:
    return f"{table.name}-{row.name}-{scale}".replace("_", "-")


def _has_key(params: Mapping, key: str) -> bool:
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def override_args(overrides: Mapping[str, Any], params: Optional[Mapping] = None) -> list[str]:
    """``-S ++key=value`` (Hydra syntax: add or replace); values as JSON, which Hydra parses.

    A non-empty mapping value is flattened into one override per leaf, so it merges into
    what params.yaml holds instead of depending on Hydra's dict syntax. An empty mapping
    replaces what is there, as in ``apply_overrides``: Hydra merges ``++key={}`` into an
    existing mapping (a no-op), so an existing key (in ``params``) is deleted first (``~key``).
    """
    args = []
    for key, value in flatten_overrides(overrides).items():
        if isinstance(value, Mapping) and params is not None and _has_key(params, key):
            args += ["-S", f"~{key}"]
        args += ["-S", f"++{key}={json.dumps(value)}"]
    return args


def row_command(table: TableDef, row: RowDef, scale: str, overrides: Mapping[str, Any],
                queue: bool = False, params: Optional[Mapping] = None) -> list[str]:
    targets = [f"retrieve@{row.encoder}", f"linear@{row.encoder}"]
    mode = "--queue" if queue else "--temp"
    return (["dvc", "exp", "run", mode, *targets, *override_args(overrides, params),
             "--name", experiment_name(table, row, scale)])


def _run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise VsslpipeError(f"`{' '.join(cmd[:4])} ...` failed: " + " | ".join(tail))
    return proc


def existing_experiments(repo: Path) -> dict[str, dict]:
    """Experiment name -> {"metrics": {path: data}, "rev": sha, "params": params.yaml as run,
    "deps": {path: {"hash": md5, ...}}} for every experiment in the repo (the newest baseline
    first, so a name run on several commits maps to its latest run)."""
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
                    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
                    found.setdefault(name, {"metrics": metrics, "rev": data.get("rev", ""),
                                            "baseline": commit.get("rev", ""),
                                            "params": params, "deps": data.get("deps") or {}})
    return found


def _first_difference(a: Any, b: Any, prefix: str = "") -> Optional[str]:
    """The first dotted key where two parameter trees differ (None: equal)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{prefix}{key}"
            found = _first_difference(a[key], b[key], f"{prefix}{key}.")
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return prefix.rstrip(".")
        for i, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, f"{prefix}{i}.")
            if found:
                return found
        return None
    return None if a == b else prefix.rstrip(".")


def tracked_files(repo: Path) -> set[str]:
    """Paths git tracks in ``repo`` (the source files, params and small records)."""
    return set(_run(["git", "ls-files"], repo).stdout.splitlines())


def stale_reason(experiment: Mapping, expected_params: Mapping, repo: Path,
                 tracked: set[str]) -> Optional[str]:
    """Why a finished row's experiment no longer stands for the workspace (None: it does).

    Stale when the parameters it ran with differ from ``expected_params`` (params.yaml with the
    row's overrides; the ``tables`` section aside), or when a git-tracked file it depended on
    (code, data/flow_versions.json) has changed since. Data outputs are functions of these.
    """
    ran = {k: v for k, v in (experiment.get("params") or {}).items() if k != "tables"}
    want = {k: v for k, v in expected_params.items() if k != "tables"}
    key = _first_difference(ran, want)
    if key is not None:
        return f"parameter {key} differs"
    for path, info in sorted((experiment.get("deps") or {}).items()):
        recorded = (info or {}).get("hash")
        if path in tracked and recorded and (repo / path).is_file():
            if hashlib.md5((repo / path).read_bytes()).hexdigest() != recorded:
                return f"{path} changed"
    return None


def run_rows(repo: Path, table: TableDef, scale: str, overrides_for: Callable[[RowDef], dict],
             params: Mapping, rows: Optional[Iterable[str]] = None, queue: bool = False,
             force: bool = False, log: Callable[[str], None] = print) -> list[str]:
    """Run (or enqueue) the table's rows; returns the experiment names. ``params`` is
    params.yaml as loaded: a row's experiment is reused only if it ran with it (plus the row's
    overrides) and with today's source files."""
    existing = existing_experiments(repo)
    tracked = tracked_files(repo) if existing else set()
    head = _run(["git", "rev-parse", "HEAD"], repo).stdout.strip() if existing else ""
    wanted = set(rows) if rows else None
    names = []
    for row in table.rows:
        if wanted is not None and row.name not in wanted:
            continue
        name = experiment_name(table, row, scale)
        names.append(name)
        overrides = overrides_for(row)
        # `dvc exp run --force` re-runs every stage (no run-cache): only for an explicit --force,
        # or to replace a stale run of the same name on this very commit (a name is unique per
        # baseline commit; a stale run on an older commit needs no replacing).
        rerun = force
        if name in existing and not force:
            expected = apply_overrides(params, overrides, f"table {table.name!r} row {row.name!r}")
            reason = stale_reason(existing[name], expected, repo, tracked)
            if reason is None:
                log(f"{name}: done before, reused")
                continue
            log(f"{name}: the earlier run is stale ({reason})")
            rerun = existing[name]["baseline"] in (head, "workspace")
        cmd = row_command(table, row, scale, overrides, queue, params)
        if rerun and name in existing:
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
