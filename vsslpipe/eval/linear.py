"""Linear probe: a multinomial logistic-regression classifier on frozen, standardised features.

The weight decay (L2 penalty) is chosen from a grid on a held-out part of the training split —
whole source groups when the features carry them (UCF101 'gXX': clips of one source look alike,
so holding out clips of a seen group would flatter large models), else a stratified random part —
then the classifier is refitted on the whole training split and scored once on the test split.
(CoCLR's code picks the best epoch on the test set; we do not.)

The objective is written out here and minimised with SciPy's L-BFGS-B rather than pulling in
scikit-learn for one convex problem; on a few thousand vectors it converges in about a second.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import minimize


@dataclass(frozen=True)
class ProbeResult:
    top1: float                      # percent, test split
    top5: float
    weight_decay: float              # chosen on the held-out part
    selection: list[dict]            # [{"weight_decay", "val_top1"}] for every grid value
    held_out: str                    # "groups" or "stratified"
    num_train: int
    num_val: int
    num_test: int
    predictions: np.ndarray          # test predictions (top-1 labels)


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Zero mean, unit variance per dimension using the training statistics."""
    mean = train.mean(axis=0, keepdims=True)
    std = train.std(axis=0, keepdims=True)
    std = np.where(std > 1e-8, std, 1.0)
    return [((x - mean) / std).astype(np.float32) for x in (train, *others)]


def fit_logistic(x: np.ndarray, y: np.ndarray, num_classes: int, weight_decay: float,
                 max_iter: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Minimise mean cross-entropy + weight_decay / 2 * ||W||^2 (bias not penalised) with
    SciPy's L-BFGS-B; returns W (d, classes), b (classes,)."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    onehot = np.eye(num_classes)[y]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d * num_classes].reshape(d, num_classes), theta[d * num_classes:]
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        loss = -(onehot * log_p).sum() / n + 0.5 * weight_decay * (w ** 2).sum()
        delta = (np.exp(log_p) - onehot) / n
        grad_w = x.T @ delta + weight_decay * w
        return loss, np.concatenate([grad_w.ravel(), delta.sum(axis=0)])

    theta0 = np.zeros(d * num_classes + num_classes)
    res = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": 1e-6})
    return res.x[:d * num_classes].reshape(d, num_classes), res.x[d * num_classes:]


def predict_scores(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float64) @ weight + bias


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(100.0 * (top == labels[:, None]).any(axis=1).mean())


def held_out_mask(labels: np.ndarray, groups: Sequence[str], fraction: float,
                  seed: int) -> tuple[np.ndarray, str]:
    """Boolean mask of the held-out part of train: whole groups if available, else stratified."""
    rng = np.random.default_rng(seed)
    groups = np.asarray(groups, dtype=object)
    distinct = sorted(set(groups) - {""})
    if len(distinct) >= 2 and (groups != "").all():
        n_val = min(len(distinct) - 1, max(1, int(round(fraction * len(distinct)))))
        chosen = set(rng.choice(distinct, size=n_val, replace=False))
        return np.array([g in chosen for g in groups]), "groups"
    mask = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_val = int(round(fraction * len(members)))
        if len(members) >= 2 and n_val >= 1:
            mask[rng.choice(members, size=min(n_val, len(members) - 1), replace=False)] = True
    return mask, "stratified"


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 num_classes: int, weight_decays: Sequence[float], train_groups: Sequence[str] = (),
                 val_fraction: float = 0.25, seed: int = 0, max_iter: int = 300) -> ProbeResult:
    """Select the weight decay on held-out train data, refit on all of train, score test."""
    groups = list(train_groups) or [""] * len(train_y)
    val, how = held_out_mask(train_y, groups, val_fraction, seed)
    if not val.any() or val.all():
        raise ValueError("the training split is too small to hold part of it out")
    fit_x, val_x = standardize(train_x[~val], train_x[val])
    selection = []
    for wd in weight_decays:
        w, b = fit_logistic(fit_x, train_y[~val], num_classes, wd, max_iter)
        selection.append({"weight_decay": float(wd),
                          "val_top1": topk_accuracy(predict_scores(val_x, w, b), train_y[val], 1)})
    # Best held-out accuracy; among equals the strongest regularisation.
    best = max(selection, key=lambda s: (s["val_top1"], s["weight_decay"]))
    all_x, tst_x = standardize(train_x, test_x)
    w, b = fit_logistic(all_x, train_y, num_classes, best["weight_decay"], max_iter)
    scores = predict_scores(tst_x, w, b)
    return ProbeResult(topk_accuracy(scores, test_y, 1), topk_accuracy(scores, test_y, 5),
                       best["weight_decay"], selection, how, int((~val).sum()), int(val.sum()),
                       len(test_y), scores.argmax(axis=1))
