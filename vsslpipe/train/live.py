"""Epoch curves with dvclive on rank 0 (``dvc plots show`` / ``dvc exp show`` read them).

On a resume DVC has already deleted the dvclive folder (it is a stage output), so the logger
replays the epochs kept in the checkpoint's history before logging new ones: the curves always
cover the whole run.
"""
from __future__ import annotations

from pathlib import Path


class EpochLogger:
    def __init__(self, directory: Path, history: list[dict], enabled: bool = True):
        self.live = None
        if not enabled:
            return
        from dvclive import Live

        # save_dvc_exp/dvcyaml off: the stage's dvc.yaml declares the metrics and plots itself.
        self.live = Live(dir=str(directory), resume=False, save_dvc_exp=False, dvcyaml=None,
                         report=None)
        for row in history:
            self.log(row)

    def log(self, row: dict) -> None:
        if self.live is None:
            return
        for key, value in row.items():
            if key != "epoch":
                self.live.log_metric(f"train/{key}", float(value))
        self.live.next_step()

    def summary(self, values: dict) -> None:
        if self.live is not None:
            self.live.summary.update(values)

    def close(self) -> None:
        if self.live is not None:
            self.live.end()
            self.live = None
