"""CACL's cross-architecture contrastive loss (Guo et al. CVPR 2022, Sec. 3.2).

Four representations per video: ``C1, C2`` (3D CNN on augmentations a1, a2 of the (clip, shuffled
clip) pair) and ``T1, T2`` (video transformer on the same two augmentations). Each positive pair
``(A, B)`` gives two InfoNCE terms, ``q_A`` against the momentum key ``k_B`` and ``q_B`` against
``k_A``; the negatives of a term are the queue of the *key's* network, so the positive and the
negatives always come from the same key encoder (otherwise "which network made this vector" would
separate them).

``PAIRS`` (the ``pairs`` ablation, docs/methods.md): ``cnn_only`` = (1) for the CNN only, i.e. MoCo
(+ SDP); ``cross`` adds the cross-network, same-augmentation pairs (2); ``all`` = (1) for both
networks + (2) + the cross-network, cross-augmentation pairs (3).
"""
from __future__ import annotations

from typing import Literal

import torch

from .infonce import info_nce

PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "cnn_only": (("C1", "C2"),),
    "cross": (("C1", "C2"), ("C1", "T1"), ("C2", "T2")),
    "all": (("C1", "C2"), ("T1", "T2"), ("C1", "T1"), ("C2", "T2"), ("C1", "T2"), ("C2", "T1")),
}


def directed_terms(pairs: str) -> list[tuple[str, str]]:
    """``(query, key)`` names of every InfoNCE term of a ``pairs`` setting (both directions)."""
    return [t for a, b in PAIRS[pairs] for t in ((a, b), (b, a))]


def networks(pairs: str) -> set[str]:
    """Which networks (``"C"``, ``"T"``) a setting uses."""
    return {name[0] for pair in PAIRS[pairs] for name in pair}


def cacl_contrastive_loss(queries: dict[str, torch.Tensor], keys: dict[str, torch.Tensor],
                          queues: dict[str, torch.Tensor], pairs: str, temperature: float,
                          reduction: Literal["mean", "sum"] = "mean"
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum or mean over the directed terms of ``pairs`` of InfoNCE (MoCo Eq. 1).

    Shapes: ``queries[name]`` and ``keys[name]`` (N, D) L2-normalised, names ``C1 C2 T1 T2``;
    ``queues["C" | "T"]`` (K, D) negatives of each key encoder. Returns the loss and, per term
    ``"<query>_<key>"``, ``(loss, logits)`` logits (N, 1 + K) with the positive first.
    """
    terms: dict[str, torch.Tensor] = {}
    losses = []
    for q_name, k_name in directed_terms(pairs):
        loss, logits = info_nce(queries[q_name], keys[k_name], queues[k_name[0]], temperature)
        terms[f"{q_name}_{k_name}"] = (loss, logits)
        losses.append(loss)
    total = torch.stack(losses).sum()
    return (total / len(losses) if reduction == "mean" else total), terms
