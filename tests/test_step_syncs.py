"""No host round trip in a training step (issue 17), checked on CPU by the dispatched ops of
forward + backward + after_step (tests/dispatch_check.py), plus the host-side queue state."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from dispatch_check import host_reads
from vsslpipe.data.augment import AugmentConfig
from vsslpipe.methods import build_method
from vsslpipe.methods.base import MethodSpec
from vsslpipe.methods.moco import MomentumQueue, ring_slots
from vsslpipe.methods.streams import IndexedQueue

TINY_T = {"frame_cnn": "tiny2d", "token_dim": 16, "layers": 1, "heads": 2, "dropout": 0.0}


class _Video:
    def __init__(self, frames):
        self.frames, self.num_frames = frames, len(frames)
        self.index, self.label, self.group, self.video_id, self.epoch = 0, 0, "", "v", 0

    def read(self, start, stop, step=1, modality=None):
        return self.frames[start:stop:step]


def _batch(method, n=4, seed=0):
    rng = np.random.default_rng(seed)
    sampler = method.make_sampler()
    c = 2 if method.spec.modality == "flow" else 3
    videos = [_Video(rng.integers(0, 255, (10, 20 + i, 24, c), dtype=np.uint8)) for i in range(n)]
    batch = default_collate([sampler(v, rng) for v in videos])
    batch["index"] = torch.arange(n)
    return batch


def _step(method, batch, ctx=None):
    def run():
        loss, _ = method(method.prepare(batch))
        loss.backward()
        with torch.no_grad():
            method.after_step(1, ctx)
    return run


CASES = {
    "cvrl": ("cvrl", "rgb", 1, {}),
    "moco": ("moco", "rgb", 1, {"queue_size": 6}),
    "moco_flow_gap": ("moco", "flow", 1, {"queue_size": 6, "clips": "linear"}),
    "cvtcl_init": ("cvtcl", "rgb", 1, {"queue_size": 6, "num_subclips": 2, "clips": "independent"}),
    "cacl": ("cacl", "rgb", 1, {"queue_size": 6, "pairs": "all", "proj_hidden": 16,
                                "sdp_hidden": 16, "transformer": TINY_T}),
    "image_moco": ("image_moco", "rgb", 1, {"queue_size": 6, "frames_per_video": 2}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_step_reads_nothing_back(case):
    name, modality, _, args = CASES[case]
    clip_len = 1 if name == "image_moco" else 4
    backbone = "frame_cnn" if name == "image_moco" else "tiny3d"
    bargs = {"arch": "tiny2d"} if name == "image_moco" else {"width": 4}
    spec = MethodSpec(name=name, modality=modality, backbone=backbone, backbone_args=bargs,
                      clip_len=clip_len, stride=1, size=16, augment=AugmentConfig(preset="cvrl"),
                      args=args)
    torch.manual_seed(0)
    method = build_method(spec).train()
    batch = _batch(method)
    _step(method, batch)()                         # warm-up: constants made once per device
    assert host_reads(_step(method, batch)) == []


@pytest.mark.parametrize("args", [dict(topk=2), dict(topk=2, same_source_positive=True),
                                  dict(topk=2, mining_source="queue", same_source_positive=True,
                                       drop_self_prob=0.9, wait_full_queue=True, clips="independent")])
def test_a_cotrain_step_reads_nothing_back(tmp_path, monkeypatch, args):
    """Co-training with mining on the device (the GPU path: DeviceBankIndex)."""
    from test_cvtcl import context, cotrain_batch, cotrain_method
    from vsslpipe.methods import cvtcl, mining

    monkeypatch.setattr(cvtcl, "make_bank_index", lambda bank: mining.DeviceBankIndex(bank))
    method = cotrain_method(tmp_path, "coclr" if "drop_self_prob" in args else "cvtcl", **args)
    ctx = context()
    method.on_train_start(ctx)
    method.on_epoch_start(0, ctx)
    batch = cotrain_batch("rgb", rgb_ltcl=cotrain_batch("rgb")["rgb"]) \
        if "clips" in args and "ltcl" in method.cfg.__dataclass_fields__ else cotrain_batch("rgb")
    for _ in range(3):                             # fills the queue (wait_full_queue)
        _step(method, batch, ctx)()
    assert method.streams["rgb"].queue.full
    assert host_reads(_step(method, batch, ctx)) == []


def test_ring_slots_and_host_pointer_match_a_plain_fifo():
    q = MomentumQueue(size=5, dim=1)
    fifo = list(q.keys[:, 0].tolist())
    ptr = 0
    value = 0.0
    for n in (3, 4, 1, 7, 5, 2):
        keys = torch.arange(value, value + n).view(n, 1)
        value += n
        q.enqueue(keys)
        for k in keys[:, 0].tolist():                 # by hand: one row at a time
            fifo[ptr] = k
            ptr = (ptr + 1) % 5
        assert q.keys[:, 0].tolist() == fifo and int(q.ptr) == ptr == q._ptr
    assert ring_slots(3, 4, 5) == [slice(3, 5), slice(0, 2)]
    restored = MomentumQueue(size=5, dim=1)
    restored.load_state_dict(q.state_dict())          # the host pointer follows a resume
    assert restored._ptr == ptr


def test_indexed_queue_full_is_tracked_on_the_host():
    q = IndexedQueue(size=6, dim=2)
    assert not q.full
    q.enqueue(torch.randn(4, 2), torch.arange(4))
    assert not q.full and q.full == bool((q.index >= 0).all())
    q.enqueue(torch.randn(3, 2), torch.arange(4, 7))
    assert q.full and bool((q.index >= 0).all())
    assert q.index.tolist() == [6, 1, 2, 3, 4, 5]
    state = {k: v.clone() for k, v in q.state_dict().items()}
    q.reset()
    assert not q.full
    fresh = IndexedQueue(size=6, dim=2)
    fresh.load_state_dict(state)
    assert fresh.full and fresh._ptr == 1
