"""Shuffle-degree prediction (CACL, Guo et al. CVPR 2022, Sec. 3.3): edit distance and shuffles.

The SDP label of a clip ``x`` and its shuffled copy ``x_hat`` is the Levenshtein distance (insert,
delete, substitute, each cost 1) between their frame-index sequences. For ``n >= 4`` distinct frames
every distance in ``{0, 2, 3, ..., n}`` occurs and no other (1 is impossible: a non-identity
permutation differs from the identity in at least two positions, and one insertion or deletion
changes the length). Reachability of ``n`` itself for ``n >= 4`` is checked by enumeration in the
tests for small ``n``; appending a common frame never changes the distance, so every smaller
distance stays reachable as ``n`` grows. For ``n = 2, 3`` only ``{0, 2}`` occur.

Labels follow CACL's code: distance 0 -> label 0, distance ``d >= 2`` -> label ``d - 1``
(``n`` label values for ``n`` frames).

**Uniform shuffle-degree sampling** (the paper): draw the distance uniformly from the reachable
ones, then a permutation with exactly that distance. The paper rejects plain random shuffles until
one has the drawn distance; for 16 frames that takes ~10^5 shuffles for distance 7 and more for
smaller ones. Here the proposal shuffles a random subset of ``m = min(n, d + 3)`` frames
(uniformly among themselves) and keeps the result when its exact distance is ``d``; for 16 frames
about 1 proposal in 10 is kept. Two consequences, stated so nobody is surprised:
- For ``d >= n - 3`` the proposal is a full shuffle, so the permutation follows exactly the paper's
  law (a uniform random permutation conditioned on distance ``d``).
- For smaller ``d`` permutations moving more than ``d + 3`` frames are never produced (e.g. a
  rotation of the whole clip, distance 2); among those that move the same number of frames, every
  permutation is equally likely.
"""
from __future__ import annotations

from typing import Any, Hashable, Sequence

import numpy as np
from rapidfuzz.distance import Levenshtein

__all__ = [
    "edit_distance", "sample_shuffle", "sample_shuffle_degree", "sample_moved_frames_shuffle",
    "reachable_distances", "distance_to_label", "label_to_distance", "num_shuffle_classes",
]

# Proposal: shuffle m = d + EXTRA_MOVED frames. Larger m is closer to the paper's full-shuffle law
# but is kept less often (16 frames: ~30 % at +1, ~10 % at +3, ~2 % at +4).
EXTRA_MOVED = 3
# After this many rejected proposals the subset shrinks by one frame (m = d is kept >= 10 % of the
# time for 16 frames), so every call terminates quickly whatever ``n`` is.
TRIES_PER_SIZE = 64
MAX_TRIES = 200_000


def _as_list(seq: Any) -> list:
    if isinstance(seq, np.ndarray):
        return seq.tolist()
    return list(seq)


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance (unit costs) between two sequences of any elements compared with ``==``.

    Strings are compared by character; lists, tuples, numpy arrays and other sequences by element.
    RapidFuzz computes it (bit-parallel, C++); it compares non-string elements through their hash,
    which can collide (``hash(2**61 - 1) == hash(0)``), so elements are first replaced by dense
    integer codes assigned by equality. Unhashable elements fall back to a plain dynamic program.
    """
    if isinstance(a, str) and isinstance(b, str):
        return int(Levenshtein.distance(a, b))
    a, b = _as_list(a), _as_list(b)
    codes: dict[Hashable, int] = {}
    try:
        ca = [codes.setdefault(x, len(codes)) for x in a]
        cb = [codes.setdefault(x, len(codes)) for x in b]
    except TypeError:  # unhashable elements (lists, arrays): compare with == in a plain DP
        return _levenshtein_dp(a, b)
    return int(Levenshtein.distance(ca, cb))


def _levenshtein_dp(a: list, b: list) -> int:
    """Wagner-Fischer with one row kept; only used for unhashable elements."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (0 if x == y else 1))
        prev = cur
    return prev[-1]


def reachable_distances(num_frames: int) -> list[int]:
    """Edit distances a permutation of ``num_frames`` distinct frames can have to the identity."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_frames == 1:
        return [0]
    if num_frames <= 3:
        return [0, 2]
    return [0, *range(2, num_frames + 1)]


def num_shuffle_classes(num_frames: int) -> int:
    """Size of the SDP label space (``num_frames``: labels 0..n-1, CACL's numbering)."""
    return num_frames


def distance_to_label(distance: int) -> int:
    """CACL's class numbering: distance 0 -> 0, distance d >= 2 -> d - 1."""
    if distance == 0:
        return 0
    if distance < 2:
        raise ValueError(f"edit distance {distance} is not reachable by a permutation")
    return distance - 1


def label_to_distance(label: int) -> int:
    """Inverse of :func:`distance_to_label`."""
    return 0 if label == 0 else label + 1


def sample_shuffle(num_frames: int, distance: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(num_frames)`` at edit distance exactly ``distance`` from the identity.

    Returns an int64 array ``p``; the shuffled clip is ``clip[p]``. See the module docstring for
    the law of the result. Raises ValueError for a distance no permutation has.
    """
    if distance not in reachable_distances(num_frames):
        raise ValueError(f"no permutation of {num_frames} frames has edit distance {distance}; "
                         f"reachable: {reachable_distances(num_frames)}")
    identity = list(range(num_frames))
    perm = np.arange(num_frames)
    if distance == 0:
        return perm
    moved = min(num_frames, distance + EXTRA_MOVED)
    tries = 0
    while True:
        # rng.permutation(n)[:m] is a uniform m-subset (faster than rng.choice without replacement).
        positions = rng.permutation(num_frames)[:moved]
        candidate = perm.copy()
        candidate[positions] = positions[rng.permutation(moved)]
        if Levenshtein.distance(identity, candidate.tolist()) == distance:
            return candidate
        tries += 1
        if tries % TRIES_PER_SIZE == 0 and moved > distance:
            moved -= 1
        if tries >= MAX_TRIES:   # never reached for n <= 16 (all tested); a guard, not a path
            raise RuntimeError(f"no permutation of {num_frames} frames at distance {distance} "
                               f"found in {MAX_TRIES} proposals")


def sample_shuffle_degree(num_frames: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Uniform shuffle-degree sampling: a distance uniform over the reachable ones, then a
    permutation with that distance. Returns ``(permutation, distance)``."""
    choices = reachable_distances(num_frames)
    distance = choices[int(rng.integers(len(choices)))]
    return sample_shuffle(num_frames, distance, rng), distance


def sample_moved_frames_shuffle(num_frames: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """CACL's released sampler (a compatibility switch): the number of moved frames ``k`` is drawn
    uniformly from 1..n and ``k`` random frames are shuffled among themselves; the label is the
    resulting exact distance, which is *not* uniform over the classes."""
    moved = int(rng.integers(1, num_frames + 1))
    positions = rng.permutation(num_frames)[:moved]
    perm = np.arange(num_frames)
    perm[positions] = positions[rng.permutation(moved)]
    return perm, int(Levenshtein.distance(list(range(num_frames)), perm.tolist()))
