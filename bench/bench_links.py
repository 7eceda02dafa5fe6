"""What a table row costs before its first stage runs: bytes copied and seconds, by DVC link type.

`vsslpipe tables run` runs each row as `dvc exp run --temp`, which checks every dependency of the
row's stages out of the cache into a temporary copy of the project. With DVC's default link type
(`reflink,copy`) on a file system without reflinks (ext4, xfs without reflink, most cluster
file systems) that checkout copies every byte; with the project's `reflink,hardlink,symlink`
(.dvc/config) it links them. This script builds a throw-away git + DVC project with a store of
--gb gigabytes (random bytes in shards, like a frame store) and a one-parameter downstream stage,
then runs one row per link type and reports:

- bytes copied: the most bytes of regular, unlinked files (st_nlink == 1) seen under
  `.dvc/tmp/exps` while the row runs (sampled every 20 ms);
- seconds before the first stage: from starting `dvc exp run` to the stage's command starting
  (the command writes the time), which includes DVC hashing its inputs;
- an external dataset folder as a dependency (UCF101's videos live outside the project) against
  a listing of it (path, size, mtime) as the dependency: the seconds DVC spends on it per row.

    python bench/bench_links.py [--gb 1.0] [--videos-gb 0.5]   # writes bench/results/links.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STAGE_TIMER = """import sys, time; open(sys.argv[1], "w").write(repr(time.time()))"""


def run(cmd, cwd, env=None):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: {proc.stderr[-2000:]}")
    return proc


def write_random(folder: Path, total_bytes: int, files: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    chunk = total_bytes // files
    for i in range(files):
        with open(folder / f"shard-{i:04d}.bin", "wb") as f:
            f.write(os.urandom(chunk))


def unlinked_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if st.st_nlink == 1 and not os.path.islink(os.path.join(dirpath, name)):
                total += st.st_size
    return total


def make_project(root: Path, link_type: str | None, store_gb: float, videos: Path | None,
                 listing: bool) -> dict:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    root.mkdir(parents=True)
    run(["git", "init", "-q"], root, env)
    run(["dvc", "init", "-q"], root, env)
    if link_type:
        run(["dvc", "config", "cache.type", link_type], root, env)
    (root / "make_store.py").write_text(
        "import os, sys\nfrom pathlib import Path\n"
        "out = Path('data/store'); out.mkdir(parents=True, exist_ok=True)\n"
        "n = int(float(sys.argv[1]) * 2**30) // 16\n"
        "for i in range(16):\n    (out / f'shard-{i:02d}.h5').write_bytes(os.urandom(n))\n")
    (root / "timer.py").write_text(STAGE_TIMER)
    (root / "params.yaml").write_text("row: {x: 1}\n")
    dataset_dep = ""
    if videos is not None:
        if listing:
            (root / "list_videos.py").write_text(
                "import json, os, sys\nrows = []\n"
                "for d, _, names in os.walk(sys.argv[1]):\n"
                "    for n in sorted(names):\n        st = os.stat(os.path.join(d, n))\n"
                "        rows.append([os.path.relpath(os.path.join(d, n), sys.argv[1]), st.st_size, st.st_mtime_ns])\n"
                "open('data/videos.json', 'w').write(json.dumps(sorted(rows)))\n")
            dataset_dep = f"""  list_videos:
    cmd: python list_videos.py {videos}
    always_changed: true
    outs:
      - data/videos.json:
          cache: false
"""
            store_deps = "      - data/videos.json\n"
        else:
            store_deps = f"      - {videos}\n"
    else:
        store_deps = ""
    (root / "dvc.yaml").write_text(f"""stages:
{dataset_dep}  make_store:
    cmd: python make_store.py {store_gb}
    deps:
      - make_store.py
{store_deps}    outs:
      - data/store
  row:
    cmd: python timer.py {root.parent / 'stage_started'} && echo ${{row.x}} > row.txt
    deps:
      - data/store
      - timer.py
    params:
      - row.x
    outs:
      - row.txt
""")
    (root / "data").mkdir()
    run(["dvc", "repro", "-q"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "bench"], root, env)
    return env


def time_row(root: Path, env: dict, value: int) -> dict:
    """One row with a new parameter value (a repeated value would come from the run-cache)."""
    marker = root.parent / "stage_started"
    marker.unlink(missing_ok=True)
    exps = root / ".dvc" / "tmp" / "exps"
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            if exps.is_dir():
                peak[0] = max(peak[0], unlinked_bytes(exps))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.time()
    run(["dvc", "exp", "run", "--temp", "row", "-S", f"row.x={value}"], root, env)
    total = time.time() - start
    done.set()
    sampler.join()
    started = float(marker.read_text())
    return {"bytes_copied": peak[0], "seconds_before_first_stage": round(started - start, 2),
            "seconds_total": round(total, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=1.0, help="store size (GiB)")
    ap.add_argument("--videos-gb", type=float, default=0.5, help="external dataset folder (GiB)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    results: dict = {"store_bytes": int(args.gb * 2**30), "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:   # outside any git repository
        tmp = Path(tmp)
        videos = tmp / "external_videos"
        write_random(videos, int(args.videos_gb * 2**30), 400)
        variants = {
            "default_link_type (reflink,copy)": (None, None, False),
            "project_link_type (reflink,hardlink,symlink)": ("reflink,hardlink,symlink", None, False),
            "external videos folder as a dependency": ("reflink,hardlink,symlink", videos, False),
            "listing of the videos folder as the dependency": ("reflink,hardlink,symlink", videos, True),
        }
        for name, (link, vids, listing) in variants.items():
            root = tmp / name.split(" ")[0]
            env = make_project(root, link, args.gb, vids, listing)
            runs = [time_row(root, env, 2 + i) for i in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds_before_first_stage"])
            results["rows"][name] = {**best, "runs": runs}
            print(f"{name:50s} copied {best['bytes_copied'] / 2**30:6.2f} GiB, first stage after "
                  f"{best['seconds_before_first_stage']:6.2f} s (row {best['seconds_total']:.1f} s)")
            shutil.rmtree(root, ignore_errors=True)
    results["load_average"] = os.getloadavg()
    out = Path("bench/results/links.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"-> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
