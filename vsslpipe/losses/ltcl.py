"""CVTCL's local temporal contrastive losses (LTCL, paper section 2.3, eqs. (6)-(8)).

A clip is cut into ``S`` non-overlapping, ordered sub-clips ``s_1..s_S``
(:mod:`vsslpipe.data.subclips`). ``z1`` is the query encoder's embedding of ``s_1``; ``z1_aug``
the key encoder's embedding of another augmentation of ``s_1``; ``z_others`` the key encoder's
embeddings of ``s_2..s_S``; ``negatives`` the MoCo queue. All embeddings are L2-normalised.

- ``L_local`` (eq. (6)): ``1/S * L_NCE(z1, {z1_aug, z2..zS}, queue)`` -- multi-positive; the other
  sub-clips of the same video are *positives* (fine-grained instance discrimination).
- ``L_LT`` (eq. (7)): ``L_NCE(z1, z1_aug, {z2..zS})`` -- the other sub-clips are the *only*
  negatives (temporal distinctiveness).
- ``L_LTCL = L_local + L_LT`` (eq. (8)); each term switchable for the Table 1 ablation.

``form="code"`` reproduces the authors' released code (docs/methods.md, "CVTCL's released code"; "Where the official code
differs"): the local loss is ``S`` single-positive InfoNCE rows (one per positive, each against
the queue) averaged and divided by 3 (``code_divisor``), and ``L_LT`` is ``S - 1`` two-way rows
``[z1.z1_aug, z1.z_j]`` averaged (each other sub-clip is a negative in its own row).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .multipositive import multi_positive_infonce

LTCL_FORMS = ("paper", "code")


def _check(z1: torch.Tensor, z1_aug: torch.Tensor, z_others: torch.Tensor) -> None:
    if z1.dim() != 2 or z1.shape != z1_aug.shape:
        raise ValueError(f"z1 {tuple(z1.shape)} and z1_aug {tuple(z1_aug.shape)} must be (B, D)")
    if z_others.dim() != 3 or z_others.shape[0] != z1.shape[0] or z_others.shape[2] != z1.shape[1]:
        raise ValueError(f"z_others {tuple(z_others.shape)} must be (B, S-1, D)")
    if z_others.shape[1] < 1:
        raise ValueError("LTCL needs at least two sub-clips")


def local_loss(z1: torch.Tensor, z1_aug: torch.Tensor, z_others: torch.Tensor,
               negatives: torch.Tensor, temperature: float, form: str = "paper",
               code_divisor: float = 3.0) -> torch.Tensor:
    """``L_local``, eq. (6), averaged over the batch.

    Args:
        z1: ``(B, D)`` query embedding of sub-clip ``s_1``.
        z1_aug: ``(B, D)`` key embedding of an augmented view of ``s_1`` (positive).
        z_others: ``(B, S-1, D)`` key embeddings of ``s_2..s_S`` (positives).
        negatives: ``(Q, D)`` queue of other videos' keys.
        temperature: ``tau``.
        form: ``"paper"``: ``1/S * L_NCE(z1, {z1_aug, z_2..z_S}, queue)`` per sample.
            ``"code"``: mean over the ``S`` single-positive rows ``L_NCE(z1, p, queue)``,
            divided by ``code_divisor`` (3 in the released stage-1 script).
    """
    _check(z1, z1_aug, z_others)
    positives = torch.cat([z1_aug.unsqueeze(1), z_others], dim=1)           # (B, S, D)
    num_pos = positives.shape[1]
    pos_logits = torch.einsum("bd,bsd->bs", z1, positives) / temperature   # (B, S)
    neg_logits = (z1 @ negatives.t()) / temperature                        # (B, Q)
    if form == "paper":
        logits = torch.cat([pos_logits, neg_logits], dim=1)
        columns = torch.arange(logits.shape[1], device=logits.device)
        pos_mask = (columns < num_pos).expand_as(logits)     # the first num_pos columns
        return multi_positive_infonce(logits, pos_mask) / num_pos
    if form == "code":
        # one row per positive: [z1.p, z1.queue]; the positive is column 0
        rows = torch.cat([pos_logits.reshape(-1, 1),
                          neg_logits.repeat_interleave(num_pos, dim=0)], dim=1)
        target = torch.zeros(rows.shape[0], dtype=torch.long, device=rows.device)
        return F.cross_entropy(rows.float(), target) / code_divisor
    raise ValueError(f"form must be one of {LTCL_FORMS}, got {form!r}")


def temporal_loss(z1: torch.Tensor, z1_aug: torch.Tensor, z_others: torch.Tensor,
                  temperature: float, form: str = "paper") -> torch.Tensor:
    """``L_LT``, eq. (7), averaged over the batch.

    Args as in :func:`local_loss`; no queue: the same video's other sub-clips ``z_2..z_S`` are
    the only negatives. ``form="paper"``: one row ``[z1.z1_aug, z1.z_2, ..., z1.z_S]`` with the
    positive first. ``form="code"``: ``S - 1`` two-way rows ``[z1.z1_aug, z1.z_j]``, averaged.
    """
    _check(z1, z1_aug, z_others)
    pos_logit = (z1 * z1_aug).sum(dim=1, keepdim=True) / temperature       # (B, 1)
    neg_logits = torch.einsum("bd,bsd->bs", z1, z_others) / temperature    # (B, S-1)
    if form == "paper":
        rows = torch.cat([pos_logit, neg_logits], dim=1)
    elif form == "code":
        num_neg = neg_logits.shape[1]
        rows = torch.stack([pos_logit.expand(-1, num_neg), neg_logits], dim=2).reshape(-1, 2)
    else:
        raise ValueError(f"form must be one of {LTCL_FORMS}, got {form!r}")
    target = torch.zeros(rows.shape[0], dtype=torch.long, device=rows.device)
    return F.cross_entropy(rows.float(), target)


def ltcl_loss(z1: torch.Tensor, z1_aug: torch.Tensor, z_others: torch.Tensor,
              negatives: Optional[torch.Tensor], temperature: float, use_local: bool = True,
              use_lt: bool = True, form: str = "paper",
              code_divisor: float = 3.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``L_LTCL = L_local + L_LT`` (eq. (8)) with each term switchable.

    Returns ``(loss, parts)`` where ``parts`` holds the detached terms that are on
    (``"loss_local"``, ``"loss_lt"``). With both off the loss is a zero that still belongs to the
    graph of ``z1`` (so callers need no special case).
    """
    parts: dict[str, torch.Tensor] = {}
    loss = z1.sum() * 0.0
    if use_local:
        if negatives is None:
            raise ValueError("L_local needs the queue of negatives")
        term = local_loss(z1, z1_aug, z_others, negatives, temperature, form, code_divisor)
        parts["loss_local"] = term.detach()
        loss = loss + term
    if use_lt:
        term = temporal_loss(z1, z1_aug, z_others, temperature, form)
        parts["loss_lt"] = term.detach()
        loss = loss + term
    return loss, parts
