"""Run table rows as DVC experiments and read their metrics back.

Each (row, seed) becomes ``dvc exp run --temp retrieve_<modality>@<enc> linear_<modality>@<enc>
-S ++key=value ... --name <table>-<row>-<scale>-s<seed>``: DVC runs exactly the stages the row's
encoder needs with the row's parameters in a temporary copy of the workspace (the workspace
itself is untouched), restores unchanged stages from its run-cache, and keeps the result as a
named experiment. A row's experiment is reused only while it is current — run with the
parameters the row would get now and with today's source files (``stale_reason``).

Before the rows, the stages several rows compute identically (extract, flow, a co-training's
initialisations: :mod:`vsslpipe.tables.stagegraph`) run once per group of rows, so the run-cache
has them; then the rows run side by side, one per GPU (``--gpus``) or ``--jobs`` at a time, and
the random-init floors last. ``--queue`` enqueues rows for ``dvc queue start -j N`` instead
(its workers share one environment: one GPU).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from ..errors import VsslpipeError
from .definitions import encoder_modalities
from .overrides import flatten_overrides, get_dotted
from .parallel import Task, run_tasks
from .seeds import Job

RETRIEVAL_JSON = "results/eval/{encoder}/retrieval.json"
LINEAR_JSON = "results/eval/{encoder}/linear.json"
_MISSING = object()


def _has_key(params: Mapping, key: str) -> bool:
    return get_dotted(params, key, _MISSING) is not _MISSING


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


def row_targets(job: Job, params: Mapping) -> list[str]:
    modality = encoder_modalities(params).get(job.row.encoder, "rgb")
    return [f"retrieve_{modality}@{job.row.encoder}", f"linear_{modality}@{job.row.encoder}"]


def row_stages(repo: Path, params: Mapping) -> Callable[[Job], list[str]]:
    """job -> the stages its experiment runs: its targets and everything upstream of them."""
    from .stagegraph import needed, project_stages

    graph = project_stages(repo)
    return lambda job: needed(graph, row_targets(job, params))


def row_command(job: Job, params: Mapping, queue: bool = False, force: bool = False) -> list[str]:
    mode = ["--queue"] if queue else ["--temp"]
    return (["dvc", "exp", "run", *(["--force"] if force else []), *mode,
             *row_targets(job, params), *override_args(job.overrides, params), "--name", job.name])


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
                # a run still going, or killed before it finished, shows the workspace's data
                finished = data.get("rev") not in (None, "", "workspace")
                if name and not rev.get("error") and not finished:
                    # kept (so a new run of the row replaces it) but never a result
                    found.setdefault(name, {"unfinished": True, "metrics": {}, "params": {},
                                            "rev": rev.get("rev", ""), "deps": {},
                                            "baseline": commit.get("rev", "")})
                elif name and not rev.get("error"):
                    metrics = {path: (m or {}).get("data", {})
                               for path, m in (data.get("metrics") or {}).items()}
                    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
                    found.setdefault(name, {"metrics": metrics, "rev": rev.get("rev") or data["rev"],
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


def row_lock(repo: Path, rev: str) -> Optional[dict]:
    """The stages of the experiment ``rev``'s own dvc.lock (None: unreadable)."""
    import yaml

    proc = _run(["git", "show", f"{rev}:dvc.lock"], repo, check=False)
    if proc.returncode != 0:
        return None
    return (yaml.safe_load(proc.stdout) or {}).get("stages") or {}


def lock_closure(locked: Mapping, targets: Sequence[str]) -> Optional[list[str]]:
    """``targets`` and every stage upstream of them, as the experiment's own dvc.lock links them
    (a dependency inside another stage's output). A row's overrides can re-point a stage (a
    random-init floor takes its architecture from the row's checkpoint), so the workspace's
    graph may name stages the row never needed. None: a target is not in the lock."""
    if any(t not in locked for t in targets):
        return None
    owner = {out["path"].rstrip("/"): stage for stage, entry in locked.items()
             for out in (entry or {}).get("outs") or []}

    def made_by(path: str) -> Optional[str]:
        path = path.rstrip("/")
        while path:
            if path in owner:
                return owner[path]
            path = path.rpartition("/")[0]
        return None

    seen, todo = [], list(targets)
    while todo:
        stage = todo.pop()
        if stage in seen:
            continue
        seen.append(stage)
        for dep in (locked.get(stage) or {}).get("deps") or []:
            up = made_by(dep.get("path", ""))
            if up is not None and up != stage:
                todo.append(up)
    return seen


def unrun_stage(locked: Mapping, stages: Sequence[str], expected_params: Mapping) -> Optional[str]:
    """A stage of the row whose lock entry records other parameters than the row's: it never ran
    in the experiment (a killed run keeps the workspace's entry), so its outputs are not the
    row's. None: every stage ran with the row's parameters."""
    for stage in stages:
        for values in ((locked.get(stage) or {}).get("params") or {}).values():
            for key, value in (values or {}).items():
                want = get_dotted(expected_params, key, _MISSING)
                if want is not _MISSING and _first_difference(value, want) is not None:
                    return stage
    return None


def _stage_deps(locked: Mapping, stages: Sequence[str]) -> dict[str, dict]:
    """{path: {"hash": md5}} of the dependencies of ``stages`` as the experiment's own dvc.lock
    records them. `dvc exp show` flattens the deps of every stage of the lock, including stages
    the row never ran (their entries are the workspace's, possibly older), which would make a
    row look stale after any change to an unrelated stage."""
    # what a stage of the experiment wrote (e.g. data/flow_versions.json) is a result of its
    # settings, not a source file that may have changed since
    made = {out["path"] for entry in locked.values() for out in entry.get("outs") or []}
    deps: dict[str, dict] = {}
    for stage in stages:
        for dep in (locked.get(stage) or {}).get("deps") or []:
            if dep.get("md5") and dep["path"] not in made:
                deps[dep["path"]] = {"hash": dep["md5"]}
    return deps


def stale_reason(experiment: Mapping, expected_params: Mapping, repo: Path,
                 tracked: set[str], stages: Optional[Sequence[str]] = None,
                 targets: Optional[Sequence[str]] = None) -> Optional[str]:
    """Why a finished row's experiment no longer stands for the workspace (None: it does).

    Stale when the parameters it ran with differ from ``expected_params`` (params.yaml with the
    row's overrides; a ``tables`` section of older runs aside), or when a git-tracked file it
    depended on (code, data/flow_versions.json) has changed since. Data outputs are functions
    of these. ``stages``: the stages the row runs (its targets and everything upstream); only
    their dependencies count. ``targets``: the row's target stages; with them, the stages are
    those the experiment's own lock puts upstream of the targets (:func:`lock_closure`).
    """
    if experiment.get("unfinished"):
        return "it did not finish"
    ran = {k: v for k, v in (experiment.get("params") or {}).items() if k != "tables"}
    want = {k: v for k, v in expected_params.items() if k != "tables"}
    key = _first_difference(ran, want)
    if key is not None:
        return f"parameter {key} differs"
    locked = row_lock(repo, experiment["rev"]) if stages and experiment.get("rev") else None
    if locked is not None and targets:
        stages = lock_closure(locked, targets) or stages
    if locked is not None:
        unrun = unrun_stage(locked, stages, expected_params)
        if unrun is not None:
            return f"its stage {unrun} did not run with the row's parameters (an interrupted run)"
    deps = _stage_deps(locked, stages) if locked is not None else None
    if deps is None:
        deps = experiment.get("deps") or {}
    for path, info in sorted(deps.items()):
        recorded = (info or {}).get("hash")
        if path in tracked and recorded and (repo / path).is_file():
            if hashlib.md5((repo / path).read_bytes()).hexdigest() != recorded:
                return f"{path} changed"
    return None


def find_current(job: Job, existing: Mapping[str, dict], expected: Mapping, repo: Path,
                 tracked: set[str], stages: Optional[Sequence[str]] = None,
                 targets: Optional[Sequence[str]] = None) -> tuple[Optional[str], Optional[str]]:
    """(the job's current experiment name or None, why its own-named run is stale or None).
    Seed 0 also accepts the name rows had before seeds (``<table>-<row>-<scale>``)."""
    reason = None
    for name in filter(None, (job.name, job.legacy_name)):
        if name in existing:
            why = stale_reason(existing[name], expected, repo, tracked, stages, targets)
            if why is None:
                return name, None
            reason = reason or why
    return None, reason


@dataclass
class RunReport:
    ran: list = field(default_factory=list)          # experiment names run now
    reused: list = field(default_factory=list)
    failed: list = field(default_factory=list)       # (name, last error line)


def shared_tasks(repo: Path, jobs: Sequence[Job], params: Mapping, log) -> list[list[tuple]]:
    """Waves of (Task, member jobs) for the stages several of ``jobs`` share."""
    from .stagegraph import project_stages, shared_runs

    stages = project_stages(repo)
    waves = []
    for wave in shared_runs(stages, [(row_targets(j, params), j.overrides) for j in jobs]):
        tasks = []
        for run in wave:
            # unique per run (the experiment is removed once it has filled the run-cache)
            digest = hashlib.sha1(json.dumps([run.targets, run.overrides, time.time()],
                                             sort_keys=True, default=str).encode()).hexdigest()[:8]
            members = [jobs[i] for i in run.jobs]
            name = f"{members[0].table.name}-shared-{members[0].scale}-{digest}".replace("_", "-")
            cmd = ["dvc", "exp", "run", "--temp", *run.targets,
                   *override_args(run.overrides, params), "--name", name]
            tasks.append((Task(name, cmd), members))
            log(f"{name}: {', '.join(run.stages)} once for {len(members)} rows "
                f"({', '.join(j.name for j in members[:4])}{', ...' if len(members) > 4 else ''})")
        waves.append(tasks)
    return waves


def run_jobs(repo: Path, jobs: Sequence[Job], params: Mapping, expected_for: Callable[[Job], dict],
             queue: bool = False, force: bool = False, gpus: Optional[Sequence[str]] = None,
             n_jobs: int = 1, log: Callable[[str], None] = print) -> RunReport:
    """Run (or enqueue) the jobs not yet current. ``params``: params.yaml as DVC reads it;
    ``expected_for(job)``: the parameters the job's experiment must have run with."""
    report = RunReport()
    existing = existing_experiments(repo)
    tracked = tracked_files(repo) if existing else set()
    head = _run(["git", "rev-parse", "HEAD"], repo).stdout.strip() if existing else ""
    todo: list[tuple[Job, bool]] = []
    stages_of = row_stages(repo, params) if existing and not force else (lambda job: None)
    for job in jobs:
        current, reason = (None, None) if force else find_current(
            job, existing, expected_for(job), repo, tracked, stages_of(job), row_targets(job, params))
        if current is not None:
            log(f"{current}: done before, reused")
            report.reused.append(current)
            continue
        if reason:
            log(f"{job.name}: the earlier run is stale ({reason})")
        # A name is unique per baseline commit: a stale run of the same name on this very commit
        # is removed first, so the row runs again with the run-cache (`dvc exp run --force` would
        # re-run every stage: only for an explicit --force).
        if job.name in existing and not force and existing[job.name]["baseline"] in (head, "workspace"):
            _run(["dvc", "exp", "remove", job.name], repo, check=False)
        todo.append((job, force and job.name in existing))
    if queue:
        for job, rerun in todo:
            _run(row_command(job, params, queue=True, force=rerun), repo)
            log(f"{job.name}: queued")
            report.ran.append(job.name)
        if todo:
            log("start the queued rows with `dvc queue start -j N` (its workers share one "
                "environment: one GPU), then `vsslpipe tables show`")
        return report
    blocked: dict[str, str] = {}
    if len(todo) > 1:
        for wave in shared_tasks(repo, [j for j, _ in todo], params, log):
            outcomes = run_tasks([t for t, _ in wave], repo, gpus, n_jobs, log)
            for (task, members), outcome in zip(wave, outcomes):
                if outcome.returncode == 0:
                    _run(["dvc", "exp", "remove", task.name], repo, check=False)  # run-cache keeps it
                    continue
                for job in members:
                    blocked.setdefault(job.name, f"shared stages failed ({task.name}): {outcome.error}")
    for floors in (False, True):       # a floor's checkpoint comes from a row's pretraining
        batch = [(j, r) for j, r in todo if j.row.floor == floors and j.name not in blocked]
        tasks = [Task(j.name, row_command(j, params, force=r)) for j, r in batch]
        for outcome in run_tasks(tasks, repo, gpus, n_jobs, log):
            (report.ran if outcome.returncode == 0 else report.failed).append(
                outcome.name if outcome.returncode == 0 else (outcome.name, outcome.error))
    report.failed += sorted(blocked.items())
    return report


def row_metrics(experiment: Mapping, encoder: str) -> dict[str, float]:
    """The table metrics of one finished row (R@k in %, linear top-1/top-5 in %); an R@k whose
    k exceeds the retrieval database is left out (``beyond_database``)."""
    metrics = experiment.get("metrics", {})
    out: dict[str, float] = {}
    retrieval = metrics.get(RETRIEVAL_JSON.format(encoder=encoder), {})
    beyond = beyond_database(experiment, encoder)
    for key, value in retrieval.items():
        if key.startswith("R@") and isinstance(value, (int, float)) and key not in beyond:
            out[key] = float(value)
    linear = metrics.get(LINEAR_JSON.format(encoder=encoder), {})
    for key in ("top1", "top5"):
        if isinstance(linear.get(key), (int, float)):
            out[f"linear_{key}"] = float(linear[key])
    return out


def beyond_database(experiment: Mapping, encoder: str) -> set[str]:
    """The R@k metrics whose k is larger than the retrieval database. The JSON's own list
    (``k_beyond_database``) is not a metric `dvc exp show` passes on, so the database size decides
    when the list is absent."""
    retrieval = (experiment.get("metrics") or {}).get(RETRIEVAL_JSON.format(encoder=encoder), {})
    flagged = {f"R@{k}" for k in retrieval.get("k_beyond_database") or []}
    database = retrieval.get("database")
    if isinstance(database, (int, float)):
        flagged |= {key for key in retrieval if key.startswith("R@") and key[2:].isdigit()
                    and int(key[2:]) > database}
    return flagged
