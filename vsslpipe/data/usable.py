"""Which videos of the manifest a stage can use, and the ones it skips, counted by reason.

One broken video must not stop the other 13,319: ``extract`` marks a video it could not decode
``status: failed`` in the manifest (and lists why in the frame store's ``failures.csv``); ``flow``
leaves out a video it could not compute (its ``failures.csv``) and stores a one-frame video with
no pair. Every later stage passes its manifest rows through :func:`select_usable`, which drops
those videos, and reports them in its summary line and metrics (:meth:`Selection.line`,
:meth:`Selection.metrics`); it stops only when more than ``max_failed_fraction`` of its videos
are skipped (:meth:`Selection.check`). A video that is missing from a store *without* a recorded
reason means the store and the manifest come from different runs: that is an error, not a skip.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import pandas as pd

from ..errors import DataError

STATUS_OK, STATUS_FAILED = "ok", "failed"
REASONS = {
    "extract_failed": "could not be decoded by extract",
    "flow_failed": "have no flow (the flow stage failed on them)",
    "no_flow_pair": "have a single frame, so no flow pair",
}


@dataclass
class Selection:
    """The usable manifest rows and the skipped ones (reason -> video ids, reason -> file)."""

    rows: pd.DataFrame
    considered: int
    skipped: dict[str, list[str]] = field(default_factory=dict)
    see: dict[str, str] = field(default_factory=dict)

    @property
    def num_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def line(self, what: str = "videos") -> str:
        """``"skipped 2 of 14 videos: 1 could not be decoded by extract (see data/frames/failures.csv), ..."``
        or ``""`` when nothing was skipped."""
        if not self.num_skipped:
            return ""
        parts = []
        for reason, ids in self.skipped.items():
            see = f" (see {self.see[reason]})" if self.see.get(reason) else ""
            parts.append(f"{len(ids)} {REASONS[reason]}{see}")
        return f"skipped {self.num_skipped} of {self.considered} {what}: " + "; ".join(parts)

    def metrics(self) -> dict:
        """For a stage's metrics JSON: videos used, skipped, and per reason the count and file."""
        return {"videos_used": len(self.rows), "videos_skipped": self.num_skipped,
                "skipped": {r: {"count": len(ids), "see": self.see.get(r, ""),
                                "examples": ids[:5]} for r, ids in self.skipped.items()}}

    def check(self, max_failed_fraction: float, setting: str) -> None:
        """DataError when more than ``max_failed_fraction`` of the videos were skipped
        (``setting`` names where the threshold came from)."""
        if not self.considered:
            return
        fraction = self.num_skipped / self.considered
        if fraction > max_failed_fraction:
            raise DataError(f"{self.line()} — {fraction:.1%} is more than {setting} "
                            f"({max_failed_fraction:.1%})")


def manifest_status(manifest: pd.DataFrame) -> pd.Series:
    """Each row's status; a manifest written before the column existed counts as all ok."""
    if "status" not in manifest.columns:
        return pd.Series(STATUS_OK, index=manifest.index)
    return manifest["status"].fillna(STATUS_OK).astype(str)


def _listed(failures_file: Optional[Path]) -> set[str]:
    if failures_file is None or not Path(failures_file).is_file():
        return set()
    table = pd.read_csv(failures_file, dtype=str, keep_default_na=False)
    return set(table["video_id"]) if "video_id" in table.columns else set()


def select_usable(rows: pd.DataFrame, stores: Mapping[str, object],
                  failures: Optional[Mapping[str, Optional[Path]]] = None,
                  names: Optional[Mapping[str, str]] = None) -> Selection:
    """The rows of ``rows`` (manifest rows of one or more splits) usable with every store of
    ``stores`` (``{"rgb": FrameStore, "flow": FlowStore}``, either or both).

    ``failures`` maps a modality to its store's failures file (named in messages); ``names`` maps
    a modality to where its store path came from (``--frames``, ``params.yaml: data.frames``), for
    the error raised when a video is missing without a recorded reason.
    """
    failures = dict(failures or {})
    names = dict(names or {})
    status = manifest_status(rows)
    skipped: dict[str, list[str]] = {}
    see: dict[str, str] = {}
    keep = status.eq(STATUS_OK).to_numpy().copy()
    failed_ids = rows.loc[~keep, "video_id"].tolist()
    if failed_ids:
        skipped["extract_failed"] = sorted(failed_ids)
        see["extract_failed"] = str(failures.get("rgb") or "")
    ids = rows["video_id"].tolist()
    for modality, store in stores.items():
        have = set(store.video_ids())
        flow_failed = _listed(failures.get("flow")) if modality == "flow" else set()
        for i, vid in enumerate(ids):
            if not keep[i] or vid in have:
                continue
            if vid in flow_failed:
                skipped.setdefault("flow_failed", []).append(vid)
                see["flow_failed"] = str(failures.get("flow") or "")
                keep[i] = False
                continue
            where = names.get(modality, str(getattr(store, "path", modality)))
            missing = [v for j, v in enumerate(ids) if keep[j] and v not in have and v not in flow_failed]
            raise DataError(f"{where}: {len(missing)} video(s) of the manifest are neither in "
                            f"{getattr(store, 'path', 'the store')} nor listed as failed, e.g. "
                            f"{missing[0]!r}: the store and the manifest come from different "
                            "runs or datasets")
        if modality == "flow":
            for i, vid in enumerate(ids):
                if keep[i] and store.num_pairs(vid) == 0:
                    skipped.setdefault("no_flow_pair", []).append(vid)
                    keep[i] = False
    return Selection(rows[keep].reset_index(drop=True), len(rows), skipped, see)


def open_store(modality: str, path: Path, where: str):
    """The store of ``modality`` at ``path``; a missing or wrong store is one DataError that
    names ``where`` the path came from (``--frames``, ``params.yaml: data.frames``)."""
    from .flowstore import FlowStore
    from .framestore import FrameStore

    kind = {"rgb": FrameStore, "flow": FlowStore}[modality]
    try:
        return kind(path)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


def usable_inputs(data, rows: pd.DataFrame, modalities) -> tuple[dict, Selection]:
    """Open the stores of ``modalities`` named by a :class:`~vsslpipe.data.dataset_config.DataConfig`
    and select the usable ``rows``; returns ({modality: store}, selection)."""
    from ..config import origin_of

    paths = {"rgb": data.frames, "flow": data.flow}
    keys = {"rgb": "frames", "flow": "flow"}
    stores = {m: open_store(m, paths[m], origin_of(data, keys[m])) for m in modalities}
    failures = {"rgb": failures_file(data.frames), "flow": failures_file(data.flow)}
    names = {m: origin_of(data, keys[m]) for m in modalities}
    return stores, select_usable(rows, stores, failures, names)


def failures_file(store: Path) -> Path:
    """Where a store's failures list lives (written by extract / flow)."""
    return Path(store) / "failures.csv"
