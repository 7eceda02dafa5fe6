"""The `vsslpipe` command: every stage has --help; the package installs `stages` namespaced."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vsslpipe.stages.cli import STAGES, app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_root_help_lists_every_stage():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name, _ in STAGES:
        assert name in result.output


@pytest.mark.parametrize("name", [name for name, _ in STAGES])
def test_every_command_has_help(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "--help" in result.output and len(result.output.strip().splitlines()) > 3


def test_packages_listed_and_stages_namespaced():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setup = project["tool"]["setuptools"]
    assert setup["package-dir"]["vsslpipe.stages"] == "stages"
    assert "stages" not in setup["packages"]
    folders = {"vsslpipe." + ".".join(p.parent.relative_to(ROOT / "vsslpipe").parts)
               for p in (ROOT / "vsslpipe").rglob("__init__.py")}
    folders = {f.rstrip(".") for f in folders}
    assert folders | {"vsslpipe.stages"} == set(setup["packages"])
    assert re.search(r'vsslpipe = "vsslpipe\.stages\.cli:main"', (ROOT / "pyproject.toml").read_text())


def test_cli_start_does_not_import_torch():
    # Every dvc stage and every --help pays the CLI's import time; torch alone is ~2 s.
    code = "import sys, vsslpipe.stages.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_pretrain_without_experiment_lists_them(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("pretrain:\n  defaults: {}\n  experiments:\n    a: {}\n    b_paper: {}\n")
    result = CliRunner().invoke(app, ["pretrain", "--params", str(params)])
    assert result.exit_code == 1
    assert "choose an experiment with -e" in result.output and "a, b_paper" in result.output


@pytest.mark.parametrize("command, shown", [
    (["extract"], "[default: 2; params: extract.workers]"),
    (["extract"], "[default: 0.05; params: data.max_failed_fraction]"),
    (["pretrain"], "[default: data/frames; params: data.frames]"),
    (["export"], "[default: coclr; params: export.protocol]"),
])
def test_help_shows_the_shipped_defaults_and_their_keys(command, shown):
    """Options show the package's shipped default and the params key they override (plain text:
    Rich markup would swallow the brackets)."""
    from typer.testing import CliRunner

    from vsslpipe.stages.cli import app

    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0 and shown in " ".join(result.output.split()), result.output
