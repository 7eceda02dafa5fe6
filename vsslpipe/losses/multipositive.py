"""Multi-positive InfoNCE (CoCLR's ``L_RF`` / ``L_FR``, CVTCL's local loss).

With a positive set ``P`` and negatives ``N`` for one query (docs/methods.md, "Multi-positive InfoNCE";
CVTCL paper eqs. (2)-(5), CoCLR eq. (3))::

    L = -log( sum_{p in P} exp(l_p) / (sum_{p in P} exp(l_p) + sum_{n in N} exp(l_n)) )

where ``l = q . c / tau``. Written as ``logsumexp(all valid logits) - logsumexp(positive logits)``
so that it is stable for small ``tau``. With one positive per row it is the ordinary InfoNCE
(eq. (1)), i.e. ``cross_entropy(logits, 0)`` when the positive is column 0.
"""
from __future__ import annotations

from typing import Optional

import torch


def multi_positive_infonce(logits: torch.Tensor, pos_mask: torch.Tensor,
                           valid_mask: Optional[torch.Tensor] = None,
                           reduction: str = "mean") -> torch.Tensor:
    """Multi-positive InfoNCE over precomputed logits.

    Args:
        logits: ``(B, N)`` similarities already divided by the temperature.
        pos_mask: ``(B, N)`` bool, ``True`` where column ``j`` is a positive of row ``i``; every
            row needs at least one valid positive.
        valid_mask: optional ``(B, N)`` bool; ``False`` removes an entry from numerator and
            denominator alike (neither positive nor negative), e.g. a stale queue copy of a
            video that is already a positive.
        reduction: ``"mean"`` (over rows), ``"sum"`` or ``"none"`` (``(B,)``).

    Returns:
        The loss, a scalar (or ``(B,)`` with ``reduction="none"``).
    """
    if logits.shape != pos_mask.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and pos_mask {tuple(pos_mask.shape)} differ")
    logits = logits.float()   # bf16 autocast: the log-sum-exp in float32
    pos_mask = pos_mask.bool()
    neg_inf = float("-inf")
    if valid_mask is not None:
        valid_mask = valid_mask.bool()
        logits = torch.where(valid_mask, logits, neg_inf)
        pos_mask = pos_mask & valid_mask
    has_pos = pos_mask.any(dim=1).all()
    message = "every row of pos_mask needs at least one (valid) positive"
    try:   # checked where the data is: on a GPU without waiting for the host
        torch._assert_async(has_pos, message)
    except RuntimeError:                        # CPU: raised here and now
        raise ValueError(message) from None
    log_all = torch.logsumexp(logits, dim=1)
    log_pos = torch.logsumexp(torch.where(pos_mask, logits, neg_inf), dim=1)
    loss = log_all - log_pos
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")


def multi_positive_infonce_embeddings(query: torch.Tensor, candidates: torch.Tensor,
                                      pos_mask: torch.Tensor, temperature: float,
                                      valid_mask: Optional[torch.Tensor] = None,
                                      reduction: str = "mean") -> torch.Tensor:
    """Multi-positive InfoNCE from embeddings.

    Args:
        query: ``(B, D)`` L2-normalised query embeddings.
        candidates: ``(B, N, D)`` per-row candidates, or ``(N, D)`` shared by every row (e.g. a
            queue); L2-normalised.
        pos_mask, valid_mask, reduction: as in :func:`multi_positive_infonce`.
        temperature: ``tau``.
    """
    if candidates.dim() == 2:
        logits = query @ candidates.t()
    else:
        logits = torch.einsum("bd,bnd->bn", query, candidates)
    return multi_positive_infonce(logits / temperature, pos_mask, valid_mask, reduction)
