"""The pre-training loop every method runs through (methods plug in via vsslpipe.methods.base).

Per epoch: loader (uint8 training views cut in the workers; with ``decode: gpu`` RGB views come
as JPEG bytes + crop boxes and are decoded and cut on the device) -> device -> ``method(batch)``
(photometric augmentation on the device, loss) -> backward -> clip -> step -> schedule ->
``method.after_step``. Nothing in a step waits for the device: the progress bar shows the loss of
an earlier step, copied to the host without blocking (:func:`vsslpipe.train.syncs.step_syncs`
checks a step on a GPU). Rank 0
logs epoch curves with dvclive and writes a resumable checkpoint every ``checkpoint_every``
epochs into a scratch folder outside DVC's outputs (DVC deletes outputs before a re-run); a
restart with the same settings resumes from it and ends with the same weights as an
uninterrupted run (CPU, fixed seed): sample randomness is keyed by (seed, epoch, index) and the
torch RNG state is saved with the checkpoint. The final checkpoint goes to ``<out>/final.pt``.
"""
from __future__ import annotations

import contextlib
import itertools
import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import nn

from ..config import to_dict
from ..data.augment import ClipAugment
from ..data.clips import ClipDataset, EpochSampler, RunSampler, make_loader, train_table
from ..data.manifest import read_manifest
from ..data.views import decode_views
from ..errors import ConfigError
from ..methods import build_method
from ..methods.base import Method, MethodSpec, TrainContext
from ..models.checkpoint import load_checkpoint, save_checkpoint
from ..progress import ProgressBar
from . import dist
from .config import PretrainConfig
from .optim import build_optimizer, build_scheduler
from .live import EpochLogger

CKPT_NAME = "checkpoint.pt"


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return name


def method_spec(cfg: PretrainConfig) -> MethodSpec:
    return MethodSpec(name=cfg.method, modality=cfg.modality, backbone=cfg.backbone,
                      backbone_args=dict(cfg.backbone_args), clip_len=cfg.clip_len,
                      stride=cfg.stride, size=cfg.size, augment=cfg.augment,
                      args=cfg.method_args_for())


def seeded_method(cfg: PretrainConfig) -> Method:
    """The method of ``cfg`` built right after seeding torch with ``cfg.seed``: the same seed
    gives the same initial weights and queues (so a run, or a killed and resumed one, is
    reproducible). Build a method to hand to :class:`Trainer` with this."""
    torch.manual_seed(cfg.seed)
    return build_method(method_spec(cfg))


def clip_meta(cfg: PretrainConfig) -> dict:
    return {"clip_len": cfg.clip_len, "stride": cfg.stride, "size": cfg.size}


def to_channels_last_3d(module: nn.Module) -> None:
    """channels_last_3d for the 5-D (3D conv) weights only.

    ``module.to(memory_format=torch.channels_last_3d)`` raises on the 4-D weights of 2D convs
    (CACL's frame CNN), so convert tensor by tensor.
    """
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.dim() == 5:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last_3d)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class Trainer:
    """``Trainer(cfg, experiment, scratch).run()`` -> summary dict (also in dvclive metrics)."""

    def __init__(self, cfg: PretrainConfig, experiment: str, scratch: Path,
                 method: Optional[Method] = None, table=None, stores: Optional[dict] = None,
                 stop_after_epochs: Optional[int] = None, progress: bool = True):
        """``method`` (built with :func:`seeded_method`), ``table`` (the training videos'
        manifest rows) and ``stores`` ({modality: path}) default to what ``cfg`` names (every
        ``split`` video of ``cfg.manifest``)."""
        self.cfg, self.experiment, self.scratch = cfg, experiment, Path(scratch)
        self.stop_after_epochs = stop_after_epochs   # end early (tests simulate a kill)
        self.progress = progress
        self.device = dist.init(resolve_device(cfg.device))
        self.rank, self.world = dist.rank(), dist.world_size()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)

        self.method: Method = method if method is not None else seeded_method(cfg)
        torch.manual_seed(cfg.seed + self.rank)      # what the step draws on the global RNG
        if stores is None:
            stores = {m: (cfg.frames if m == "rgb" else cfg.flow)
                      for m in self.method.required_modalities()}
        if table is None:
            table = train_table(read_manifest(cfg.manifest), cfg.split)
        self.decode = getattr(cfg, "decode", "cpu")
        self.dataset = ClipDataset(table.sort_values("video_id").reset_index(drop=True), stores,
                                   self.method.make_sampler(), seed=cfg.seed,
                                   default_modality=cfg.modality, decode=self.decode)
        self.sampler = EpochSampler(len(self.dataset), cfg.seed, True, self.rank, self.world)
        self.steps_per_epoch = len(self.sampler) // cfg.batch_size
        if self.steps_per_epoch < 1:
            raise ConfigError(f"batch_size {cfg.batch_size} exceeds the {len(self.sampler)} "
                              "training videos per rank")
        cuda = self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if (cfg.precision == "bf16" or
                                            (cfg.precision == "auto" and cuda)) else None
        self.method.to(self.device)
        if cuda:
            torch.backends.cudnn.benchmark = True   # fixed training shapes: pick kernels once
        if cuda and cfg.channels_last:
            to_channels_last_3d(self.method)
        # Methods that augment in prepare() (possibly a batch ahead, in a thread) draw from
        # per-batch seeded generators; methods that augment in forward() keep the global RNG,
        # which the checkpoint saves.
        self.seeded_prepare = type(self.method).prepare is not Method.prepare
        self.augmenters: list[ClipAugment] = self.method.augmenters()
        for aug in self.augmenters:
            if self.seeded_prepare:
                aug.generator = torch.Generator(device=self.device)
            if cuda and cfg.channels_last:
                aug.memory_format = torch.channels_last_3d
        if self.world > 1 and cfg.sync_bn:
            self.method = nn.SyncBatchNorm.convert_sync_batchnorm(self.method)
        self.model: nn.Module = self.method
        if self.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.method, device_ids=[self.device.index] if cuda else None,
                broadcast_buffers=False,   # queues stay identical: every rank enqueues the gathered keys
                # co-training (cvtcl/coclr) freezes one stream per phase: its parameters get no grad
                find_unused_parameters=bool(getattr(self.method, "ddp_find_unused_parameters", False)))
        self.optimizer = build_optimizer(self.method.trainable_parameters(), cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.epoch, self.step, self.history = 0, 0, []
        self._resume()
        self.logger = EpochLogger(cfg.live_dir / experiment, self.history, enabled=self.rank == 0)

    # -- state -------------------------------------------------------------------------------
    def _payload(self, training_state: bool) -> dict[str, Any]:
        m, cfg = self.method, self.cfg
        payload = {
            "method": cfg.method, "modality": m.export_modality, "experiment": self.experiment,
            "backbone": m.export_spec(), "backbone_state": m.export_backbone().state_dict(),
            "clip": clip_meta(cfg), "config": to_dict(cfg), "epoch": self.epoch, "step": self.step,
            "model_state": m.state_dict(), "history": self.history,
        }
        if training_state:
            payload.update(optimizer=self.optimizer.state_dict(),
                           scheduler=self.scheduler.state_dict(),
                           rng={"torch": torch.get_rng_state(),
                                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []})
        return payload

    def _resume(self) -> None:
        path = self.scratch / CKPT_NAME
        if not path.is_file():
            return
        ckpt = load_checkpoint(path, map_location="cpu", expect_method=self.cfg.method,
                               expect_modality=self.method.export_modality)
        self.method.load_state_dict(ckpt["model_state"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.epoch, self.step, self.history = int(ckpt["epoch"]), int(ckpt["step"]), list(ckpt["history"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if ckpt["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        if self.rank == 0:
            print(f"pretrain {self.experiment}: resuming after epoch {self.epoch} ({path})", flush=True)

    def _context(self) -> TrainContext:
        def loader_for(sampler, batch_size: Optional[int] = None, workers: Optional[int] = None):
            ds = self.dataset.with_sampler(sampler)
            order = EpochSampler(len(ds), self.cfg.seed, False, self.rank, self.world)
            order.set_epoch(self.epoch)
            loader = make_loader(ds, batch_size or self.cfg.batch_size,
                                 self.cfg.workers if workers is None else workers, order,
                                 drop_last=False, pin_memory=self.device.type == "cuda",
                                 persistent=False)
            return (self._decoded(b) for b in loader) if self.decode == "gpu" else loader

        return TrainContext(device=self.device, epoch=self.epoch, step=self.step,
                            epochs=self.cfg.epochs, steps_per_epoch=self.steps_per_epoch,
                            dataset_size=len(self.dataset), labels=self.dataset.labels,
                            groups=self.dataset.groups, rank=self.rank, world_size=self.world,
                            make_loader=loader_for)

    # -- loop --------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        ctx = self._context()
        self.method.on_train_start(ctx)
        last_epoch = cfg.epochs if self.stop_after_epochs is None else \
            min(cfg.epochs, self.epoch + self.stop_after_epochs)
        total = (cfg.epochs - self.epoch) * self.steps_per_epoch * cfg.batch_size * self.world
        bar = ProgressBar(total, f"pretrain {self.experiment}", "clip",
                          enabled=self.progress and self.rank == 0)
        order = RunSampler(self.sampler, self.epoch, last_epoch, cfg.batch_size)
        loader = make_loader(self.dataset, cfg.batch_size, cfg.workers, order, drop_last=False,
                             pin_memory=self.device.type == "cuda", persistent=False)
        batches = self._prepared_batches(loader, self.step)
        with bar:
            while self.epoch < last_epoch:
                self._train_epoch(bar, itertools.islice(batches, self.steps_per_epoch))
                if self.rank == 0 and (self.epoch % cfg.checkpoint_every == 0 or self.epoch == cfg.epochs):
                    save_checkpoint(self.scratch / CKPT_NAME, self._payload(training_state=True))
                dist.barrier()
        batches.close()   # stops the prefetch thread
        return self.history[-1] if self.history else {}

    def _train_epoch(self, bar: ProgressBar, batches: Iterator[dict]) -> None:
        method = self.method
        ctx = self._context()
        method.train()
        method.on_epoch_start(self.epoch, ctx)
        sums: dict[str, torch.Tensor] = {}
        steps, clips = 0, 0
        shown = _LossDisplay(self.device)
        t0 = time.perf_counter()
        for batch in batches:
            loss, logs = self.train_step(batch, ctx)
            for k, v in {"loss": loss, **logs}.items():
                v = v.detach().float() if torch.is_tensor(v) else torch.tensor(float(v))
                sums[k] = sums.get(k, 0.0) + v
            steps += 1
            clips += batch_len(batch) * self.world
            if steps % 10 == 1:   # the loss of 10 steps ago: its copy has long arrived
                bar.advance(batch_len(batch) * self.world, epoch=self.epoch + 1,
                            loss=shown.swap(loss))
            else:
                bar.advance(batch_len(batch) * self.world)
        method.on_epoch_end(self.epoch, ctx)
        elapsed = time.perf_counter() - t0
        row = {k: float(dist.all_reduce_mean(v / max(steps, 1))) for k, v in sums.items()}
        row.update(lr=self.optimizer.param_groups[0]["lr"], clips_per_s=clips / max(elapsed, 1e-9),
                   epoch=self.epoch + 1)
        if "pos_sim" in row and "neg_sim" in row:
            row["sim_gap"] = row["pos_sim"] - row["neg_sim"]
        self.epoch += 1
        self.history.append(row)
        self.logger.log(row)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype \
            else contextlib.nullcontext()

    def train_step(self, batch: dict, ctx: TrainContext) -> tuple[torch.Tensor, dict]:
        """One optimiser step on a prepared batch: forward, backward, clip, step, schedule,
        ``method.after_step``. Returns the loss and the method's logs (device tensors)."""
        with self.autocast():
            loss, logs = self.model(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.method.trainable_parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        ctx.step = self.step
        with torch.no_grad():
            self.method.after_step(self.step, ctx)
        return loss, logs

    def _prepared_batches(self, loader, first_step: int) -> Iterator[dict]:
        """Batches on the device after ``method.prepare``; with ``prefetch`` the next batch is
        fetched and prepared in a background thread while the current step computes (torch
        ops release the GIL, so on CPU augmentation overlaps the step). The augmentation
        generators are seeded per batch from (seed, rank, step), so prefetching ahead never
        changes what a resumed run draws."""
        it = iter(loader)
        counter = itertools.count(first_step)

        def next_prepared() -> Optional[dict]:
            try:
                batch = next(it)
            except StopIteration:
                return None
            step = next(counter)
            for i, aug in enumerate(self.augmenters if self.seeded_prepare else []):
                aug.generator.manual_seed(hash((self.cfg.seed, self.rank, step, i)) & (2**62 - 1))
            return self.method.prepare(self._decoded(batch))

        if not self.cfg.prefetch:
            while (batch := next_prepared()) is not None:
                yield batch
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(next_prepared)
            while (batch := future.result()) is not None:
                future = pool.submit(next_prepared)
                yield batch

    def _decoded(self, batch: dict) -> dict:
        """The batch on the device, JPEG views decoded and cut there (``decode: gpu``)."""
        batch = _to_device(batch, self.device)
        if self.decode == "gpu":
            batch = decode_views(batch, self.device, self.cfg.size)
        return batch

    def save_final(self, path: Path) -> None:
        if self.rank == 0:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(path, self._payload(training_state=False))
        dist.barrier()

    def close(self) -> None:
        self.logger.close()


class _LossDisplay:
    """The progress bar's loss without waiting for the device: each shown value was copied to
    pinned host memory without blocking one display earlier, and is read once its copy is done
    (a CUDA event, queried: never waited for)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.pending: Optional[torch.Tensor] = None
        self.event = None
        self.text = "..."

    def swap(self, loss: torch.Tensor) -> str:
        if self.pending is not None and (self.event is None or self.event.query()):
            self.text = f"{float(self.pending):.3f}"
        value = loss.detach().float().reshape(())
        if self.cuda:
            self.pending = torch.empty((), dtype=torch.float32, pin_memory=True)
            self.pending.copy_(value, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.pending = value
        return self.text


def batch_len(batch: dict) -> int:
    return int(batch["index"].shape[0])


def summarize(history: list[dict]) -> dict:
    if not history:
        return {}
    last = history[-1]
    return {"epochs": int(last["epoch"]), "final_loss": last["loss"],
            "first_loss": history[0]["loss"],
            "clips_per_s": float(np.median([h["clips_per_s"] for h in history]))}
