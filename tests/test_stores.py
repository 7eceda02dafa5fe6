"""Stores as folders of shards: the index, readers of both layouts, wrong kinds, replacing an old
store, resume with failures, scratch cleanup, and flow packing off the driving thread."""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import threading

import cv2
import h5py
import numpy as np
import pytest

from vsslpipe.data import h5parts
from vsslpipe.data.flowstore import FlowStore, pack_flow, write_flow_group
from vsslpipe.data.framestore import (FrameStore, encode_jpeg, is_store, store_files, store_kind,
                                      write_video_group)
from vsslpipe.data.manifest import read_ucf101
from vsslpipe.errors import DataError
from vsslpipe.video import extract as extract_mod
from vsslpipe.video.extract import ExtractSettings, extract_videos

ATTRS = {"schema": "vsslpipe-frames", "schema_version": 1, "settings": "{}"}


def _videos(n: int = 7) -> dict[str, list[np.ndarray]]:
    """``n`` videos of 1-5 distinct random 16x20 JPEG frames, ids over three classes."""
    rng = np.random.default_rng(0)
    return {f"C{i % 3}/v{i:02d}": [encode_jpeg(rng.integers(0, 255, (16, 20, 3), dtype=np.uint8), 90)
                                   for _ in range(1 + i % 5)] for i in range(n)}


def _fill(jpegs):
    return lambda g: write_video_group(g, jpegs, 16, 20, 25.0, "synthetic")


def write_sharded(out, videos, per_shard=3, order=None, attrs=ATTRS):
    chunks = h5parts.plan_chunks(videos, per_shard)
    scratch = h5parts.scratch_dir(out, attrs)
    h5parts.prepare_scratch(out, scratch)
    writer = h5parts.ShardWriter(scratch, chunks, attrs)
    for vid in order or sorted(videos):
        writer.add(vid, len(videos[vid]), _fill(videos[vid]))
    return h5parts.finalise(scratch, out, chunks, attrs, per_shard)


def write_single(out, videos):
    parts = [(vid, h5parts.write_part(out.parent / "parts", vid, _fill(j))) for vid, j in videos.items()]
    h5parts.merge_parts(parts, out, ATTRS)


@pytest.fixture
def stores(tmp_path):
    videos = _videos()
    write_sharded(tmp_path / "frames", videos)
    write_single(tmp_path / "single.h5", videos)
    return videos, tmp_path / "frames", tmp_path / "single.h5"


def test_layout_index_links_and_files(stores, tmp_path, monkeypatch):
    videos, folder, _ = stores
    shards = sorted((folder / "shards").glob("*.h5"))
    assert len(shards) == 3                                     # 7 videos, 3 per shard
    assert store_files(folder) == [folder / "index.h5"] + shards + [folder / "failures.csv"]
    assert sorted(os.listdir(tmp_path)) == ["frames", "parts", "single.h5"]   # no scratch left
    monkeypatch.chdir(tmp_path / "parts")           # links resolve beside the index, not the cwd
    with h5py.File(folder / "index.h5", "r") as f:
        assert list(f["video_ids"].asstr()[()]) == sorted(videos)
        for vid, jpegs in videos.items():
            link = f[vid.rsplit("/", 1)[0]].get(vid.rsplit("/", 1)[1], getlink=True)
            assert isinstance(link, h5py.ExternalLink) and link.filename.startswith("shards/")
            assert [bytes(b) for b in f[vid]["frames"][()]] == [bytes(j) for j in jpegs]
    assert store_kind(folder) == store_kind(folder / "index.h5") == "vsslpipe-frames"
    assert is_store(folder, "vsslpipe-frames") and not is_store(folder, "vsslpipe-flow")
    assert store_kind(shards[0]) is None and not is_store(tmp_path / "parts")


def test_both_layouts_read_the_same(stores):
    videos, folder, single = stores
    a, b = FrameStore(folder), FrameStore(single)
    assert a.video_ids() == b.video_ids() == sorted(videos)
    for vid, jpegs in videos.items():
        assert a.num_frames(vid) == b.num_frames(vid) == len(jpegs)
        np.testing.assert_array_equal(a.read(vid), b.read(vid))
        expected = np.stack([cv2.cvtColor(cv2.imdecode(j, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                             for j in jpegs])
        np.testing.assert_array_equal(a.read(vid), expected)
        np.testing.assert_array_equal(a.read(vid, 1, None, 2), expected[1::2])
        assert a.video_attrs(vid) == b.video_attrs(vid)
        assert vid in a and vid in b
    with pytest.raises(DataError, match="no video 'C0/nope' in the frame store"):
        a.read("C0/nope")


def test_reader_opens_shards_itself_with_a_bounded_cache(stores, monkeypatch):
    videos, folder, _ = stores
    monkeypatch.setattr(FrameStore, "MAX_OPEN", 2)
    store = FrameStore(folder)
    for vid in sorted(videos) * 2:
        assert len(store.read_jpeg(vid)) == len(videos[vid])
        assert len(store._open) <= 2
    names = {os.path.basename(f.filename) for f in store._open.values()}
    assert names <= {p.name for p in (folder / "shards").iterdir()}   # shards, not index.h5


def _read_all(store):
    return {vid: store.read(vid).sum() for vid in store.video_ids()}


def test_reader_pickles_and_forks(stores):
    _, folder, _ = stores
    store = FrameStore(folder)
    expected = _read_all(store)                   # handles are open in this process now
    copy = pickle.loads(pickle.dumps(store))
    assert copy._open == {} and _read_all(copy) == expected
    with mp.get_context("fork").Pool(1) as pool:  # a DataLoader worker forked with open handles
        assert pool.apply(_read_all, (store,)) == expected


def test_wrong_kinds_are_one_line(stores, tmp_path):
    _, folder, single = stores
    assert str(_err(FlowStore, folder)) == (
        f"{folder}: not a vsslpipe flow store: it is a vsslpipe frame store (from `vsslpipe "
        "extract`); run `vsslpipe flow` to make one")
    assert str(_err(FlowStore, single)).startswith(f"{single}: not a vsslpipe flow store: it is "
                                                   "a vsslpipe frame store")
    shard = next((folder / "shards").iterdir())
    assert str(_err(FrameStore, shard)) == (
        f"{shard}: one shard of a frame store, not the store: give the store folder (the one "
        "holding index.h5)")
    assert str(_err(FrameStore, tmp_path / "nope")) == (
        f"{tmp_path / 'nope'}: frame store not found (run `vsslpipe extract`)")
    (tmp_path / "empty").mkdir()
    assert str(_err(FrameStore, tmp_path / "empty")) == (
        f"{tmp_path / 'empty'}: frame store not found (run `vsslpipe extract`)")
    (tmp_path / "cut.h5").write_bytes((folder / "index.h5").read_bytes()[:500])
    assert "not a readable HDF5 file" in str(_err(FrameStore, tmp_path / "cut.h5"))
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    assert str(_err(FrameStore, tmp_path / "other.h5")).endswith(
        "it is an HDF5 file of another kind (no vsslpipe schema attribute); run `vsslpipe "
        "extract` to make one")


def test_a_missing_shard_is_one_line(tmp_path):
    videos = _videos(4)
    write_sharded(tmp_path / "frames", videos)
    shard = sorted((tmp_path / "frames" / "shards").iterdir())[-1]
    shard.unlink()
    store = FrameStore(tmp_path / "frames")
    assert store.num_frames("C2/v02") == 3                    # lengths come from the index
    with pytest.raises(DataError) as info:
        store.read("C2/v02")
    assert str(info.value) == (f"{tmp_path / 'frames'}: cannot read its shard {shard.name} "
                               "(FileNotFoundError: the store is damaged; run `vsslpipe extract` again)")


def _err(cls, path) -> DataError:
    with pytest.raises(DataError) as info:
        cls(path)
    assert "\n" not in str(info.value)
    return info.value


def test_order_of_results_does_not_change_the_store(tmp_path):
    videos = _videos(8)
    a = write_sharded(tmp_path / "a", videos)
    b = write_sharded(tmp_path / "b", videos, order=sorted(videos)[::-1])
    assert a.store_id == b.store_id == FrameStore(tmp_path / "a").store_id
    for name in os.listdir(tmp_path / "a" / "shards"):       # byte for byte
        assert (tmp_path / "a/shards" / name).read_bytes() == (tmp_path / "b/shards" / name).read_bytes()
    fewer = write_sharded(tmp_path / "c", dict(list(videos.items())[:-1]))
    assert fewer.store_id != a.store_id


def test_writer_refuses_a_second_result_and_abort_leaves_nothing(tmp_path):
    videos = _videos(4)
    chunks = h5parts.plan_chunks(videos, 3)
    scratch = h5parts.scratch_dir(tmp_path / "s", ATTRS)
    h5parts.prepare_scratch(tmp_path / "s", scratch)
    writer = h5parts.ShardWriter(scratch, chunks, ATTRS)
    first = sorted(videos)[0]
    writer.add(first, 1, _fill(videos[first]))
    with pytest.raises(ValueError, match="given twice"):
        writer.fail(first, "again")
    writer.abort()
    assert os.listdir(scratch / "shards") == []


def test_finalise_moves_shards_without_copying_and_replaces_an_old_store(tmp_path):
    videos = _videos(5)
    out = tmp_path / "frames"
    write_single(out, videos)                                  # an old single-file store there
    other = h5parts.scratch_dir(out, {"other": "settings"})    # and another setting's scratch
    (other / "shards").mkdir(parents=True)
    (tmp_path / "frames.tmp-host-1-abcd").mkdir()             # a swap a killed run left
    chunks = h5parts.plan_chunks(videos, 2)
    scratch = h5parts.scratch_dir(out, ATTRS)
    h5parts.prepare_scratch(out, scratch)
    assert not (tmp_path / "frames.tmp-host-1-abcd").exists()
    writer = h5parts.ShardWriter(scratch, chunks, ATTRS)
    for vid in sorted(videos):
        writer.add(vid, len(videos[vid]), _fill(videos[vid]))
    (scratch / "shards" / "shard-00009-stale.h5").write_bytes(b"another id list's shard")
    inodes = {p.name: p.stat().st_ino for p in (scratch / "shards").glob("shard-0000[0-2]*")}
    h5parts.finalise(scratch, out, chunks, ATTRS, 2)
    assert out.is_dir() and sorted(os.listdir(tmp_path)) == ["frames", "parts"]  # scratch gone
    assert {p.name: p.stat().st_ino for p in (out / "shards").iterdir()} == inodes  # renamed
    assert FrameStore(out).video_ids() == sorted(videos)


def test_resumed_extract_knows_the_failures_of_finished_shards(tiny_dataset, tmp_path, monkeypatch):
    manifest = read_ucf101(tiny_dataset / "videos", tiny_dataset / "ucfTrainTestlist")
    broken = tmp_path / "videos"
    os.symlink(tiny_dataset / "videos", broken, target_is_directory=True)
    manifest.loc[0, "path"] = "missing/not_there.avi"          # fails: in the first shard
    settings = ExtractSettings(short_side=0, videos_per_shard=3)
    extract_videos(manifest, broken, tmp_path / "ref", settings, progress=False)

    real, calls = extract_mod.extract_one, []

    def killed_at_five(task):
        calls.append(task[0])
        if len(calls) == 5:
            raise KeyboardInterrupt                            # a kill in the second shard
        return real(task)

    monkeypatch.setattr(extract_mod, "extract_one", killed_at_five)
    with pytest.raises(KeyboardInterrupt):
        extract_videos(manifest, broken, tmp_path / "run", settings, progress=False)
    scratch = h5parts.scratch_dir(tmp_path / "run", settings.as_dict())
    assert len(h5parts.finished_shards(scratch)) == 1 and len(os.listdir(scratch / "shards")) == 1
    calls.clear()
    monkeypatch.setattr(extract_mod, "extract_one", lambda t: calls.append(t[0]) or real(t))
    result = extract_videos(manifest, broken, tmp_path / "run", settings, progress=False)
    assert len(calls) == len(manifest) - 3 and result.reused == 3
    assert result.failures == [(manifest.loc[0, "video_id"], result.failures[0][1])]
    assert (tmp_path / "run/failures.csv").read_text() == (tmp_path / "ref/failures.csv").read_text()
    assert FrameStore(tmp_path / "run").store_id == FrameStore(tmp_path / "ref").store_id
    assert extract_mod.failures_path(tmp_path / "run") == tmp_path / "run" / "failures.csv"


def test_packed_flow_equals_the_gzip_filter_and_reads_back(tmp_path):
    rng = np.random.default_rng(1)
    q = np.clip(rng.normal(128, 2, (4, 12, 10, 2)), 0, 255).astype(np.uint8)
    q[1] = rng.integers(0, 256, q[1].shape)                    # incompressible: stored raw
    assert pack_flow(q).raw == [False, True, False, False]
    with h5py.File(tmp_path / "f.h5", "w") as f:
        write_flow_group(f.create_group("ours"), q)
        f.create_dataset("h5py", data=q, chunks=(1, 12, 10, 2), compression="gzip",
                         compression_opts=4)
        write_flow_group(f.create_group("empty"), q[:0])
    with h5py.File(tmp_path / "f.h5", "r") as f:
        np.testing.assert_array_equal(f["ours/flow"][()], q)
        for i in (0, 2, 3):                                    # the same bytes as HDF5's filter
            assert f["ours/flow"].id.read_direct_chunk((i, 0, 0, 0)) == \
                f["h5py"].id.read_direct_chunk((i, 0, 0, 0))
        assert f["empty/flow"].shape == (0, 12, 10, 2) and f["ours/flow"].attrs["num_pairs"] == 4


def test_torch_flow_packs_and_writes_off_the_driving_thread(tmp_path, monkeypatch):
    import vsslpipe.flow.compute as compute

    videos = {f"A/v{i}": [encode_jpeg(cv2.GaussianBlur(
        np.random.default_rng(i).integers(0, 255, (24, 28, 3), dtype=np.uint8), (0, 0), 2)[:, s:s + 20], 95)
        for s in range(3)] for i in range(3)}
    frames = tmp_path / "frames"
    write_sharded(frames, videos, per_shard=2)
    threads = {"pack": set(), "write": set()}
    real_pack, real_write = compute.pack_flow, compute.write_packed_flow
    monkeypatch.setattr(compute, "pack_flow", lambda *a: threads["pack"].add(
        threading.current_thread().name) or real_pack(*a))
    monkeypatch.setattr(compute, "write_packed_flow", lambda *a: threads["write"].add(
        threading.current_thread().name) or real_write(*a))
    settings = compute.FlowSettings(backend="torch", videos_per_shard=2)
    result = compute.compute_flow(frames, sorted(videos), tmp_path / "flow", settings, progress=False)
    main = threading.main_thread().name
    assert result.videos == 3 and result.pairs == 6
    assert threads["pack"] and main not in threads["pack"]
    assert threads["write"] == {"flow-writer"}
    assert FlowStore(tmp_path / "flow").read("A/v1").shape == (2, 24, 20, 2)
