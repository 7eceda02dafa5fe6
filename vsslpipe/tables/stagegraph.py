"""The project's DVC stage graph, and which stages several table rows share.

From ``dvc.repo.Repo(root).index``: every stage, the ``params.yaml`` keys it declares (plus the
variables its ``${...}`` interpolation reads: a changed ``data.frames`` changes the stage's paths)
and its upstream stages. Given the rows' overrides, a stage's *identity* in a row is its name,
the row's values of the override keys that touch its parameters, and the identities of its
upstream stages: rows with the same identity for a stage compute the same thing (same DVC
run-cache entry), so it can run once for all of them before the rows start.
"""
from __future__ import annotations

from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .overrides import flatten_overrides

ABSENT = "<absent>"      # an override key a row does not set


@dataclass(frozen=True)
class StageInfo:
    name: str
    params: tuple = ()           # params.yaml keys (and interpolated variables) it reads
    all_params: bool = False     # it tracks the whole params file
    upstream: frozenset = frozenset()
    always_changed: bool = False


def _name(stage) -> str:
    """A dvc.yaml stage's name as ``dvc exp run`` takes it from the project root."""
    return getattr(stage, "name", None) or stage.addressing


def project_stages(root: Path) -> dict[str, StageInfo]:
    """Every stage of the DVC project at ``root`` with its params and upstream stages."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        index = repo.index
        graph = index.graph
        out = {}
        for stage in index.stages:
            keys, whole = [], False
            for dep in stage.deps:
                if isinstance(dep, ParamsDependency):
                    whole = whole or not dep.params
                    keys += list(dep.params or [])
            resolver = getattr(stage.dvcfile, "resolver", None)
            if resolver is not None and getattr(stage, "name", None):
                resolver.resolve_one(stage.name)
                for values in (resolver.tracked_vars.get(stage.name) or {}).values():
                    keys += list(values)
            out[_name(stage)] = StageInfo(
                _name(stage), tuple(dict.fromkeys(keys)), whole,
                frozenset(_name(s) for s in graph.successors(stage)),
                bool(stage.always_changed))
        return out


def needed(stages: Mapping[str, StageInfo], targets: Iterable[str]) -> list[str]:
    """``targets`` and everything upstream of them, upstream first."""
    todo, seen = list(targets), set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += list(stages[name].upstream)
    order = TopologicalSorter({n: stages[n].upstream & seen for n in seen}).static_order()
    return list(order)


def touches(key: str, param: str) -> bool:
    """Whether setting ``key`` changes the value of parameter ``param`` (one contains the other)."""
    return key == param or key.startswith(param + ".") or param.startswith(key + ".")


def _touching(stage: StageInfo, keys: Iterable[str]) -> list[str]:
    return [k for k in keys if stage.all_params or any(touches(k, p) for p in stage.params)]


def identities(stages: Mapping[str, StageInfo], targets: Sequence[str],
               overrides: Mapping[str, Any], keys: Sequence[str]) -> dict[str, tuple]:
    """Stage -> identity for one row (``keys``: every override key of any row, flattened)."""
    flat = flatten_overrides(overrides)
    ident: dict[str, tuple] = {}
    for name in needed(stages, targets):
        stage = stages[name]
        values = tuple((k, repr(flat.get(k, ABSENT))) for k in _touching(stage, keys))
        ident[name] = (name, values, tuple(sorted(ident[u] for u in stage.upstream)))
    return ident


@dataclass(frozen=True)
class SharedRun:
    """Stages that several rows compute identically: run once, before those rows."""

    jobs: tuple             # indices of the rows that share them
    stages: tuple           # upstream first
    targets: tuple          # the stages nothing else of this run depends on
    overrides: dict         # the overrides these rows have in common


def common_overrides(override_sets: Sequence[Mapping[str, Any]]) -> dict:
    """The flattened keys every set gives the same value (in the first set's order)."""
    flats = [flatten_overrides(o) for o in override_sets]
    first = flats[0] if flats else {}
    return {k: v for k, v in first.items() if all(k in f and f[k] == v for f in flats[1:])}


def shared_runs(stages: Mapping[str, StageInfo], jobs: Sequence[tuple[Sequence[str], Mapping]],
                ) -> list[list[SharedRun]]:
    """Waves of shared runs for ``jobs`` = [(targets, overrides)], largest groups first.

    A stage whose identity is the same for two or more rows belongs to the group of those rows.
    A stage's upstream stages have the same identity in (at least) the same rows, so running
    groups in order of decreasing size, each wave's groups side by side, never starts a stage
    before its inputs were computed once.
    """
    keys = list(dict.fromkeys(k for _, o in jobs for k in flatten_overrides(o)))
    per_job = [identities(stages, t, o, keys) for t, o in jobs]
    groups: dict[tuple, list[int]] = {}
    for i, ident in enumerate(per_job):
        for value in ident.values():
            groups.setdefault(value, []).append(i)
    by_members: dict[tuple, list[str]] = {}
    for value, members in groups.items():
        if len(members) > 1:
            by_members.setdefault(tuple(members), []).append(value[0])
    waves: dict[int, list[SharedRun]] = {}
    for members, names in by_members.items():
        order = [n for n in needed(stages, names) if n in names]
        inner = set().union(*(stages[n].upstream for n in order))
        targets = tuple(n for n in order if n not in inner)
        run = SharedRun(members, tuple(order), targets,
                        common_overrides([jobs[i][1] for i in members]))
        waves.setdefault(len(members), []).append(run)
    return [waves[size] for size in sorted(waves, reverse=True)]
