"""Nearest-neighbour video retrieval: exact inner-product search with FAISS, and R@k.

Test videos query training videos. Ranking is by similarity, ties broken by database order
(lower index first), so results are reproducible; FAISS orders equal scores arbitrarily, so
queries whose top-k has a tie at its boundary are re-ranked exactly with NumPy (rare with real
features). R@k is the percentage of queries with at least one same-class video among the k
nearest; a query whose class has no database video counts as a miss.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .protocols import postprocess

FUSIONS = ("concat", "average")


def brute_force_search(database: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference exact search: (similarities, indices) of the k largest inner products per query,
    ties by lower database index."""
    sims = np.asarray(queries, np.float64) @ np.asarray(database, np.float64).T
    k = min(k, sims.shape[1])
    order = np.lexsort((np.broadcast_to(np.arange(sims.shape[1]), sims.shape), -sims), axis=1)[:, :k]
    return np.take_along_axis(sims, order, axis=1).astype(np.float32), order.astype(np.int64)


def _faiss_index(dim: int, use_gpu: bool):
    import faiss

    index = faiss.IndexFlatIP(dim)
    if use_gpu and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


def search(database: np.ndarray, queries: np.ndarray, k: int,
           use_gpu: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner-product search with FAISS (GPU when faiss sees one)."""
    database = np.ascontiguousarray(database, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n = len(database)
    k = min(k, n)
    index = _faiss_index(database.shape[1], use_gpu)
    index.add(database)
    probe = min(k + 1, n)  # one extra to see ties across the k boundary
    sims, idx = index.search(queries, probe)
    # Stable order within the returned list: similarity descending, then index ascending.
    order = np.lexsort((idx, -sims), axis=1)
    sims, idx = np.take_along_axis(sims, order, axis=1), np.take_along_axis(idx, order, axis=1)
    if probe > k:
        boundary_tie = sims[:, k - 1] == sims[:, k]
        if boundary_tie.any():
            rows = np.flatnonzero(boundary_tie)
            exact_sims, exact_idx = brute_force_search(database, queries[rows], k)
            sims[rows, :k], idx[rows, :k] = exact_sims, exact_idx
    return sims[:, :k], idx[:, :k]


def recall_at_k(query_labels: np.ndarray, neighbour_labels: np.ndarray,
                ks: Iterable[int]) -> dict[str, float]:
    """``{"R@k": percent}``: queries with a same-class video among their first k neighbours."""
    query_labels = np.asarray(query_labels)
    hits = np.asarray(neighbour_labels) == query_labels[:, None]
    return {f"R@{k}": float(100.0 * hits[:, :k].any(axis=1).mean()) for k in ks}


def first_hit_rank(query_labels: np.ndarray, neighbour_labels: np.ndarray) -> np.ndarray:
    """1-based rank of the first same-class neighbour, 0 when none is retrieved."""
    hits = np.asarray(neighbour_labels) == np.asarray(query_labels)[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)


def prepare(train: Sequence[np.ndarray], test: Sequence[np.ndarray], center: bool,
            fusion: str = "concat") -> tuple[np.ndarray, np.ndarray]:
    """Post-process each stream's train and test features (per set), then fuse the streams.

    ``concat`` of L2-normalised streams makes the inner product the sum of the streams'
    similarity matrices (CoCLR's two-stream rule); ``average`` averages the normalised features
    and re-normalises.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    db = [postprocess(x, center) for x in train]
    q = [postprocess(x, center) for x in test]
    if len(db) == 1:
        return db[0], q[0]
    if fusion == "concat":
        return np.concatenate(db, axis=1), np.concatenate(q, axis=1)
    if len({x.shape[1] for x in db}) != 1:
        raise ValueError("fusion 'average' needs streams of equal feature size; use 'concat'")
    return postprocess(np.mean(db, axis=0), False), postprocess(np.mean(q, axis=0), False)
