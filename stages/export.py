"""`vsslpipe export`: not implemented yet (see the open issue for this stage)."""
from __future__ import annotations

from vsslpipe.errors import NotImplementedStageError

from .common import ParamsOpt, report_user_errors


@report_user_errors
def main(params: ParamsOpt = "params.yaml") -> None:  # type: ignore[assignment]
    """Not implemented yet: this stage lands with its own issue."""
    raise NotImplementedStageError("vsslpipe export: not implemented yet")
