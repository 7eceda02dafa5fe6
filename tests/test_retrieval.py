"""Retrieval: R@k on hand-made feature sets, FAISS against NumPy brute force, fusion."""
from __future__ import annotations

import numpy as np
import pytest

from vsslpipe.eval.protocols import postprocess
from vsslpipe.eval.retrieval import (brute_force_search, first_hit_rank, prepare, recall_at_k,
                                     search)


def test_recall_hand_made_known_answers():
    # Database on the unit circle: classes 0, 1, 2 at 0, 90, 180 degrees (two videos each).
    db = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [-1, 0], [-0.9, -0.1]], np.float32)
    db_labels = np.array([0, 0, 1, 1, 2, 2])
    queries = np.array([[1, 0.05],      # class 0, nearest is class 0            -> hit at 1
                        [0.95, 0.3],    # class 1, nearest two are class 0       -> hit at 3
                        [-1, 0.01],     # class 3: no such class in the database -> never
                        ], np.float32)
    q_labels = np.array([0, 1, 3])
    _, idx = search(db, queries, 6)
    nl = db_labels[idx]
    r = recall_at_k(q_labels, nl, [1, 2, 3, 6])
    assert r == pytest.approx({"R@1": 100 / 3, "R@2": 100 / 3, "R@3": 200 / 3, "R@6": 200 / 3})
    assert first_hit_rank(q_labels, nl).tolist() == [1, 3, 0]


def test_ties_are_broken_by_database_order():
    # Three identical database vectors of classes 1, 0, 0: the query ties with all of them.
    db = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], np.float32)
    db_labels = np.array([1, 0, 0, 2])
    queries = np.tile(np.array([[1, 0]], np.float32), (30, 1))  # >= 20 queries: FAISS's BLAS path
    for k in (1, 2, 3):
        sims, idx = search(db, queries, k)
        assert (idx == np.arange(k)).all()
        assert np.allclose(sims, 1.0)
    _, idx = search(db, queries, 2)
    r = recall_at_k(np.zeros(30, int), db_labels[idx], [1, 2])
    assert r == {"R@1": 0.0, "R@2": 100.0}    # the class-1 video comes first: a miss at 1
    r = recall_at_k(np.ones(30, int), db_labels[idx], [1])
    assert r == {"R@1": 100.0}


@pytest.mark.parametrize("n_queries", [7, 60])
def test_faiss_matches_numpy_brute_force(n_queries):
    rng = np.random.default_rng(0)
    db = postprocess(rng.normal(size=(150, 24)), False)
    db[10] = db[3]                              # an exact duplicate: a tie
    queries = postprocess(rng.normal(size=(n_queries, 24)), False)
    queries[0] = db[3]
    sims, idx = search(db, queries, 20)
    ref_sims, ref_idx = brute_force_search(db, queries, 20)
    assert (idx == ref_idx).all()
    assert np.allclose(sims, ref_sims, atol=1e-5)
    assert idx[0, :2].tolist() == [3, 10]


def test_k_larger_than_database_is_capped():
    db = np.eye(3, dtype=np.float32)
    sims, idx = search(db, db, 50)
    assert idx.shape == (3, 3)
    assert (idx[:, 0] == np.arange(3)).all()


def test_coclr_postprocess_centres_each_set_then_normalises():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 5)) + 3.0
    out = postprocess(x, center=True)
    expected = x - x.mean(axis=0)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(out, expected, atol=1e-6)
    assert np.allclose(np.linalg.norm(postprocess(x, center=False), axis=1), 1.0)


def test_concat_fusion_sums_the_similarity_matrices():
    rng = np.random.default_rng(2)
    tr = [rng.normal(size=(12, 6)), rng.normal(size=(12, 4))]
    te = [rng.normal(size=(5, 6)), rng.normal(size=(5, 4))]
    db, q = prepare(tr, te, center=True, fusion="concat")
    expected = sum(postprocess(b, True) @ postprocess(a, True).T for a, b in zip(tr, te))
    assert np.allclose(q @ db.T, expected, atol=1e-5)
    db_avg, q_avg = prepare([tr[0], tr[0] * 2], [te[0], te[0]], center=False, fusion="average")
    assert np.allclose(db_avg, postprocess(tr[0], False), atol=1e-6)
    with pytest.raises(ValueError):
        prepare(tr, te, center=False, fusion="average")
