"""InfoNCE and NT-Xent against the formulas written out element by element."""
import math

import torch
import torch.nn.functional as F

from vsslpipe.losses import info_nce, nt_xent


def _unit(*shape, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def test_info_nce_matches_formula():
    q, k, negs, tau = _unit(3, 5, seed=0), _unit(3, 5, seed=1), _unit(4, 5, seed=2), 0.07
    loss, logits = info_nce(q, k, negs, tau)
    expected = 0.0
    for i in range(3):
        pos = math.exp(float(q[i] @ k[i]) / tau)
        neg = sum(math.exp(float(q[i] @ n) / tau) for n in negs)
        expected += -math.log(pos / (pos + neg))
    assert math.isclose(float(loss), expected / 3, rel_tol=1e-9)
    assert logits.shape == (3, 5)


def test_nt_xent_matches_formula():
    z1, z2, tau = _unit(3, 4, seed=3), _unit(3, 4, seed=4), 0.1
    loss, _ = nt_xent(z1, z2, tau)
    z = torch.cat([z1, z2])
    n2 = z.shape[0]
    expected = 0.0
    for i in range(n2):
        j = (i + 3) % n2                              # the other view of the same video
        num = math.exp(float(z[i] @ z[j]) / tau)
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i)
        expected += -math.log(num / den)
    assert math.isclose(float(loss), expected / n2, rel_tol=1e-9)


def test_nt_xent_is_low_for_aligned_views():
    z = _unit(8, 16, seed=5)
    aligned, _ = nt_xent(z, z, 0.1)
    shuffled, _ = nt_xent(z, z[torch.randperm(8)], 0.1)
    assert float(aligned) < float(shuffled)
