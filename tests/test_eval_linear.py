"""Linear probe: accuracy on separable features, the weight-decay selection, the held-out part."""
from __future__ import annotations

import numpy as np
import pytest

from vsslpipe.eval.linear import (fit_logistic, held_out_mask, linear_probe, standardize,
                                  topk_accuracy)


def _blobs(seed, n_per_class, classes=5, dim=16, spread=0.5, offset=0.0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(classes, dim)) * 4 + offset
    y = np.repeat(np.arange(classes), n_per_class)
    return (centres[y] + spread * rng.normal(size=(len(y), dim))).astype(np.float32), y


def test_probe_reaches_high_accuracy_on_separable_features():
    x, y = _blobs(0, 12, offset=100.0)  # a large offset: standardisation must handle it
    xt, yt = _blobs(1, 6, offset=100.0)
    groups = [f"g{i % 4}" for i in range(len(y))]
    result = linear_probe(x, y, xt, yt, 5, [1e-3, 1e-1, 10.0], groups, 0.25, seed=0)
    assert result.top1 >= 95.0 and result.top5 == 100.0
    assert result.held_out == "groups"
    assert [s["weight_decay"] for s in result.selection] == [1e-3, 1e-1, 10.0]
    assert result.weight_decay in (1e-3, 1e-1, 10.0)
    assert result.num_train + result.num_val == len(y)


def test_selection_prefers_the_best_held_out_accuracy():
    # Noisy features with few samples: a huge weight decay cannot fit, a moderate one can.
    x, y = _blobs(2, 10, spread=2.0)
    xt, yt = _blobs(3, 10, spread=2.0)
    result = linear_probe(x, y, xt, yt, 5, [1e-2, 1e4], seed=0)
    best = max(s["val_top1"] for s in result.selection)
    chosen = [s for s in result.selection if s["weight_decay"] == result.weight_decay][0]
    assert chosen["val_top1"] == best
    assert result.held_out == "stratified"


def test_held_out_groups_are_whole():
    labels = np.repeat(np.arange(3), 8)
    groups = [f"g{i % 4}" for i in range(24)]
    mask, how = held_out_mask(labels, groups, 0.25, seed=1)
    assert how == "groups"
    held = {g for g, m in zip(groups, mask) if m}
    assert len(held) == 1 and all(m == (g in held) for g, m in zip(groups, mask))


def test_logistic_fit_gradient_is_exact():
    # The fitted weights make the penalised objective's gradient vanish (checked independently).
    x, y = _blobs(4, 6, classes=3, dim=4, spread=3.0)
    (x,) = standardize(x)
    wd = 0.3
    w, b = fit_logistic(x, y, 3, wd)
    logits = x @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad_w = x.T @ (p - np.eye(3)[y]) / len(y) + wd * w
    assert np.abs(grad_w).max() < 1e-4


def test_topk_accuracy():
    scores = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05]])
    assert topk_accuracy(scores, np.array([2, 0]), 1) == pytest.approx(50.0)
    assert topk_accuracy(scores, np.array([2, 0]), 2) == pytest.approx(100.0)
