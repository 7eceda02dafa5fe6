"""`vsslpipe tables`: the papers' tables (vsslpipe/tables/tables.yaml, or --tables FILE), each
row at each seed a DVC experiment."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vsslpipe.errors import ConfigError
from vsslpipe.tables.definitions import SCALES, get_table, load_tables, row_overrides

from .common import ParamsOpt, echo, report_user_errors

app = typer.Typer(rich_markup_mode=None, help="Reproduce the papers' tables: list, validate, plan, run (rows as DVC "
                       "experiments), show.", no_args_is_help=True)

ScaleOpt = Annotated[str, typer.Option("--scale", help=f"One of {', '.join(SCALES)}.")]
RepoOpt = Annotated[Path, typer.Option("--repo", help="The DVC project (git repository) root.")]
TablesOpt = Annotated[Optional[Path], typer.Option(
    "--tables", show_default=False,
    help="Table definitions file [default: the package's vsslpipe/tables/tables.yaml].")]
SeedsOpt = Annotated[Optional[int], typer.Option(
    "--seeds", show_default=False, help="Seeds 0..N-1 per row [default: the table's `seeds`, else 1].")]
RowsOpt = Annotated[Optional[list[str]], typer.Option("--row", help="Only these rows or floors (repeatable).")]


def _params(params: Optional[Path], repo: Path) -> Optional[Path]:
    """--params, else the project's params.yaml (validation sees what the rows will run with)."""
    if params is None and (repo / "params.yaml").is_file():
        return repo / "params.yaml"
    return params


def _raw_params(repo: Path) -> dict:
    """The project's params.yaml as DVC reads it (what `-S` overrides apply to)."""
    from dvc.utils.serialize import load_yaml

    path = repo / "params.yaml"
    if not path.is_file():
        raise ConfigError(f"--repo: {path}: not found (tables run, show and plan work in a DVC project)")
    return load_yaml(str(path))


def _jobs(name: str, scale: str, seeds: Optional[int], rows, params, repo, tables, floors=True,
          validate=True):
    from vsslpipe.config import read_params
    from vsslpipe.tables.seeds import make_jobs

    defs, scales = load_tables(_params(params, repo), validate=validate, tables_path=tables, only=name)
    table = get_table(defs, name)
    count = table.seeds_for(scale) if seeds is None else seeds
    if count < 1:
        raise ConfigError(f"--seeds: must be >= 1, got {count}")
    known = {r.name for r in table.rows + table.floors}
    unknown = sorted(set(rows or ()) - known)
    if unknown:
        raise ConfigError(f"--row: table {name!r} has no row {', '.join(unknown)}; valid: "
                          f"{', '.join(sorted(known))}")
    jobs = make_jobs(table, scale, count, read_params(_params(params, repo)),
                     lambda row: row_overrides(scales, scale, table, row),
                     set(rows) if rows else None, floors)
    return table, count, jobs


def _expected(raw: dict):
    from vsslpipe.tables.definitions import apply_overrides

    return lambda job: apply_overrides(raw, job.overrides, f"experiment {job.name}", strict=False)


@app.command("list")
@report_user_errors
def list_tables(params: ParamsOpt = None, tables: TablesOpt = None) -> None:
    """List the defined tables, their rows and floors. Example: vsslpipe tables list"""
    defs, _ = load_tables(params, validate=False, tables_path=tables)
    for table in defs.values():
        typer.echo(f"{table.name}: {table.title} [{', '.join(table.metrics)}]"
                   + (f" seeds: {table.seeds}" if table.seeds != 1 else ""))
        for row in table.rows + table.floors:
            typer.echo(f"    {row.name:24s} {row.label}")


@app.command("validate")
@report_user_errors
def validate(params: ParamsOpt = None, tables: TablesOpt = None) -> None:
    """Check every table: metrics, encoders and each row's parameters at every scale defined."""
    defs, _ = load_tables(params, validate=True, tables_path=tables)
    echo(f"tables: {len(defs)} valid ({sum(len(t.rows) for t in defs.values())} rows)")


@app.command("plan")
@report_user_errors
def plan(
    name: Annotated[str, typer.Argument(help="Table name (see `vsslpipe tables list`).")],
    scale: ScaleOpt = "demo", seeds: SeedsOpt = None, rows: RowsOpt = None,
    params: ParamsOpt = None, tables: TablesOpt = None, repo: RepoOpt = Path("."),
) -> None:
    """Per row: stages that would run or are cached, disk and GPU-hours (estimates).

    The disk each new output needs and GPU-hours from FLOP counts; runs nothing.

    Example: vsslpipe tables plan cvtcl_table1 --scale paper --seeds 3
    """
    from vsslpipe.tables.plan import format_plan, make_plan

    table, _, jobs = _jobs(name, scale, seeds, rows, params, repo, tables)
    typer.echo(format_plan(table.name, scale, make_plan(repo, jobs, _raw_params(repo))), nl=False)


@app.command("run")
@report_user_errors
def run(
    name: Annotated[str, typer.Argument(help="Table name (see `vsslpipe tables list`).")],
    scale: ScaleOpt = "demo", seeds: SeedsOpt = None, rows: RowsOpt = None,
    floors: Annotated[bool, typer.Option(help="Also run the table's random-init floors.")] = True,
    gpus: Annotated[Optional[str], typer.Option(
        "--gpus", help="GPUs for the rows, e.g. 0,1,2,3: one row per GPU at a time "
                       "(CUDA_VISIBLE_DEVICES per row).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Rows at a time without --gpus.")] = 1,
    queue: Annotated[bool, typer.Option(help="Enqueue the rows instead (`dvc queue start -j N`; "
                                             "its workers share one environment: one GPU).")] = False,
    force: Annotated[bool, typer.Option(help="Re-run rows that already have an experiment.")] = False,
    params: ParamsOpt = None, tables: TablesOpt = None, repo: RepoOpt = Path("."),
) -> None:
    """Run a table's rows (each seed) as DVC experiments, then render it.

    Experiments are named <table>-<row>-<scale>-s<seed>. Stages several rows share run once
    first; finished rows are reused while current (same parameters, same source files). A
    failed row does not stop the others.

    Example: vsslpipe tables run cvtcl_table1 --scale paper --seeds 3 --gpus 0,1,2,3
    """
    from vsslpipe.tables.parallel import parse_gpus
    from vsslpipe.tables.runner import run_jobs

    gpu_list = parse_gpus(gpus)
    if jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1, got {jobs}")
    if gpu_list and jobs != 1:
        raise ConfigError("--gpus and --jobs: give one of them (with --gpus, one row per GPU)")
    if queue and (gpu_list or jobs != 1):
        raise ConfigError("--queue: `dvc queue start -j N` runs the queued rows; no --gpus or --jobs")
    table, count, job_list = _jobs(name, scale, seeds, rows, params, repo, tables, floors)
    raw = _raw_params(repo)
    report = run_jobs(repo, job_list, raw, _expected(raw), queue, force, gpu_list, jobs, log=echo)
    if not queue:
        show(name, scale, count, params, tables, repo)
    if report.failed:
        for failed, error in report.failed:
            echo(f"failed: {failed}: {error}")
        raise typer.Exit(1)


def default_out_dir(scale: str) -> Path:
    """results/tables for demo (the README's tables), results/tables/SCALE for the others."""
    return Path("results/tables") if scale == "demo" else Path("results/tables") / scale


@app.command("show")
@report_user_errors
def show(
    name: Annotated[str, typer.Argument(help="Table name.")],
    scale: ScaleOpt = "demo", seeds: SeedsOpt = None,
    params: ParamsOpt = None, tables: TablesOpt = None, repo: RepoOpt = Path("."),
    out_dir: Annotated[Optional[Path], typer.Option(
        help="Where NAME.md, NAME.csv and NAME.png go [default: results/tables for demo, "
             "results/tables/SCALE for rehearsal and paper].", show_default=False)] = None,
) -> None:
    """Render results/tables/NAME.md, .csv and .png (mean ± std over seeds beside published).
    Other scales than demo go to results/tables/SCALE/, so a rehearsal never replaces them.

    Per row and random-init floor: our mean ± sample std over seeds and n, the published value.
    Below the table (and in NAME.orderings.csv): each ordering the paper states, and each row
    against its floor, tested by Welch's t-test over the seeds (reproduced / contradicted at
    p < 0.05, else within noise).

    Only current rows count: a row's experiment run with other parameters or older source files
    is left out (and named), never shown as today's result.

    Example: vsslpipe tables show cvtcl_table3 --seeds 3
    """
    from vsslpipe.tables.chart import write_chart
    from vsslpipe.tables.render import table_frame, to_markdown, write_table
    from vsslpipe.tables.runner import (beyond_database, existing_experiments, find_current,
                                        row_metrics, row_stages, row_targets, tracked_files)
    from vsslpipe.tables.seeds import aggregate_rows

    table, count, jobs = _jobs(name, scale, seeds, None, params, repo, tables, validate=False)
    raw = _raw_params(repo)
    expected = _expected(raw)
    found = existing_experiments(repo)
    tracked = tracked_files(repo) if found else set()
    stages_of = row_stages(repo, raw) if found else (lambda job: None)
    per_seed: dict = {}
    names: dict = {}
    beyond: dict = {}
    for job in jobs:
        current, reason = find_current(job, found, expected(job), repo, tracked, stages_of(job),
                                       row_targets(job, raw))
        if current is None:
            if reason:
                echo(f"tables: {job.name} left out: stale ({reason}); `vsslpipe tables run {name}` "
                     "re-runs it")
            continue
        per_seed.setdefault(job.row.name, {})[job.seed] = row_metrics(found[current], job.row.encoder)
        names.setdefault(job.row.name, []).append(current)
        beyond.setdefault(job.row.name, set()).update(beyond_database(found[current], job.row.encoder))
    frame = table_frame(table, scale, aggregate_rows(per_seed, table.metrics, count), names, count,
                        beyond)
    out_dir = repo / (out_dir or default_out_dir(scale))
    md, csv = write_table(table, frame, scale, out_dir)
    png = write_chart(table, frame, scale, out_dir / f"{table.name}.png")
    typer.echo(to_markdown(table, frame, scale))
    echo(f"tables: {len(per_seed)}/{len(table.rows) + len(table.floors)} rows measured "
         f"({count} seed{'s' if count > 1 else ''} each) -> {md}, {csv}, {png}")
