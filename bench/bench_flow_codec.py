"""What reading a flow window costs a loader worker, per codec: the decision data for the
flow store's format.

The flow-stream paper experiments need more worker cores than the issue's target (bench_loader:
``cvtcl_paper_init_flow`` ~34 cores at the FLOP-estimated GPU rate), and most of a flow worker's
time is inflating the store's gzip chunks. This measures, on one core, the CPU-ms to read one
32-pair window at 170x128 (UCF101 at short side 128, S3D's clip) and the bytes per pair for:

- ``gzip-4 (h5py)``: the store as written today (zlib level 4, one chunk per pair), read
  through h5py's filter: what the loader does now;
- the same bytes read with ``read_direct_chunk`` and inflated by zlib, by ISA-L (``isal``) or
  by zlib-ng (``zlib-ng``): faster inflaters of the *same* format, no change to the store;
- other formats: HDF5's built-in LZF, LZ4 and Zstd through ``hdf5plugin``, and uncompressed.

Content: OpenCV TV-L1 flow of pan/zoom shots over scikit-image photographs (the carried
reference, bench/data/tvl1_reference.npz), quantised as the store quantises it; its 4 pairs are
flipped and rolled into 32 distinct pairs. Libraries not installed are reported as skipped.
CPU time is the thread's (``time.thread_time``), so other work on a shared machine does not count.

    python bench/bench_flow_codec.py [--repeats 30]
Writes bench/results/flow_codec.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import zlib
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
PAIRS = 32


def window() -> np.ndarray:
    ref = np.load(HERE / "data" / "tvl1_reference.npz")["flow_128x170"]   # (4, 128, 170, 2) uint8
    out = []
    for i in range(PAIRS):
        pair = ref[i % len(ref)]
        if (i // len(ref)) % 2:
            pair = pair[:, ::-1]
        out.append(np.roll(pair, 7 * (i // (2 * len(ref))), axis=0))
    return np.ascontiguousarray(np.stack(out))


def _inflaters() -> dict:
    out = {"zlib": zlib.decompress}
    try:
        from isal import isal_zlib
        out["isal"] = isal_zlib.decompress
    except ImportError:
        out["isal"] = None
    try:
        from zlib_ng import zlib_ng
        out["zlib-ng"] = zlib_ng.decompress
    except ImportError:
        out["zlib-ng"] = None
    return out


def _formats() -> dict:
    """name -> h5py create_dataset keyword arguments (None: library missing)."""
    out = {"gzip-4 (h5py)": dict(compression="gzip", compression_opts=4),
           "lzf": dict(compression="lzf"), "none": {}}
    try:
        import hdf5plugin
        out["lz4 (hdf5plugin)"] = dict(hdf5plugin.LZ4())
        out["zstd-1 (hdf5plugin)"] = dict(hdf5plugin.Zstd(clevel=1))
        out["zstd-3 (hdf5plugin)"] = dict(hdf5plugin.Zstd(clevel=3))
    except ImportError:
        for name in ("lz4 (hdf5plugin)", "zstd-1 (hdf5plugin)", "zstd-3 (hdf5plugin)"):
            out[name] = None
    return out


def _cpu_ms(read, repeats: int) -> float:
    read()                                        # warm the file's pages and HDF5's caches
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        read()
        times.append(time.thread_time() - t0)
    return 1e3 * float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default=str(HERE / "results" / "flow_codec.json"))
    args = ap.parse_args()
    data = window()
    shape = data.shape
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, kwargs in _formats().items():
            if kwargs is None:
                rows.append({"codec": name, "skipped": "library not installed"})
                continue
            path = Path(tmp) / f"{len(rows)}.h5"
            with h5py.File(path, "w") as f:
                f.create_dataset("flow", data=data, chunks=(1,) + shape[1:], **kwargs)
            # no chunk cache: a loader's random windows over thousands of videos never hit it
            with h5py.File(path, "r", rdcc_nbytes=0) as f:
                ds = f["flow"]
                assert np.array_equal(ds[:], data)
                nbytes = ds.id.get_storage_size() / PAIRS
                rows.append({"codec": name, "bytes_per_pair": nbytes,
                             "ms_per_window": _cpu_ms(lambda: ds[0:PAIRS], args.repeats)})
                if name.startswith("gzip"):
                    for inflater, fn in _inflaters().items():
                        label = f"gzip-4, direct chunks + {inflater}"
                        if fn is None:
                            rows.append({"codec": label, "skipped": "library not installed"})
                            continue

                        def read(fn=fn):
                            raw = [ds.id.read_direct_chunk((i, 0, 0, 0)) for i in range(PAIRS)]
                            buf = b"".join(fn(b) if mask == 0 else b for mask, b in raw)
                            return np.frombuffer(buf, np.uint8).reshape(shape)

                        assert np.array_equal(read(), data)
                        rows.append({"codec": label, "bytes_per_pair": nbytes,
                                     "ms_per_window": _cpu_ms(read, args.repeats)})
    base = rows[0]["ms_per_window"]
    raw_bytes = float(np.prod(shape[1:]))
    print(f"one {PAIRS}-pair flow window at {shape[2]}x{shape[1]}, uint8; CPU-ms on one core "
          f"(median of {args.repeats}); raw pair {raw_bytes / 1e3:.1f} kB")
    print(f"{'codec':40s} {'kB/pair':>8s} {'x raw':>6s} {'ms/window':>10s} {'x today':>8s}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['codec']:40s} skipped: {r['skipped']}")
            continue
        r["size_vs_raw"] = r["bytes_per_pair"] / raw_bytes
        r["speed_vs_today"] = base / r["ms_per_window"]
        print(f"{r['codec']:40s} {r['bytes_per_pair'] / 1e3:8.1f} {r['size_vs_raw']:6.2f} "
              f"{r['ms_per_window']:10.2f} {r['speed_vs_today']:8.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"pairs_per_window": PAIRS, "height": shape[1],
                                          "width": shape[2], "repeats": args.repeats,
                                          "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
