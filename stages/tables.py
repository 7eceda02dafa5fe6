"""`vsslpipe tables`: the papers' tables, defined in params.yaml, each row a DVC experiment."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vsslpipe.config import read_params
from vsslpipe.tables.definitions import SCALES, apply_overrides, get_table, load_tables, row_overrides
from vsslpipe.tables.render import table_frame, to_markdown, write_table
from vsslpipe.tables.runner import (existing_experiments, experiment_name, row_metrics, run_rows,
                                    stale_reason, tracked_files)

from .common import ParamsOpt, echo, report_user_errors

app = typer.Typer(help="Reproduce the papers' tables: list, run (rows as DVC experiments), show.",
                  no_args_is_help=True)

ScaleOpt = Annotated[str, typer.Option("--scale", help=f"One of {', '.join(SCALES)}.")]
RepoOpt = Annotated[Path, typer.Option("--repo", help="The DVC project (git repository) root.")]


@app.command("list")
@report_user_errors
def list_tables(params: ParamsOpt = Path("params.yaml")) -> None:
    """List the defined tables and their rows. Example: vsslpipe tables list"""
    tables, _ = load_tables(params, validate=False)
    for table in tables.values():
        typer.echo(f"{table.name}: {table.title} [{', '.join(table.metrics)}]")
        for row in table.rows:
            typer.echo(f"    {row.name:24s} {row.label}")


@app.command("validate")
@report_user_errors
def validate(params: ParamsOpt = Path("params.yaml")) -> None:
    """Check every table: metrics, encoders and each row's parameters at both scales."""
    tables, _ = load_tables(params, validate=True)
    echo(f"tables: {len(tables)} valid ({sum(len(t.rows) for t in tables.values())} rows)")


@app.command("run")
@report_user_errors
def run(
    name: Annotated[str, typer.Argument(help="Table name (see `vsslpipe tables list`).")],
    scale: ScaleOpt = "demo",
    rows: Annotated[Optional[list[str]], typer.Option("--row", help="Only these rows (repeatable).")] = None,
    queue: Annotated[bool, typer.Option(help="Enqueue the rows (`dvc queue start -j N` runs them).")] = False,
    force: Annotated[bool, typer.Option(help="Re-run rows that already have an experiment.")] = False,
    params: ParamsOpt = Path("params.yaml"),
    repo: RepoOpt = Path("."),
) -> None:
    """Run a table's rows as DVC experiments named <table>-<row>-<scale>, then render it.

    Finished rows are reused while current (same parameters, same source files); unchanged
    stages come from DVC's run-cache.
    Example: vsslpipe tables run cvrl_sampling --scale demo
    """
    tables, scales = load_tables(params, validate=True)
    table = get_table(tables, name)
    run_rows(repo, table, scale, lambda row: row_overrides(scales, scale, table, row),
             read_params(params), rows, queue, force, log=echo)
    if not queue:
        show(name, scale, params, repo)


@app.command("show")
@report_user_errors
def show(
    name: Annotated[str, typer.Argument(help="Table name.")],
    scale: ScaleOpt = "demo",
    params: ParamsOpt = Path("params.yaml"),
    repo: RepoOpt = Path("."),
    out_dir: Annotated[Path, typer.Option(help="Where NAME.md and NAME.csv go.")] = Path("results/tables"),
) -> None:
    """Render results/tables/NAME.md and .csv: measured beside published, per row.

    Only current rows count: a row's experiment run with other parameters or older source files
    is left out (and named), never shown as today's result.

    Example: vsslpipe tables show cvtcl_table3
    """
    tables, scales = load_tables(params, validate=False)
    table = get_table(tables, name)
    found = existing_experiments(repo)
    tracked = tracked_files(repo) if found else set()
    raw = read_params(params)
    measured, experiments = {}, {}
    for row in table.rows:
        exp = experiment_name(table, row, scale)
        if exp not in found:
            continue
        expected = apply_overrides(raw, row_overrides(scales, scale, table, row), f"row {row.name!r}")
        reason = stale_reason(found[exp], expected, repo, tracked)
        if reason is not None:
            echo(f"tables: {exp} left out: stale ({reason}); `vsslpipe tables run {name}` re-runs it")
            continue
        measured[row.name] = row_metrics(found[exp], row.encoder)
        experiments[row.name] = exp
    frame = table_frame(table, scale, measured, experiments)
    md, csv = write_table(table, frame, scale, repo / out_dir)
    typer.echo(to_markdown(table, frame, scale))
    echo(f"tables: {len(measured)}/{len(table.rows)} rows measured -> {md}, {csv}")
