"""Dataset index: official split files -> one manifest (video id, class, label, split).

Every later stage reads the manifest, so this is the one place that knows the quirks of the
official files: UCF101's test lists carry no labels (the class is the folder), its folder
``HandstandPushups`` holds ``v_HandStandPushups_*`` files, split files may have Windows line
endings; HMDB51 has no class index, so its classes are numbered in sorted order.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, List

import pandas as pd

from ..errors import DataError

COLUMNS = ["video_id", "path", "class_name", "label", "split", "group"]
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")
_UCF_GROUP = re.compile(r"_g(\d+)_c\d+$")


@dataclass(frozen=True)
class Entry:
    video_id: str     # path relative to the video root, without extension, '/'-separated
    path: str         # path relative to the video root, with extension
    class_name: str
    label: int        # 0-based
    split: str        # train | test | unused
    group: str        # source group (UCF101 'gXX'), '' when unknown


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    """Non-empty, stripped lines with 1-based numbers; Windows line endings tolerated."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: split file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file ({exc.reason})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line:
            yield number, line


def safe_relative(rel: str, where: str) -> PurePosixPath:
    """A split-file path made POSIX, refused if it is absolute or climbs out of the root."""
    rel_path = PurePosixPath(rel.replace("\\", "/"))
    if rel_path.is_absolute() or ".." in rel_path.parts or not rel_path.parts:
        raise DataError(f"{where}: path {rel!r} escapes the dataset root")
    return rel_path


def _ucf_group(stem: str) -> str:
    match = _UCF_GROUP.search(stem)
    return f"g{int(match.group(1)):02d}" if match else ""


def read_ucf101(videos: Path, splits: Path, split: int = 1, check_files: bool = True) -> pd.DataFrame:
    """UCF101 split ``split`` (1-3): ``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``."""
    videos, splits = Path(videos), Path(splits)
    class_file = splits / "classInd.txt"
    classes: dict[str, int] = {}
    for number, line in _lines(class_file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{class_file}:{number}: expected '<index> <ClassName>', got {line!r}")
        index, name = int(parts[0]), parts[1]
        if name in classes or index - 1 in classes.values():
            raise DataError(f"{class_file}:{number}: class {name!r} or index {index} repeated")
        classes[name] = index - 1
    if not classes:
        raise DataError(f"{class_file}: no classes listed")

    entries: List[Entry] = []
    seen: set[str] = set()
    for split_name, fname in (("train", f"trainlist0{split}.txt"), ("test", f"testlist0{split}.txt")):
        list_file = splits / fname
        for number, line in _lines(list_file):
            where = f"{list_file}:{number}"
            parts = line.split()
            if split_name == "train" and len(parts) != 2 or split_name == "test" and len(parts) not in (1, 2):
                expected = "'<Class>/<video>.avi <label>'" if split_name == "train" else "'<Class>/<video>.avi'"
                raise DataError(f"{where}: expected {expected}, got {line!r}")
            rel = safe_relative(parts[0], where)
            if len(rel.parts) != 2:
                raise DataError(f"{where}: expected '<Class>/<video>', got {parts[0]!r}")
            class_name = rel.parts[0]  # the folder, not the file name (HandstandPushups quirk)
            if class_name not in classes:
                raise DataError(f"{where}: class {class_name!r} is not in {class_file.name}")
            label = classes[class_name]
            if len(parts) == 2:
                if not parts[1].isdigit() or int(parts[1]) - 1 != label:
                    raise DataError(f"{where}: label {parts[1]!r} does not match class "
                                    f"{class_name!r} (index {label + 1} in {class_file.name})")
            video_id = str(rel.with_suffix(""))
            if video_id in seen:
                raise DataError(f"{where}: video {video_id!r} listed twice")
            seen.add(video_id)
            if check_files and not (videos / rel).is_file():
                raise DataError(f"{where}: video {str(rel)!r} not found under {videos}")
            entries.append(Entry(video_id, str(rel), class_name, label, split_name,
                                 _ucf_group(rel.stem)))
    return to_frame(entries)


_HMDB_SPLIT = re.compile(r"^(?P<cls>.+)_test_split(?P<n>\d)\.txt$")
_HMDB_CODES = {"0": "unused", "1": "train", "2": "test"}


def read_hmdb51(videos: Path, splits: Path, split: int = 1, check_files: bool = True) -> pd.DataFrame:
    """HMDB51 split ``split``: ``<class>_test_split<N>.txt`` lines ``<video>.avi <0|1|2>``.

    HMDB51 ships no class index: labels number the sorted class names (0-based).
    """
    videos, splits = Path(videos), Path(splits)
    files = {}
    for path in sorted(Path(splits).glob(f"*_test_split{split}.txt")):
        match = _HMDB_SPLIT.match(path.name)
        if match:
            files[match.group("cls")] = path
    if not files:
        raise DataError(f"{splits}: no HMDB51 split files '<class>_test_split{split}.txt'")
    labels = {name: i for i, name in enumerate(sorted(files))}
    entries: List[Entry] = []
    seen: set[str] = set()
    for class_name, list_file in files.items():
        for number, line in _lines(list_file):
            where = f"{list_file}:{number}"
            parts = line.split()
            if len(parts) != 2 or parts[1] not in _HMDB_CODES:
                raise DataError(f"{where}: expected '<video>.avi <0|1|2>', got {line!r}")
            name = safe_relative(parts[0], where)
            if len(name.parts) != 1:
                raise DataError(f"{where}: expected a bare file name, got {parts[0]!r}")
            rel = PurePosixPath(class_name) / name
            video_id = str(rel.with_suffix(""))
            if video_id in seen:
                raise DataError(f"{where}: video {video_id!r} listed twice")
            seen.add(video_id)
            split_name = _HMDB_CODES[parts[1]]
            if check_files and split_name != "unused" and not (videos / rel).is_file():
                raise DataError(f"{where}: video {str(rel)!r} not found under {videos}")
            entries.append(Entry(video_id, str(rel), class_name, labels[class_name], split_name, ""))
    return to_frame(entries)


def read_folder(videos: Path) -> pd.DataFrame:
    """Every video file under ``videos``; the class is the first folder (sorted -> label)."""
    videos = Path(videos)
    if not videos.is_dir():
        raise DataError(f"{videos}: video folder not found")
    paths = sorted(p for p in videos.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    if not paths:
        raise DataError(f"{videos}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    rels = [PurePosixPath(p.relative_to(videos).as_posix()) for p in paths]
    classes = sorted({r.parts[0] if len(r.parts) > 1 else "" for r in rels})
    labels = {c: i for i, c in enumerate(classes)}
    entries = []
    for rel in rels:
        cls = rel.parts[0] if len(rel.parts) > 1 else ""
        entries.append(Entry(str(rel.with_suffix("")), str(rel), cls, labels[cls], "train", ""))
    return to_frame(entries)


def to_frame(entries: Iterable[Entry]) -> pd.DataFrame:
    frame = pd.DataFrame([e.__dict__ for e in entries], columns=COLUMNS)
    return frame.astype({"label": "int64"})


def build_manifest(dataset: str, videos: Path, splits: Path | None, split: int = 1,
                   check_files: bool = True) -> pd.DataFrame:
    """The manifest of ``dataset`` (``ucf101``, ``hmdb51`` or ``folder``)."""
    if dataset == "folder":
        return read_folder(videos)
    if splits is None:
        raise DataError(f"dataset {dataset!r} needs the folder of its split files")
    if dataset == "ucf101":
        return read_ucf101(videos, splits, split, check_files)
    if dataset == "hmdb51":
        return read_hmdb51(videos, splits, split, check_files)
    raise DataError(f"unknown dataset format {dataset!r}; valid: ucf101, hmdb51, folder")


def read_manifest(path: Path, where: str | None = None) -> pd.DataFrame:
    """A manifest CSV written by ``vsslpipe extract`` (checked for its columns); ``where`` names
    the option or key the path came from, for messages."""
    path = Path(path)
    prefix = f"{where}: " if where else ""
    if not path.is_file():
        raise DataError(f"{prefix}{path}: manifest not found (run `vsslpipe extract` first)")
    try:
        frame = pd.read_csv(path, dtype={"video_id": str, "path": str, "class_name": str,
                                         "split": str, "group": str, "status": str},
                            keep_default_na=False)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{prefix}{path}: not a manifest CSV ({exc.__class__.__name__})") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{prefix}{path}: not a vsslpipe manifest (missing columns {', '.join(missing)})")
    return frame.astype({"label": "int64"})


def dataset_listing(videos: Path, splits: Path | None, project: Path | None = None) -> dict:
    """A cheap fingerprint of a dataset: every file's relative path, size and modification time.

    DVC depends on this listing instead of hashing the videos in every experiment (a table row
    runs in a fresh temporary copy of the project, which hashes its dependencies again: tens of
    seconds for UCF101's 6.5 GB). Files inside ``project`` (a dataset that is itself a DVC output,
    like the built-in one, is checked out anew in each temporary copy, possibly with new times)
    and the split files are listed by content (md5) instead."""
    import hashlib
    import os

    project = Path(project).resolve() if project is not None else None

    def walk(root: Path, by_content: bool) -> list:
        rows = []
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                st = path.stat()
                rel = path.relative_to(root).as_posix()
                inside = project is not None and project in path.resolve().parents
                key = (hashlib.md5(path.read_bytes()).hexdigest() if by_content or inside
                       else st.st_mtime_ns)
                rows.append([rel, st.st_size, key])
        return sorted(rows)

    return {"videos": str(videos), "files": walk(Path(videos), False),
            "splits": walk(Path(splits), True) if splits is not None and Path(splits).is_dir() else []}
