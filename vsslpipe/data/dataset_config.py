"""``params.yaml`` ``data``: the one place that says where a dataset's manifest and stores live.

``extract`` writes the manifest and the frame store named here, ``flow`` reads that frame store
and writes the flow store named here, and every later stage (pretrain, pretrain-frames, export,
finetune, summary) reads them from here, so pointing the pipeline at another dataset means
changing this section (or giving ``--frames`` / ``--flow`` / ``--manifest``), never five sections.
Kept free of torch: every CLI start may read it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import check


@dataclass(frozen=True)
class DataConfig:
    name: str = "synth"                          # dataset name recorded in features and summaries
    manifest: Path = Path("data/manifest.csv")   # written by extract
    frames: Path = Path("data/frames")           # frame store (folder), written by extract
    flow: Path = Path("data/flow")               # flow store (folder), written by flow
    # A stage stops when more than this fraction of its videos had to be skipped (decode or
    # flow failures, videos without a flow pair); below it, they are left out and counted.
    max_failed_fraction: float = 0.05

    def validate(self) -> None:
        check(0.0 <= self.max_failed_fraction <= 1.0, "max_failed_fraction",
              f"must be in [0, 1], got {self.max_failed_fraction:g}")
        check(bool(self.name.strip()), "name", "must not be empty")
