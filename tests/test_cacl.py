"""CACL: loss composition per `pairs` setting, SDP, momentum/queues, frozen frame CNN, export."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from vsslpipe.data.augment import AugmentConfig
from vsslpipe.losses import edit_distance
from vsslpipe.losses.cacl import cacl_contrastive_loss
from vsslpipe.losses.shuffle import distance_to_label
from vsslpipe.methods import METHODS
from vsslpipe.methods.base import MethodSpec
from vsslpipe.methods.cacl import ShuffledClipSampler, permute_frames

TINY_TRANSFORMER = {"frame_cnn": "tiny2d", "token_dim": 16, "layers": 1, "heads": 2, "dropout": 0.0}

# Written out by hand from the CACL paper's equations (docs/methods.md) (not derived from the code's table).
EXPECTED_TERMS = {
    "cnn_only": {"C1_C2", "C2_C1"},
    "cross": {"C1_C2", "C2_C1", "C1_T1", "T1_C1", "C2_T2", "T2_C2"},
    "all": {"C1_C2", "C2_C1", "T1_T2", "T2_T1", "C1_T1", "T1_C1", "C2_T2", "T2_C2",
            "C1_T2", "T2_C1", "C2_T1", "T1_C2"},
}


def reference_info_nce(q, k, negatives, tau):
    """-log exp(q.k/tau) / (exp(q.k/tau) + sum_j exp(q.n_j/tau)), averaged over rows, in float64."""
    q, k, negatives = q.double(), k.double(), negatives.double()
    total = 0.0
    for i in range(q.shape[0]):
        pos = math.exp(float(q[i] @ k[i]) / tau)
        neg = sum(math.exp(float(q[i] @ n) / tau) for n in negatives)
        total += -math.log(pos / (pos + neg))
    return total / q.shape[0]


@pytest.mark.parametrize("pairs", ["cnn_only", "cross", "all"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_contrastive_loss_uses_exactly_the_pairs_of_the_setting(pairs, reduction):
    g = torch.Generator().manual_seed(0)
    unit = lambda *s: F.normalize(torch.randn(*s, generator=g), dim=-1)  # noqa: E731
    queries = {n: unit(3, 8) for n in ("C1", "C2", "T1", "T2")}
    keys = {n: unit(3, 8) for n in ("C1", "C2", "T1", "T2")}
    queues = {"C": unit(5, 8), "T": unit(5, 8)}
    loss, terms = cacl_contrastive_loss(queries, keys, queues, pairs, 0.2, reduction)
    assert set(terms) == EXPECTED_TERMS[pairs]
    # negatives come from the queue of the key's network
    per_term = [reference_info_nce(queries[t[:2]], keys[t[3:]], queues[t[3]], 0.2)
                for t in EXPECTED_TERMS[pairs]]
    expected = sum(per_term) / (len(per_term) if reduction == "mean" else 1)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)


def _spec(pairs="all", sdp=True, clip_len=8, **args):
    return MethodSpec(name="cacl", modality="rgb", backbone="tiny3d", backbone_args={"width": 4},
                      clip_len=clip_len, stride=1, size=24, augment=AugmentConfig(),
                      args={"pairs": pairs, "sdp": sdp, "queue_size": 16, "proj_hidden": 16,
                            "sdp_hidden": 16, "transformer": TINY_TRANSFORMER, **args})


class _Video:
    def __init__(self, frames):
        self.frames, self.num_frames = frames, len(frames)

    def read(self, start, stop, step=1, modality=None):
        return self.frames[start:stop:step]


def _batch(method, n=4, seed=0):
    """Views of videos of several frame sizes, cut as the loader workers cut them."""
    rng = np.random.default_rng(seed)
    sampler = method.make_sampler()
    sizes = [(12, 28, 32), (9, 26, 40), (1, 30, 30), (12, 40, 28)]
    videos = [_Video(rng.integers(0, 255, (*sizes[i % 4], 3), dtype=np.uint8)) for i in range(n)]
    return default_collate([sampler(v, rng) for v in videos])


@pytest.mark.parametrize("pairs", ["cnn_only", "cross", "all"])
def test_method_step_per_pairs_setting(pairs):
    torch.manual_seed(0)
    method = METHODS.build("cacl", spec=_spec(pairs)).train()
    loss, logs = method(_batch(method))
    loss.backward()
    kinds = {k for k in logs if k.startswith("nce_")}
    assert kinds == {"cnn_only": {"nce_same_net"}, "cross": {"nce_same_net", "nce_cross_net"},
                     "all": {"nce_same_net", "nce_cross_net", "nce_cross_net_aug"}}[pairs]
    assert all(p.grad is not None for p in method.backbone.parameters())
    assert all(p.grad is not None for p in method.sdp_head.parameters())
    if pairs == "cnn_only":
        assert not hasattr(method, "transformer")          # MoCo + SDP: no transformer at all
    else:
        assert all(p.grad is None for p in method.transformer.frame_cnn.parameters())
        assert not any(p.requires_grad for p in method.transformer.frame_cnn.parameters())
        assert all(p.grad is not None for p in method.transformer.temporal.encoder.parameters())
        assert all(p.grad is None for p in method.key_temporal.parameters())
    assert float(loss.detach()) == pytest.approx(float(logs["loss_contrastive"]) + float(logs["loss_sdp"]),
                                        rel=1e-5)


def test_frozen_frame_cnn_does_not_change_in_training():
    torch.manual_seed(0)
    method = METHODS.build("cacl", spec=_spec("all")).train()
    before = {k: v.clone() for k, v in method.transformer.frame_cnn.state_dict().items()}
    opt = torch.optim.SGD(method.trainable_parameters(), lr=0.1)
    for seed in range(2):
        loss, _ = method(_batch(method, seed=seed))
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            method.after_step(seed, None)
    assert not method.transformer.frame_cnn.training
    for k, v in method.transformer.frame_cnn.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(id(p) not in {id(q) for q in method.trainable_parameters()}
               for p in method.transformer.frame_cnn.parameters())


def test_sdp_weight_and_switch():
    torch.manual_seed(0)
    method = METHODS.build("cacl", spec=_spec("cross", lambda_sdp=0.5)).train()
    loss, logs = method(_batch(method))
    assert float(loss.detach()) == pytest.approx(float(logs["loss_contrastive"]) + 0.5 * float(logs["loss_sdp"]),
                                        rel=1e-5)
    off = METHODS.build("cacl", spec=_spec("cross", sdp=False)).train()
    loss, logs = off(_batch(off))
    assert not hasattr(off, "sdp_head") and "loss_sdp" not in logs
    assert float(loss.detach()) == pytest.approx(float(logs["loss_contrastive"]))


def test_after_step_updates_key_encoders_and_both_queues():
    torch.manual_seed(0)
    method = METHODS.build("cacl", spec=_spec("all", momentum=0.9)).train()
    batch = _batch(method, n=3)
    method(batch)
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
        for p in method.transformer.temporal.parameters():
            p.add_(1.0)
    key_before = [p.clone() for p in method.key_backbone.parameters()]
    tkey_before = [p.clone() for p in method.key_temporal.parameters()]
    method.after_step(1, None)
    for kb, k, q in zip(key_before, method.key_backbone.parameters(), method.backbone.parameters()):
        assert torch.allclose(k, 0.9 * kb + 0.1 * q)
    for kb, k, q in zip(tkey_before, method.key_temporal.parameters(),
                        method.transformer.temporal.parameters()):
        assert torch.allclose(k, 0.9 * kb + 0.1 * q)
    assert int(method.queue.ptr) == 6 and int(method.t_queue.ptr) == 6   # 2 views x 3 clips


def test_sampler_labels_are_the_edit_distance_of_the_shuffle():
    rng = np.random.default_rng(0)
    video = _Video(rng.integers(0, 255, (40, 8, 8, 3), dtype=np.uint8))
    for mode in ("uniform_distance", "moved_frames"):
        sampler = ShuffledClipSampler(16, 2, mode)
        for _ in range(50):
            s = sampler(video, rng)
            assert s["clip0"].shape == (16, 8, 8, 3)
            assert s["sdp_label"] == distance_to_label(edit_distance(range(16), s["perm"]))


def test_permute_frames_matches_a_loop():
    x = torch.randn(3, 2, 5, 4, 4)
    perm = torch.stack([torch.randperm(5) for _ in range(3)])
    out = permute_frames(x, perm, 2)
    for b in range(3):
        assert torch.equal(out[b], x[b][:, perm[b]])


def test_only_the_3d_cnn_is_exported_and_memory_format_works():
    method = METHODS.build("cacl", spec=_spec("all"))
    assert method.export_backbone() is method.backbone
    assert method.export_spec()["name"] == "tiny3d"
    method.to(memory_format=torch.channels_last_3d)   # the engine's CUDA path (2D convs inside)
    conv2d = method.transformer.frame_cnn.net.features[0].weight
    assert conv2d.is_contiguous(memory_format=torch.channels_last)
