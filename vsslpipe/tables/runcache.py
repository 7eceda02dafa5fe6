"""Which of a row's stages DVC's run-cache already holds, found without running anything.

DVC skips a stage in ``dvc exp run`` when its run-cache key (``dvc/stage/cache.py``:
``_get_stage_hash`` of the stage's lockfile entry: cmd, deps with their hashes, params values,
outs paths) has an entry under ``.dvc/cache/runs``. Here each stage is rebuilt as DVC would in the
row's temporary workspace: params.yaml with the row's ``-S`` overrides applied by DVC's own Hydra
code, dvc.yaml resolved against it (``${...}``), stage objects made by DVC's loader; the key is
then computed by DVC's own function. Walking the DAG upstream first, a dependency produced by a
stage takes the output hash recorded in that stage's cached entry; below a stage that must run,
every stage must run. Always-changed stages (the dataset listing, the flow library versions) run
on every repro in seconds: their command is run here on a copy of the params to learn their
output, or, when that fails, what is below them is reported as unknown.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

CACHED, RUN, ALWAYS, UNKNOWN = "cached", "run", "always", "unknown"


@dataclass
class StageStatus:
    name: str
    state: str                  # cached | run | always | unknown
    reason: str = ""
    key: Optional[str] = None
    outs: list = field(default_factory=list)         # out paths (relative to the root)
    out_hashes: dict = field(default_factory=dict)   # path -> md5 when known
    ident: str = ""             # name, cmd, params values and upstream idents: the same work
    stage: Any = None           # the DVC stage object (cmd, deps, outs)
    below_run: str = ""         # an always-changed stage below one that runs: what it waits for


def _pick(config: dict, keys: list) -> dict:
    """``read_param_file(fs, path, keys, flatten=True)`` on an already loaded file: the dotted
    keys present, by value (all of it when no keys are given)."""
    import dpath

    if not keys:
        return config
    picked = {}
    for key in keys:
        try:
            picked[key] = dpath.get(config, key, separator=".")
        except KeyError:
            continue
    return picked


class RunCacheView:
    """Open once per project; :meth:`walk` per row."""

    def __init__(self, root: Path):
        from dvc.repo import Repo
        from dvc.utils.serialize import load_yaml

        self.root = Path(root).resolve()
        self.repo = Repo(str(self.root))
        self.dvcfile = self.repo.index.stages[0].dvcfile if self.repo.index.stages else None
        self.dvcyaml = load_yaml(str(self.root / "dvc.yaml"))
        self.cache_dir = Path(self.repo.stage_cache.cache_dir)
        self._tmp = Path(tempfile.mkdtemp(prefix="vsslpipe-plan-"))
        self._dep_hashes: dict[str, Any] = {}
        self._always: dict[tuple, dict] = {}
        self._lock_hashes = self._workspace_lock()

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)
        self.repo.close()

    def __enter__(self) -> "RunCacheView":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the row's workspace -------------------------------------------------------------------
    def params_file(self, override_args: Sequence[str]) -> Path:
        """params.yaml as ``dvc exp run -S ...`` writes it in the row's temporary workspace."""
        from dvc.utils.hydra import apply_overrides

        folder = Path(tempfile.mkdtemp(dir=self._tmp))
        path = folder / "params.yaml"
        shutil.copyfile(self.root / "params.yaml", path)
        args = [a for a in override_args if a != "-S"]
        if args:
            apply_overrides(str(path), args)
        return path

    def stages(self, params_file: Path) -> dict:
        """Name -> DVC stage object, dvc.yaml resolved against ``params_file``."""
        from dvc.fs import LocalFileSystem
        from dvc.parsing import DataResolver
        from dvc.stage.loader import StageLoader

        fs = LocalFileSystem()
        shim = types.SimpleNamespace(fs=fs, config=self.repo.config)
        resolver = DataResolver(shim, str(params_file.parent), self.dvcyaml)
        out = {}
        for name in resolver.get_keys():
            for stage_name, data in resolver.resolve_one(name).items():
                out[stage_name] = StageLoader.load_stage(self.dvcfile, stage_name, data)
        return out

    # -- hashes --------------------------------------------------------------------------------
    def _workspace_lock(self) -> dict:
        from dvc.utils.serialize import load_yaml

        lock = self.root / "dvc.lock"
        hashes = {}
        if lock.is_file():
            for entry in (load_yaml(str(lock)).get("stages") or {}).values():
                for out in entry.get("outs") or []:
                    hashes[out["path"]] = out.get("md5")
        return hashes

    def _hash_workspace(self, dep) -> bool:
        """Fill a dependency's hash from the workspace (as ``stage.save_deps()`` does)."""
        path = dep.def_path
        if path not in self._dep_hashes:
            try:
                dep.save()
                self._dep_hashes[path] = (dep.hash_info, dep.meta)
            except Exception:      # missing or unreadable: DVC could not hash it either
                self._dep_hashes[path] = None
        found = self._dep_hashes[path]
        if found is None:
            return False
        dep.hash_info, dep.meta = found
        return True

    def _fill_produced(self, dep, producer: StageStatus, out_path: str) -> bool:
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_data.hashfile.meta import Meta

        value = producer.out_hashes.get(out_path)
        if value is None:
            return False
        if dep.def_path == out_path:
            dep.hash_info = HashInfo("md5", value)
            dep.meta = Meta(isdir=value.endswith(".dir"))
            return True
        # A path inside (or around) the output: the workspace copy holds the same content when
        # its recorded hash is the cached one.
        return self._lock_hashes.get(out_path) == value and self._hash_workspace(dep)

    def _lookup(self, key: str) -> Optional[dict]:
        from dvc.utils.serialize import load_yaml

        folder = self.cache_dir / key[:2] / key
        if not folder.is_dir():
            return None
        entries = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        if not entries:
            return None
        entry = load_yaml(str(entries[0]))
        # DVC restores an entry only when every output is in the object cache (metrics too:
        # the run-cache commits them); otherwise the stage runs.
        odb = self.repo.cache.local
        for out in entry.get("outs") or []:
            md5 = out.get("md5")
            if not md5 or not os.path.exists(odb.oid_to_path(md5)):
                return None
        return entry

    def _run_always(self, stage, params_file: Path, ident: str) -> Optional[dict]:
        """Run an always-changed stage's command on copies (its outputs written under a
        temporary folder) and hash what it writes."""
        args = shlex.split(stage.cmd)
        folder = Path(tempfile.mkdtemp(dir=self._tmp))
        outs = {o.def_path: folder / Path(o.def_path).name for o in stage.outs}
        args = [str(params_file) if a == "params.yaml" else str(outs.get(a, a)) for a in args]
        if ident in self._always:     # same command, params values and inputs: same output
            return self._always[ident]
        env = {**os.environ, "DVC_ROOT": str(self.root)}
        proc = subprocess.run(args, cwd=self.root, env=env, capture_output=True, text=True)
        result = None
        if proc.returncode == 0 and all(p.is_file() for p in outs.values()):
            result = {path: hashlib.md5(p.read_bytes()).hexdigest() for path, p in outs.items()}
        self._always[ident] = result
        return result

    def _decide(self, st: StageStatus, stage, ups: list, status: dict, producers: dict,
                params_file: Path) -> None:
        from dvc.dependency.param import ParamsDependency
        from dvc.stage.cache import _can_hash, _get_stage_hash

        blocked = next((u for u in ups if u.state == RUN or u.below_run), None)
        unknown = next((u for u in ups if u.state == UNKNOWN or
                        (u.state == ALWAYS and not u.out_hashes)), None)
        if stage.always_changed:
            st.state, st.reason = ALWAYS, "always runs (seconds)"
            if blocked is not None:
                st.below_run = blocked.name
            elif unknown is None:
                st.out_hashes = self._run_always(stage, params_file, st.ident) or {}
            return
        if blocked is not None:
            st.reason = (f"below {blocked.below_run}, which runs (through {blocked.name})"
                         if blocked.below_run else f"below {blocked.name}, which runs")
            return
        if unknown is not None:
            st.state, st.reason = UNKNOWN, f"below {unknown.name} (its output is not known)"
            return
        for dep in stage.deps:
            if isinstance(dep, ParamsDependency):
                continue
            owner = next((p for p in producers if p == dep.def_path or
                          dep.def_path.startswith(p + "/") or p.startswith(dep.def_path + "/")),
                         None)
            if owner is not None and producers[owner] != stage.name:
                filled = self._fill_produced(dep, status.get(producers[owner]) or
                                             StageStatus(producers[owner], UNKNOWN), owner)
            else:
                filled = self._hash_workspace(dep)
            if not filled:
                st.state, st.reason = UNKNOWN, f"cannot hash {dep.def_path}"
                return
        if not _can_hash(stage):
            st.reason = "not cacheable (DVC always runs it)"
            return
        st.key = _get_stage_hash(stage)
        entry = self._lookup(st.key)
        if entry is None:
            st.reason = "no run-cache entry for its inputs and parameters"
            return
        st.state, st.reason = CACHED, "in the run-cache"
        st.out_hashes = {o["path"]: o.get("md5") for o in entry.get("outs") or []}

    # -- one row -------------------------------------------------------------------------------
    def walk(self, override_args: Sequence[str], targets: Sequence[str],
             params_file: Optional[Path] = None) -> list[StageStatus]:
        """Every stage the targets need, upstream first, with its state in this row
        (``params_file``: the row's params.yaml from :meth:`params_file`, made if not given)."""
        from ..errors import ConfigError
        from dvc.dependency.param import ParamsDependency, read_param_file
        from dvc.fs import LocalFileSystem
        import networkx as nx
        from dvc.repo.graph import build_graph

        params_file = params_file or self.params_file(override_args)
        stages = self.stages(params_file)
        missing = [t for t in targets if t not in stages]
        if missing:
            raise ConfigError(f"dvc.yaml: no stage {', '.join(missing)} (valid: {', '.join(stages)})")
        graph = build_graph(list(stages.values()))
        wanted = {stages[t] for t in targets}
        for t in list(wanted):
            wanted |= nx.descendants(graph, t)
        order = [s for s in reversed(list(nx.topological_sort(graph))) if s in wanted]
        status: dict[str, StageStatus] = {}
        producers = {o.def_path: s.name for s in stages.values() for o in s.outs}
        # the row's params file parsed once, not once per stage (YAML parsing was most of `tables
        # plan`'s time); keys picked as read_param_file(..., flatten=True) picks them
        config = read_param_file(LocalFileSystem(), str(params_file))
        for stage in order:
            st = StageStatus(stage.name, RUN, outs=[o.def_path for o in stage.outs], stage=stage)
            status[stage.name] = st
            ups = [status[u.name] for u in graph.successors(stage)]
            values = []
            for dep in stage.deps:
                if isinstance(dep, ParamsDependency):
                    dep.fill_values(_pick(config, list(dep.params or [])))
                    # DVC's _can_hash asks each dep for its hash, which for params re-reads
                    # the file; in the row's workspace that is the hash just filled
                    dep.get_hash = functools.partial(lambda info: info, dep.hash_info)
                    values.append(dep.hash_info.value)
            st.ident = hashlib.sha256(json.dumps(
                [stage.name, stage.cmd, values, sorted(u.ident for u in ups)],
                sort_keys=True, default=str).encode()).hexdigest()
            self._decide(st, stage, ups, status, producers, params_file)
        return list(status.values())
