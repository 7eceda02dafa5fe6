"""How many columns `dvc exp show` lists (params, metrics, deps), with the table definitions in
params.yaml (the commit HEAD) and in the package file (the working tree).

Each side is a throwaway git + DVC project holding that side's dvc.yaml, params.yaml and the
git-tracked metrics; `dvc exp show --json` on it gives the columns. Prints the counts and writes
bench/results/dvc_views.json. Run: python bench/bench_dvc_views.py
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = ("dvc.yaml", "params.yaml", "metrics/", "results/", "data/flow_versions.json")
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
       "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b",
       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run(cmd, cwd) -> str:
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, check=True).stdout


def leaves(node, prefix="") -> set:
    if isinstance(node, dict) and node:
        return set().union(*(leaves(v, f"{prefix}{k}.") for k, v in node.items()))
    return {prefix.rstrip(".")}


def columns(project: Path) -> dict:
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "x"]):
        run(cmd, project)
    data = json.loads(run(["dvc", "exp", "show", "--json", "--no-fetch"], project))[0]["data"]
    params = set().union(*(leaves(v.get("data") or {}, f"{f}:") for f, v in (data.get("params") or {}).items()))
    metrics = set().union(*(leaves(v.get("data") or {}, f"{f}:") for f, v in (data.get("metrics") or {}).items()))
    deps = set(data.get("deps") or {})
    tables = {p for p in params if p.startswith("params.yaml:tables.")}
    return {"params": len(params), "metrics": len(metrics), "deps": len(deps),
            "total": len(params) + len(metrics) + len(deps), "params_from_tables_section": len(tables)}


def tracked(rev: str | None) -> dict[str, bytes]:
    names = run(["git", "ls-files"] if rev is None else ["git", "ls-tree", "-r", "--name-only", rev], ROOT)
    keep = [n for n in names.splitlines() if n.startswith(SMALL)]
    if rev is None:
        return {n: (ROOT / n).read_bytes() for n in keep if (ROOT / n).is_file()}
    blob = subprocess.run(["git", "archive", rev, *keep], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def main() -> None:
    out = {}
    for side, rev in (("before (HEAD: tables in params.yaml)", "HEAD"),
                      ("after (working tree: tables in vsslpipe/tables/tables.yaml)", None)):
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in tracked(rev).items():
                (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / name).write_bytes(content)
            out[side] = columns(Path(tmp))
        print(f"{side}: {out[side]}")
    path = ROOT / "bench/results/dvc_views.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
