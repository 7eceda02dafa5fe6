"""Edit distance and shuffle-degree sampling (CACL SDP) against independent computations."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from vsslpipe.losses import edit_distance, sample_shuffle
from vsslpipe.losses.shuffle import (distance_to_label, label_to_distance, reachable_distances,
                                     sample_moved_frames_shuffle, sample_shuffle_degree)


def reference_levenshtein(a, b) -> int:
    """Textbook full-matrix dynamic program (insert, delete, substitute: cost 1)."""
    table = np.zeros((len(a) + 1, len(b) + 1), dtype=int)
    table[:, 0] = np.arange(len(a) + 1)
    table[0, :] = np.arange(len(b) + 1)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i, j] = min(table[i - 1, j] + 1, table[i, j - 1] + 1,
                              table[i - 1, j - 1] + (a[i - 1] != b[j - 1]))
    return int(table[-1, -1])


def test_edit_distance_matches_dynamic_program_on_random_sequences():
    rng = np.random.default_rng(0)
    for _ in range(400):
        la, lb = rng.integers(0, 14, size=2)
        alphabet = int(rng.integers(1, 6))
        a = rng.integers(0, alphabet, size=la).tolist()
        b = rng.integers(0, alphabet, size=lb).tolist()
        assert edit_distance(a, b) == reference_levenshtein(a, b), (a, b)


def test_edit_distance_on_various_sequence_types():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance((1, 2, 3), np.array([1, 3])) == 1
    assert edit_distance([2**61 - 1], [0]) == 1          # equal hashes, different values
    assert edit_distance([[1], [2]], [[2], [1]]) == 2    # unhashable elements
    assert edit_distance(["a", (1, 2)], [(1, 2)]) == 1


@pytest.mark.parametrize("n", range(1, 8))
def test_reachable_distances_match_enumeration(n):
    found = {edit_distance(range(n), p) for p in itertools.permutations(range(n))}
    assert sorted(found) == reachable_distances(n)


@pytest.mark.parametrize("n", [4, 5, 8, 16])
def test_sample_shuffle_is_exact_for_every_distance(n):
    rng = np.random.default_rng(n)
    for distance in reachable_distances(n):
        seen = set()
        for _ in range(60):
            perm = sample_shuffle(n, distance, rng)
            assert sorted(perm.tolist()) == list(range(n))
            assert reference_levenshtein(list(range(n)), perm.tolist()) == distance
            seen.add(tuple(perm.tolist()))
        if n == 16 and 0 < distance:
            assert len(seen) > 40, f"distance {distance}: only {len(seen)} distinct permutations"


def test_sample_shuffle_rejects_unreachable_distances():
    rng = np.random.default_rng(0)
    for n, d in [(16, 1), (16, 17), (3, 3), (16, -1)]:
        with pytest.raises(ValueError):
            sample_shuffle(n, d, rng)


def test_shuffle_degree_classes_are_uniform():
    rng = np.random.default_rng(1)
    draws = 3200
    labels = np.array([distance_to_label(sample_shuffle_degree(16, rng)[1]) for _ in range(draws)])
    counts = np.bincount(labels, minlength=16)
    assert counts.min() > 0 and len(counts) == 16
    assert stats.chisquare(counts).pvalue > 1e-3


def test_label_mapping_follows_cacl_numbering():
    assert [distance_to_label(d) for d in reachable_distances(16)] == list(range(16))
    assert all(label_to_distance(distance_to_label(d)) == d for d in reachable_distances(16))
    with pytest.raises(ValueError):
        distance_to_label(1)


def test_moved_frames_sampler_labels_its_actual_distance():
    rng = np.random.default_rng(2)
    for _ in range(100):
        perm, distance = sample_moved_frames_shuffle(16, rng)
        assert reference_levenshtein(list(range(16)), perm.tolist()) == distance
