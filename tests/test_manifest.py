"""Split-file readers: official formats, real quirks, and clear errors naming file and line."""
from pathlib import Path

import pytest

from vsslpipe.data.manifest import build_manifest, read_hmdb51, read_manifest, read_ucf101
from vsslpipe.errors import DataError


def _touch(root: Path, rel: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


@pytest.fixture
def ucf(tmp_path):
    videos, splits = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    # Windows line endings, as some copies of the official lists have.
    (splits / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n")
    (splits / "trainlist01.txt").write_bytes(
        b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
        b"HandstandPushups/v_HandStandPushups_g09_c02.avi 2\r\n\r\n")
    (splits / "testlist01.txt").write_bytes(
        b"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n"
        b"HandstandPushups/v_HandStandPushups_g02_c01.avi\r\n")
    for rel in ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
                "HandstandPushups/v_HandStandPushups_g09_c02.avi",
                "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                "HandstandPushups/v_HandStandPushups_g02_c01.avi"):
        _touch(videos, rel)
    return videos, splits


def test_ucf101_reads_official_format_and_quirks(ucf):
    frame = read_ucf101(*ucf)
    assert list(frame["split"]) == ["train", "train", "test", "test"]
    # Test lists have no labels: the class comes from the folder (HandstandPushups quirk).
    hs = frame[frame["video_id"] == "HandstandPushups/v_HandStandPushups_g02_c01"].iloc[0]
    assert hs["class_name"] == "HandstandPushups" and hs["label"] == 1 and hs["group"] == "g02"
    assert frame.iloc[0]["path"] == "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"
    assert frame.iloc[0]["label"] == 0


@pytest.mark.parametrize("train_line, message", [
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "expected"),
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 2", "does not match"),
    ("Juggling/v_Juggling_g08_c01.avi 1", "not in classInd.txt"),
    ("../etc/v_x_g01_c01.avi 1", "escapes the dataset root"),
    ("ApplyEyeMakeup/v_missing_g08_c09.avi 1", "not found"),
])
def test_ucf101_errors_name_file_and_line(ucf, train_line, message):
    videos, splits = ucf
    (splits / "trainlist01.txt").write_text(
        "HandstandPushups/v_HandStandPushups_g09_c02.avi 2\n" + train_line + "\n")
    with pytest.raises(DataError) as err:
        read_ucf101(videos, splits)
    assert "trainlist01.txt:2" in str(err.value) and message in str(err.value)


def test_ucf101_malformed_class_index(ucf):
    videos, splits = ucf
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\nHandstandPushups\n")
    with pytest.raises(DataError, match=r"classInd.txt:2"):
        read_ucf101(videos, splits)


@pytest.fixture
def hmdb(tmp_path):
    videos, splits = tmp_path / "hmdb51", tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    (splits / "ride_bike_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \nc.avi 0 \n")
    (splits / "brush_hair_test_split1.txt").write_text("d.avi 2\r\ne.avi 1\r\n")
    (splits / "brush_hair_test_split2.txt").write_text("d.avi 1\ne.avi 2\n")
    for rel in ("ride_bike/a.avi", "ride_bike/b.avi", "brush_hair/d.avi", "brush_hair/e.avi"):
        _touch(videos, rel)
    return videos, splits


def test_hmdb51_sorted_classes_and_split_codes(hmdb):
    frame = read_hmdb51(*hmdb, split=1)
    labels = dict(zip(frame["class_name"], frame["label"]))
    assert labels == {"brush_hair": 0, "ride_bike": 1}  # no official index: sorted names
    splits = dict(zip(frame["video_id"], frame["split"]))
    assert splits == {"brush_hair/d": "test", "brush_hair/e": "train", "ride_bike/a": "train",
                      "ride_bike/b": "test", "ride_bike/c": "unused"}  # c.avi missing: unused, fine
    assert set(read_hmdb51(*hmdb, split=2)["split"]) == {"train", "test"}


def test_hmdb51_malformed_line(hmdb):
    videos, splits = hmdb
    (splits / "ride_bike_test_split1.txt").write_text("a.avi 1\nb.avi 7\n")
    with pytest.raises(DataError, match=r"ride_bike_test_split1.txt:2"):
        read_hmdb51(videos, splits)


def test_hmdb51_missing_listed_video(hmdb):
    videos, splits = hmdb
    (videos / "ride_bike" / "b.avi").unlink()
    with pytest.raises(DataError, match=r"ride_bike_test_split1.txt:2.*not found"):
        read_hmdb51(videos, splits)


def test_folder_and_manifest_round_trip(ucf, tmp_path):
    videos, _ = ucf
    frame = build_manifest("folder", videos, None)
    assert len(frame) == 4 and sorted(set(frame["label"])) == [0, 1]
    path = tmp_path / "m.csv"
    frame.to_csv(path, index=False)
    again = read_manifest(path)
    assert again.equals(frame)
    with pytest.raises(DataError, match="unknown dataset format"):
        build_manifest("kinetics", videos, videos)
