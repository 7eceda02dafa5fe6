"""The ``vsslpipe`` command: one subcommand per pipeline stage."""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="vsslpipe",
    help="Self-supervised video representation learning, from raw videos to paper tables.\n\n"
         "Each command is one stage of the DVC pipeline (dvc.yaml); `dvc repro` runs them all.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# (command name, module in vsslpipe.stages); each module exposes `main` (or a Typer `app`).
STAGES = [
    ("synth", "synth"),
    ("extract", "extract"),
    ("flow", "flow"),
    ("pretrain-frames", "pretrain_frames"),
    ("pretrain", "pretrain"),
    ("export", "export"),
    ("retrieve", "retrieve"),
    ("linear", "linear"),
    ("finetune", "finetune"),
    ("summary", "summary"),
    ("tables", "tables"),
]

for _name, _module in STAGES:
    _mod = importlib.import_module(f"vsslpipe.stages.{_module}")
    if isinstance(getattr(_mod, "app", None), typer.Typer):
        app.add_typer(_mod.app, name=_name)
    else:
        app.command(_name)(_mod.main)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
