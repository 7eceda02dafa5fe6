"""Whether a training step waits for the GPU: one step under ``torch.cuda.set_sync_debug_mode``.

A GPU check (``bench/gpu_check.py``) calls :func:`step_syncs` on a built :class:`Trainer`;
the target is no synchronisation inside a step (issue 17). It needs CUDA, so the test suite
cannot run it; the CPU tests check the pieces (host-side queue pointers, sync-free mining and
augmentation) instead.
"""
from __future__ import annotations

import itertools

import torch

from ..data.clips import RunSampler, make_loader
from .engine import Trainer


def step_syncs(trainer: Trainer, steps: int = 2, mode: str = "warn") -> list[str]:
    """Run ``steps`` training steps (forward, backward, optimiser step, ``after_step``) under
    ``torch.cuda.set_sync_debug_mode(mode)`` and return the synchronisation warnings raised
    inside them (CUDA only; the batches are fetched and prepared before the check starts, as
    the prefetch thread does). A GPU check calls this; an empty list is the target."""
    import warnings

    if trainer.device.type != "cuda":
        raise RuntimeError("step_syncs needs a CUDA device")
    ctx = trainer._context()
    trainer.method.on_train_start(ctx)
    trainer.method.train()
    trainer.method.on_epoch_start(trainer.epoch, ctx)
    order = RunSampler(trainer.sampler, trainer.epoch, trainer.epoch + 1, trainer.cfg.batch_size)
    loader = make_loader(trainer.dataset, trainer.cfg.batch_size, trainer.cfg.workers, order,
                         drop_last=False, pin_memory=True, persistent=False)
    prepared = trainer._prepared_batches(loader, trainer.step)
    batches = list(itertools.islice(prepared, steps + 1))
    prepared.close()                # the prefetch thread stops before the check starts

    def one(batch: dict) -> torch.Tensor:
        return trainer.train_step(batch, ctx)[0]

    one(batches[0])                 # warm-up: first-use allocations and cudnn autotuning
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode(mode)
        try:
            for batch in batches[1:]:
                one(batch)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    found = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
    torch.cuda.synchronize()
    return found
