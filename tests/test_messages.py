"""Every user mistake is one line that names the option, or the file and key path, where the bad
value came from and the rule it broke — asserted word for word, from a folder without a
params.yaml (as a user who pip-installed the tool meets them)."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from vsslpipe.stages.cli import app


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working folder with no params.yaml."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output.strip()


def test_command_line_values_are_named_by_their_option(elsewhere):
    assert cli("extract", "--max-failed-fraction", "2") == (
        1, "error: --max-failed-fraction: must be in [0, 1], got 2")
    assert cli("extract", "--fps", "-3") == (
        1, "error: --fps: must be > 0 (or null to keep every frame), got -3")
    assert cli("extract", "--jpeg-quality", "0") == (1, "error: --jpeg-quality: must be in 1..100, got 0")
    assert cli("flow", "--bound", "0") == (1, "error: --bound: must be > 0, got 0")
    assert cli("pretrain", "-e", "cvrl_rgb", "--epochs", "0") == (1, "error: --epochs: must be >= 1, got 0")


def test_params_file_values_are_named_by_file_and_key(elsewhere):
    params = elsewhere / "mine.yaml"
    params.write_text("data: {max_failed_fraction: 2}\n")
    assert cli("extract", "--params", params) == (
        1, f"error: {params}: data.max_failed_fraction: must be in [0, 1], got 2")
    params.write_text("pretrain:\n  experiments:\n    x: {method: simclr}\n")
    code, out = cli("pretrain", "--params", params, "-e", "x")
    assert code == 1 and out.startswith(
        f"error: {params}: pretrain.experiments.x.method: unknown method 'simclr'; valid: cacl, coclr, cvrl")
    params.write_text("pretrain:\n  experiments:\n    x: {method_args: {cvrl: {tempreature: 0.2}}}\n")
    code, out = cli("pretrain", "--params", params, "-e", "x")
    assert code == 1 and out.startswith(
        f"error: {params}: pretrain.experiments.x.method_args.cvrl.tempreature: unknown parameter; "
        "valid: temperature, gap")
    params.write_text("pretrain:\n  experiments:\n    x: {backbone: r3d_50}\n")
    code, out = cli("pretrain", "--params", params, "-e", "x")
    assert code == 1 and out.startswith(
        f"error: {params}: pretrain.experiments.x.backbone: unknown backbone 'r3d_50'; valid: ")
    params.write_text("pretrain:\n  experiments:\n    x: {frames: elsewhere.h5}\n")
    assert cli("pretrain", "--params", params, "-e", "x") == (
        1, f"error: {params}: pretrain.experiments.x.frames: the inputs are set in the `data` "
           "section (data.frames) or with --frames, not per experiment")


def test_missing_inputs_name_the_key_or_option_they_came_from(elsewhere):
    assert cli("extract") == (
        1, "error: vsslpipe defaults: extract.videos: data/synth/videos: video folder not found")
    assert cli("flow", "--frames", "nowhere") == (
        1, "error: --frames: nowhere: frame store not found (run `vsslpipe extract`)")
    assert cli("pretrain", "-e", "cvrl_rgb", "--manifest", "m.csv") == (
        1, "error: --manifest: m.csv: manifest not found (run `vsslpipe extract` first)")
    assert cli("pretrain", "-e", "nope") == (
        1, "error: -e/--experiment: unknown pretrain experiment 'nope'; valid: cvrl_rgb, cvrl_flow, "
           "cacl_rgb, cacl_paper_c3d, cacl_paper_r3d_18, cacl_paper_r2plus1d_18, cvtcl_init_rgb, "
           "cvtcl_init_flow, cvtcl_cotrain, cvtcl_paper_init_rgb, cvtcl_paper_init_flow, "
           "cvtcl_paper_cotrain")
    assert cli("--params", "x") [0] == 2      # not an option of the root command
    assert cli("extract", "--params", "none.yaml") == (
        1, "error: --params: none.yaml: params file not found")


def test_retrieve_refuses_three_feature_files(elsewhere):
    assert cli("retrieve", "--features", "a.h5", "--features", "b.h5", "--features", "c.h5",
               "--out", "r.json") == (
        1, "error: --features: 3 files given; retrieval fuses at most two streams (RGB and flow "
           "of the same videos)")
