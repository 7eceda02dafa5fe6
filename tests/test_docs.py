"""The docs stand alone and their commands run as written.

Conventions of the ```bash blocks in README.md and docs/*.md (docs/stages.md, "Reading the
commands"): a command ending in ``# long`` trains or runs the pipeline and is never run here;
``# needs dvc repro`` runs only when the pipeline outputs it names exist; ``# needs ...`` (a
dataset, a GPU, the command above) is never run. Every other command runs, from the repository
root, with ``/tmp/vsslpipe_docs`` (the docs' scratch folder) mapped to a temporary folder; one
that would write into the repository fails the test instead. Every ``vsslpipe`` command in the
docs, run or not, must name a real subcommand, real options, and existing experiments and tables.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRATCH = "/tmp/vsslpipe_docs"
LONG = re.compile(r"#\s*long\b[^\"']*$")
NEEDS = re.compile(r"#\s*needs\b(?P<what>[^\"']*)$")
# repository paths that only the pipeline writes (a command reading one needs `dvc repro`)
PIPELINE_PATH = re.compile(r"(?<![\w./~-])((?:models|results|data|dvclive|metrics)/[\w@.\-/]*\w)")
# a writing command must send these outputs to the scratch folder (defaults are repo paths)
WRITES = {"synth": ("--out",), "extract": ("--out", "--manifest", "--metrics"),
          "flow": ("--out", "--metrics"), "export": ("--out",), "retrieve": ("--out",),
          "linear": ("--out",), "finetune": ("--out",), "summary": ("--out", "--metrics", "--plots"),
          "tables show": ("--out-dir",)}
NEVER_CHEAP = {"pretrain", "pretrain-frames", "tables run"}
READ_ONLY_DVC = {"exp show", "exp diff", "params diff", "metrics show", "metrics diff", "dag",
                 "status", "exp list", "version"}
SAFE = {"vsslpipe", "dvc", "python", "mkdir", "cat", "head", "tail", "ls", "echo", "grep", "wc", "cd"}


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _blocks(path: Path, lang: str = "bash") -> list[tuple[int, str]]:
    text = _read(path)
    return [(text[:m.start()].count("\n") + 2, m.group(1))
            for m in re.finditer(rf"^```{lang}\n(.*?)^```", text, re.M | re.S)]


def _open_quote(text: str) -> bool:
    """True when ``text`` ends inside a quoted string (a command continues on the next line)."""
    state, i = None, 0
    while i < len(text):
        c = text[i]
        if state is None and c == "#" and (i == 0 or text[i - 1] in " \t\n"):
            i = text.find("\n", i)              # a comment runs to the end of its line
            if i < 0:
                break
        elif state != "'" and c == "\\":
            i += 1
        elif state is None and c in "'\"":
            state = c
        elif c == state:
            state = None
        i += 1
    return state is not None


def commands(block: str) -> list[str]:
    """The block's commands: continued lines, multi-line quotes and here-documents joined."""
    lines, out = block.splitlines(), []
    i = 0
    while i < len(lines):
        cmd = lines[i]
        while (cmd.endswith("\\") or _open_quote(cmd)) and i + 1 < len(lines):
            i += 1
            cmd += "\n" + lines[i]
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", cmd.split("\n")[0])
        if heredoc:
            while i + 1 < len(lines):
                i += 1
                cmd += "\n" + lines[i]
                if lines[i].strip() == heredoc.group(1):
                    break
        if cmd.strip() and not cmd.strip().startswith("#"):
            out.append(cmd)
        i += 1
    return out


def _tail(cmd: str) -> str:
    """The comment after a command (on its last line; a here-document's first line)."""
    first = cmd.split("\n")[0]
    return first if re.search(r"<<", first) else cmd.split("\n")[-1]


def _vsslpipe_args(cmd: str) -> list[str] | None:
    """The words after ``vsslpipe`` (also after ``torchrun ... $(which vsslpipe)``), to the end
    of the first simple command; None when ``cmd`` is not a vsslpipe command."""
    line = cmd.replace("$(which vsslpipe)", "vsslpipe").split("\n")[0].rstrip("\\")
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    if "vsslpipe" not in words or words[0] not in ("vsslpipe", "torchrun"):
        return None
    words = words[words.index("vsslpipe") + 1:]
    stop = next((k for k, w in enumerate(words) if w in ("|", "&&", ";", "||", ">", "2>&1")), None)
    return words[:stop]


def _subcommand(args: list[str]) -> str:
    if not args or args[0].startswith("-"):
        return ""
    return " ".join(args[:2]) if args[0] == "tables" and len(args) > 1 else args[0]


def _option(args: list[str], name: str) -> str | None:
    for k, word in enumerate(args):
        if word == name and k + 1 < len(args):
            return args[k + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def _doc_id(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


BLOCKS = [(p, n, b) for p in DOCS for n, b in _blocks(p)]


# -- (a), (b): references and links -------------------------------------------------------------
@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_references_outside_the_repository(path):
    text = _read(path)
    assert "METHODS.md" not in text, f"{path.name} cites METHODS.md, which is not in the repository"
    assert "../shared" not in text, f"{path.name} points into ../shared, outside the repository"


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", _read(path), flags=re.M | re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, re.M)}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    text = re.sub(r"^```.*?^```", "", _read(path), flags=re.M | re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no file {dest})")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{path.name}: broken links: {broken}"


# -- (c): every vsslpipe command names real commands, options, experiments and tables -----------
def _cli_options() -> dict[str, set[str]]:
    import typer

    from vsslpipe.stages.cli import app

    group = typer.main.get_command(app)
    found = {"": {"--help"}}                     # `vsslpipe --help`
    for name, cmd in group.commands.items():
        subs = getattr(cmd, "commands", None)
        for sub_name, sub in (subs or {name: cmd}).items():
            key = f"{name} {sub_name}" if subs else name
            found[key] = {o for p in sub.params for o in p.opts + p.secondary_opts} | {"--help"}
    return found


def _inline_commands(path: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", _read(path), flags=re.M | re.S)
    return [c for c in re.findall(r"`([^`]+)`", text.replace("\n", " ")) if c.startswith("vsslpipe ")]


def test_every_vsslpipe_command_exists():
    from vsslpipe.config import read_params
    from vsslpipe.tables.definitions import load_tables

    options = _cli_options()
    experiments = set(read_params(ROOT / "params.yaml")["pretrain"]["experiments"])
    tables = set(load_tables(ROOT / "params.yaml", validate=False)[0])
    placeholder = re.compile(r"^([A-Z_]+|.*[<.].*)$")    # NAME, STAGE, <name>, ...
    problems, checked = [], 0
    for path in DOCS:
        cmds = [c for _, b in _blocks(path) for c in commands(b)] + _inline_commands(path)
        for cmd in cmds:
            args = _vsslpipe_args(cmd)
            if not args or placeholder.match(args[0]) or args == ["tables"]:
                continue
            sub, where = _subcommand(args), f"{path.name}: {cmd.splitlines()[0][:90]}"
            if sub not in options:
                problems.append(f"{where}: no command `vsslpipe {sub}`")
                continue
            checked += 1
            for word in args:
                opt = word.strip("[]").split("=", 1)[0]
                if (opt.startswith("-") and not re.match(r"-[\d.]*$", opt)      # not a number
                        and not placeholder.match(opt) and opt not in options[sub]):
                    problems.append(f"{where}: `vsslpipe {sub}` has no option {opt}")
            exp = _option(args, "-e") or _option(args, "--experiment")
            if (exp and not placeholder.match(exp) and exp not in experiments
                    and not _option(args, "--params")):      # a --params file may define it
                problems.append(f"{where}: no pretrain experiment {exp!r} in params.yaml")
            name = args[2] if sub in ("tables plan", "tables run", "tables show") and len(args) > 2 else ""
            if name and not name.startswith("-") and not placeholder.match(name) and name not in tables:
                problems.append(f"{where}: no table {name!r}")
    assert checked > 30, f"only {checked} vsslpipe commands found in the docs"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path,line,block", [(p, n, b) for p in DOCS for n, b in _blocks(p, "yaml")],
                         ids=[_doc_id(p, n) for p in DOCS for n, _ in _blocks(p, "yaml")])
def test_yaml_blocks_parse(path, line, block):
    assert isinstance(yaml.safe_load(block), dict)


# -- (c): the cheap commands run ----------------------------------------------------------------
def plan_block(block: str) -> tuple[list[str], list[str], list[str]]:
    """(commands to run, pipeline outputs they read, problems: commands that would write into
    the repository or need a mark)."""
    run, reads, problems, in_scratch = [], [], [], False
    for cmd in commands(block):
        tail = _tail(cmd)
        if LONG.search(tail):
            continue
        needs = NEEDS.search(tail)
        if needs and needs.group("what").strip() != "dvc repro":
            continue
        words = cmd.split()
        program = Path(words[0]).name
        if program == "cd":
            in_scratch = words[1].startswith(SCRATCH)
            if not in_scratch:
                problems.append(f"{cmd!r}: cd only into {SCRATCH}")
        elif program not in SAFE:
            problems.append(f"{cmd.splitlines()[0]!r}: mark it `# long` or `# needs ...`")
        elif program == "dvc" and " ".join(words[1:3]) not in READ_ONLY_DVC and words[1] not in READ_ONLY_DVC:
            problems.append(f"{cmd!r}: changes the project; mark it `# long` or `# needs ...`")
        elif program == "python" and len(words) > 1 and words[1].endswith(".py") and SCRATCH not in cmd:
            problems.append(f"{cmd!r}: a script may write into the repository; mark it")
        args = _vsslpipe_args(cmd) if program == "vsslpipe" else None
        if args is not None and "--help" not in args:
            sub = _subcommand(args)
            if sub in NEVER_CHEAP:
                problems.append(f"{cmd!r}: trains or runs the pipeline; mark it `# long`")
            for opt in WRITES.get(sub, ()):
                value = _option(args, opt)
                if not (value and (value.startswith(SCRATCH) or in_scratch and not value.startswith("/"))):
                    problems.append(f"{cmd!r}: {opt} must be under {SCRATCH} (not into the repository)")
        if not in_scratch:      # (a file written from a here-document only names paths)
            reads += PIPELINE_PATH.findall(cmd.split("\n")[0] if program == "cat" else cmd)
        run.append(cmd)
    return run, sorted(set(reads)), problems


def _env(scratch: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               OMP_NUM_THREADS="1", COLUMNS="160", DVC_NO_ANALYTICS="1")
    return env


@pytest.fixture(scope="module")
def scratch_of(tmp_path_factory):
    """One scratch folder per doc file: a doc's blocks run in order, like a reader's."""
    folders: dict[Path, Path] = {}
    return lambda path: folders.setdefault(path, tmp_path_factory.mktemp(path.stem))


@pytest.mark.parametrize("path,line,block", BLOCKS, ids=[_doc_id(p, n) for p, n, _ in BLOCKS])
def test_doc_commands_run(path, line, block, scratch_of):
    run, reads, problems = plan_block(block)
    assert not problems, "\n".join(problems)
    if not run:
        pytest.skip("every command is marked (# long / # needs ...)")
    missing = [p for p in reads if not (ROOT / p).exists()]
    if missing:
        pytest.skip(f"needs pipeline outputs ({', '.join(missing[:3])}): run `dvc repro` first")
    scratch = scratch_of(path)
    script = "set -eo pipefail\n" + "\n".join(run).replace(SCRATCH, str(scratch))
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, env=_env(scratch), text=True,
                          capture_output=True, timeout=600)
    output = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, f"{_doc_id(path, line)} failed:\n{script}\n{output}"


# -- the DVC commands that compare table rows, on a small project with two such rows ------------
ROW_SCRIPT = """import json, os, yaml
p = yaml.safe_load(open("params.yaml"))
gap = p["pretrain"]["experiments"]["cvrl_rgb"]["method_args"]["cvrl"]["gap"]
for enc, scale in (("cvrl_rgb", 1.0), ("random_tiny3d_rgb", 0.5)):
    os.makedirs(f"results/eval/{enc}", exist_ok=True)
    json.dump({"R@1": len(gap) * scale, "R@5": 50.0}, open(f"results/eval/{enc}/retrieval.json", "w"))
    json.dump({"top1": len(gap) * 2 * scale}, open(f"results/eval/{enc}/linear.json", "w"))
"""


def test_dvc_row_comparisons_run(tmp_path):
    """The `dvc ...` lines of tables.md, verbatim, on a project whose two experiments are named,
    parametrised and measured like two rows of `cvrl_sampling` (the metric files of two encoders,
    so DVC prefixes columns with their file as it does in the pipeline)."""
    lines = [c for _, b in _blocks(ROOT / "docs" / "tables.md") for c in commands(b) if c.startswith("dvc ")]
    names = sorted(set(re.findall(r"cvrl-sampling-[\w-]+-demo-s0", "\n".join(lines))))
    assert len(lines) >= 3 and len(names) == 2, (lines, names)
    env = {**_env(tmp_path), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    cvrl_rgb = {"method_args": {"cvrl": {"gap": "linear"}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"pretrain": {"defaults": {"seed": 0}, "experiments": {"cvrl_rgb": cvrl_rgb}}}))
    (tmp_path / "row.py").write_text(ROW_SCRIPT)
    metrics = [{f"results/eval/{e}/{f}.json": {"cache": False}} for e in ("cvrl_rgb", "random_tiny3d_rgb")
               for f in ("retrieval", "linear")]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"row": {
        "cmd": "python row.py", "deps": ["row.py"], "params": ["pretrain.experiments.cvrl_rgb"],
        "metrics": metrics}}}))

    def sh(cmd: str) -> str:
        proc = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, text=True, capture_output=True)
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout}{proc.stderr}"
        return proc.stdout

    sh("git init -q && dvc init -q && git add -A && git commit -qm project")
    gaps = {name: name.split("-")[2] for name in names}
    for name, gap in gaps.items():
        sh(f"dvc exp run -q -S pretrain.experiments.cvrl_rgb.method_args.cvrl.gap={gap} --name {name}")
    for line in lines:
        out = sh(line)
        for name, gap in gaps.items():
            assert gap in out, f"{line}: {gap!r} ({name}) not in\n{out}"
        if "params diff" not in line:            # the metrics, under the pipeline's column names
            assert "R@1" in out and "top1" in out, f"{line}:\n{out}"


# -- (d): the picture of the pipeline matches dvc.yaml ------------------------------------------
def test_pipeline_figure_matches_dvc_yaml():
    spec = importlib.util.spec_from_file_location("pipeline_figure", ROOT / "docs" / "pipeline_figure.py")
    figure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figure)
    assert figure.check_against_dvc_yaml(ROOT) == []
    stages = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    drawn = {family for box in figure.BOXES.values() for family in box[4]}
    assert drawn <= stages, f"the picture shows stages dvc.yaml no longer has: {sorted(drawn - stages)}"
    assert (ROOT / "docs" / "img" / "pipeline.png").stat().st_size > 10_000
