"""Which manifest videos a stage uses: failed and pair-less videos are skipped and counted, a
video missing without a recorded reason is an error, the stage stops past max_failed_fraction."""
from pathlib import Path

import pandas as pd
import pytest

from vsslpipe.data.usable import select_usable
from vsslpipe.errors import DataError


class FakeStore:
    def __init__(self, path, pairs):
        self.path, self._pairs = Path(path), dict(pairs)

    def video_ids(self):
        return sorted(self._pairs)

    def num_pairs(self, video_id):
        return self._pairs[video_id]


def _manifest(statuses):
    return pd.DataFrame({"video_id": [f"C/v{i}" for i in range(len(statuses))], "label": 0,
                         "split": "train", "group": "", "status": statuses})


def test_skips_are_counted_by_reason(tmp_path):
    rows = _manifest(["ok", "failed", "ok", "ok", "ok"])
    frames = FakeStore(tmp_path / "frames", {"C/v0": 9, "C/v2": 9, "C/v3": 1, "C/v4": 9})
    flow_failures = tmp_path / "flow_failures.csv"
    flow_failures.write_text("video_id,reason\nC/v4,corrupt JPEG\n")
    flow = FakeStore(tmp_path / "flow", {"C/v0": 8, "C/v2": 8, "C/v3": 0})
    sel = select_usable(rows, {"rgb": frames, "flow": flow},
                        {"rgb": tmp_path / "f.csv", "flow": flow_failures})
    assert sel.rows["video_id"].tolist() == ["C/v0", "C/v2"]
    assert sel.skipped == {"extract_failed": ["C/v1"], "flow_failed": ["C/v4"],
                           "no_flow_pair": ["C/v3"]}
    assert sel.line() == (f"skipped 3 of 5 videos: 1 could not be decoded by extract (see "
                          f"{tmp_path / 'f.csv'}); 1 have no flow (the flow stage failed on them) "
                          f"(see {flow_failures}); 1 have a single frame, so no flow pair")
    metrics = sel.metrics()
    assert metrics["videos_used"] == 2 and metrics["videos_skipped"] == 3
    assert metrics["skipped"]["flow_failed"] == {"count": 1, "see": str(flow_failures),
                                                 "examples": ["C/v4"]}
    sel.check(0.6, "data.max_failed_fraction")
    with pytest.raises(DataError, match=r"60.0% is more than data.max_failed_fraction \(50.0%\)"):
        sel.check(0.5, "data.max_failed_fraction")


def test_rgb_only_stage_keeps_single_frame_videos_and_old_manifests(tmp_path):
    rows = _manifest(["ok", "ok"]).drop(columns="status")      # written before `status` existed
    frames = FakeStore(tmp_path / "frames", {"C/v0": 1, "C/v1": 30})
    sel = select_usable(rows, {"rgb": frames})
    assert len(sel.rows) == 2 and sel.line() == "" and sel.num_skipped == 0


def test_a_video_missing_without_a_reason_is_an_error(tmp_path):
    rows = _manifest(["ok", "ok"])
    frames = FakeStore(tmp_path / "frames", {"C/v0": 5})
    with pytest.raises(DataError) as err:
        select_usable(rows, {"rgb": frames}, names={"rgb": "--frames"})
    assert str(err.value).startswith("--frames: 1 video(s) of the manifest are neither in")
    assert "'C/v1'" in str(err.value)
