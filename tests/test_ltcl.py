"""LTCL and multi-positive InfoNCE against the formulas written out by hand (tiny batches)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vsslpipe.losses import local_loss, ltcl_loss, multi_positive_infonce, temporal_loss
from vsslpipe.losses.multipositive import multi_positive_infonce_embeddings


def _unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def _nce(q, positives, negatives, tau):
    """-log(sum_p e^{q.p/tau} / (sum_p e^{q.p/tau} + sum_n e^{q.n/tau})) for one query, by hand."""
    pos = sum(math.exp(float(q @ p) / tau) for p in positives)
    neg = sum(math.exp(float(q @ n) / tau) for n in negatives)
    return -math.log(pos / (pos + neg))


def test_multi_positive_matches_formula_and_masks():
    q, cand = _unit(3, 8, seed=1), _unit(3, 6, 8, seed=2)
    tau = 0.2
    pos = torch.tensor([[1, 0, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 1]], dtype=torch.bool)
    valid = torch.ones_like(pos)
    valid[0, 4] = False                      # dropped from the denominator of row 0
    got = multi_positive_infonce_embeddings(q, cand, pos, tau, valid, reduction="none")
    for i in range(3):
        p = [cand[i, j] for j in range(6) if pos[i, j]]
        n = [cand[i, j] for j in range(6) if not pos[i, j] and valid[i, j]]
        assert got[i].item() == pytest.approx(_nce(q[i], p, n, tau), rel=1e-5)


def test_single_positive_is_cross_entropy():
    logits = torch.randn(4, 7)
    pos = torch.zeros(4, 7, dtype=torch.bool)
    pos[:, 0] = True
    assert multi_positive_infonce(logits, pos).item() == pytest.approx(
        F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)).item(), rel=1e-6)


def test_multi_positive_needs_a_positive_per_row():
    with pytest.raises(ValueError):
        multi_positive_infonce(torch.randn(2, 3), torch.tensor([[1, 0, 0], [0, 0, 0]]).bool())


@pytest.mark.parametrize("num_subclips", [2, 4])
def test_local_loss_paper_eq6(num_subclips):
    B, D, Q, tau = 3, 8, 5, 0.1
    z1, z1a = _unit(B, D, seed=3), _unit(B, D, seed=4)
    others, queue = _unit(B, num_subclips - 1, D, seed=5), _unit(Q, D, seed=6)
    expected = sum(_nce(z1[b], [z1a[b], *others[b]], list(queue), tau) / num_subclips
                   for b in range(B)) / B
    assert local_loss(z1, z1a, others, queue, tau).item() == pytest.approx(expected, rel=1e-5)


def test_local_loss_code_form_rows_divided_by_three():
    B, D, Q, tau = 2, 8, 5, 0.1
    z1, z1a, others, queue = _unit(B, D, seed=7), _unit(B, D, seed=8), _unit(B, 3, D, seed=9), _unit(Q, D, seed=10)
    rows = [_nce(z1[b], [p], list(queue), tau) for b in range(B) for p in [z1a[b], *others[b]]]
    expected = sum(rows) / len(rows) / 3
    got = local_loss(z1, z1a, others, queue, tau, form="code")
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_temporal_loss_eq7_other_subclips_are_the_only_negatives():
    B, D, tau = 3, 8, 0.07
    z1, z1a, others = _unit(B, D, seed=11), _unit(B, D, seed=12), _unit(B, 3, D, seed=13)
    expected = sum(_nce(z1[b], [z1a[b]], list(others[b]), tau) for b in range(B)) / B
    assert temporal_loss(z1, z1a, others, tau).item() == pytest.approx(expected, rel=1e-5)
    code = sum(_nce(z1[b], [z1a[b]], [n], tau) for b in range(B) for n in others[b]) / (3 * B)
    assert temporal_loss(z1, z1a, others, tau, form="code").item() == pytest.approx(code, rel=1e-5)


def test_ltcl_is_sum_of_switched_terms():
    B, D, Q, tau = 2, 8, 4, 0.1
    z1 = _unit(B, D, seed=14).requires_grad_()
    z1a, others, queue = _unit(B, D, seed=15), _unit(B, 3, D, seed=16), _unit(Q, D, seed=17)
    loc = local_loss(z1, z1a, others, queue, tau)
    lt = temporal_loss(z1, z1a, others, tau)
    both, parts = ltcl_loss(z1, z1a, others, queue, tau)
    assert both.item() == pytest.approx((loc + lt).item(), rel=1e-6)
    assert set(parts) == {"loss_local", "loss_lt"}
    only_lt, parts = ltcl_loss(z1, z1a, others, None, tau, use_local=False)
    assert only_lt.item() == pytest.approx(lt.item(), rel=1e-6) and set(parts) == {"loss_lt"}
    none, parts = ltcl_loss(z1, z1a, others, queue, tau, use_local=False, use_lt=False)
    assert none.item() == 0.0 and parts == {}
    none.backward()                          # still part of the graph
    assert torch.all(z1.grad == 0)
