"""The stages of the vsslpipe CLI, one thin Typer module each (installed as ``vsslpipe.stages``)."""
