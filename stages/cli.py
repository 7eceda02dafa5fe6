"""The ``vsslpipe`` command: one subcommand per pipeline stage."""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(rich_markup_mode=None, 
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
    """Run the CLI; a usage mistake (unknown option, a value of the wrong type, a missing
    option) is one line naming the option, not click's framed usage box."""
    import sys

    # typer vendors click (typer._click); its exception classes are reached through the public
    # BadParameter's bases rather than a private import.
    usage_error, click_exception = typer.BadParameter.__mro__[1:3]
    try:
        code = app(standalone_mode=False)
    except usage_error as exc:
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "vsslpipe"
        message = exc.format_message().replace("\n", " ")
        print(f"error: {command}: {message} (see `{command} --help`)", file=sys.stderr)
        sys.exit(2)
    except click_exception as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
