"""Fine-tuning: the whole backbone plus a dropout + linear head, trained with cross-entropy on
labelled training clips (one random window and random crop/flip per video per epoch), evaluated
by averaging the softmax of every evaluation window of each test video (docs/evaluation.md, "Fine-tuning").

Workers read only the window they need and crop it in uint8; the device normalises. The test set
is scored through the export's loader (workers, clips batched across videos). Loss and accuracy
are summed on the device and read once per epoch, so a step never waits for the host.
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from ..errors import DataError
from ..progress import ProgressBar
from .clips import VideoSource, WindowedVideos, check_ids, random_view, read_windows, to_input, window_index
from .export import autocast, cudnn_autotune, encode_windows, loader_for, prepare_model
from .finetune_config import FinetuneSettings
from .linear import topk_accuracy
from .protocols import Protocol, window_starts


class RandomClips(Dataset):
    """Item i: (a random window of video i, randomly cropped/flipped, its label); the draw
    depends only on (seed, epoch, i), so runs are reproducible whatever the worker count."""

    def __init__(self, source: VideoSource, ids: list[str], labels: np.ndarray, clip: dict,
                 seed: int, flip_p: float = 0.5, min_area: float = 0.4):
        self.source, self.ids, self.labels, self.clip, self.seed = source, ids, labels, clip, seed
        self.flip_p, self.min_area = flip_p, min_area
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """(uint8 (T, size, size, C) view, label)."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 10_007 + i)
        n = self.source.length(self.ids[i])
        clip_len, stride = self.clip["clip_len"], self.clip["stride"]
        span = (clip_len - 1) * stride + 1
        start = int(torch.randint(0, max(1, n - span + 1), (1,), generator=gen))
        item = read_windows(self.source, self.ids[i], window_index(n, [start], clip_len, stride), stride)
        window = item["frames"].numpy()[item["index"][0].numpy()]   # (T, H, W, C) uint8
        view = random_view(window, self.clip["size"], self.source.modality, gen, self.min_area,
                           self.flip_p)
        return view, int(self.labels[i])


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, dropout: float):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def video_scores(model: nn.Module, dataset: WindowedVideos, device: torch.device,
                 batch_size: int, workers: int = 0) -> np.ndarray:
    """Mean softmax over each video's evaluation windows, (videos, classes)."""
    model.eval()
    scores, _ = encode_windows(lambda x: model(x).float().softmax(dim=1), dataset,
                               lambda probs: probs.mean(dim=0), device, batch_size, workers,
                               desc="finetune test")
    return scores.numpy()


def finetune(backbone: nn.Module, modality: str, store, manifest: pd.DataFrame,
             protocol: Protocol, clip: dict, settings: FinetuneSettings,
             device: torch.device, workers: int = 0) -> dict:
    """Train backbone + head on the train split; top-1/top-5 (%) on the test split."""
    device = torch.device(device)
    train, test = (manifest[manifest["split"] == s] for s in ("train", "test"))
    for split, rows in (("train", train), ("test", test)):
        if rows.empty:
            raise DataError(f"finetune: no usable '{split}' videos (the manifest lists none, or "
                            "every one was skipped); fine-tuning needs both splits")
    num_classes = int(manifest["label"].max()) + 1
    source = VideoSource(modality, store)
    check_ids(source, manifest["video_id"].tolist(), modality)
    torch.manual_seed(settings.seed)
    model = prepare_model(Classifier(backbone, backbone.feature_dim, num_classes, settings.dropout), device)
    memory_format = torch.channels_last_3d if device.type == "cuda" else torch.contiguous_format
    data = RandomClips(source, train["video_id"].tolist(), train["label"].to_numpy(), clip,
                       settings.seed, settings.flip_p, settings.min_area)
    # drop the last partial batch (a batch of one breaks batch norm); shuffling spreads the loss
    loader = loader_for(data, device, workers, batch_size=settings.batch_size, shuffle=True,
                        drop_last=len(data) > settings.batch_size,
                        generator=torch.Generator().manual_seed(settings.seed))
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, settings.epochs))
    history = []
    with ProgressBar(settings.epochs, "finetune", "epochs") as bar, cudnn_autotune(device):
        for epoch in range(settings.epochs):
            data.epoch = epoch
            model.train()
            sums = torch.zeros(2, device=device)   # loss x samples, correct: read once per epoch
            seen = 0
            for x, y in loader:
                x = to_input(x.to(device, non_blocking=True), modality, source.bound)
                x = x.to(memory_format=memory_format)
                y = y.to(device, non_blocking=True)
                with autocast(device):
                    logits = model(x).float()
                loss = nn.functional.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sums += torch.stack([loss.detach() * len(y), (logits.argmax(1) == y).sum().float()])
                seen += len(y)
            sched.step()
            total, correct = sums.tolist()
            history.append({"epoch": epoch + 1, "loss": total / seen, "train_top1": 100.0 * correct / seen})
            bar.advance(1, loss=f"{total / seen:.3f}")
    starts = functools.partial(window_starts, mode=protocol.test_windows,
                               step=protocol.window_step, num_clips=protocol.num_clips)
    test_set = WindowedVideos(source, test["video_id"].tolist(), clip, starts, protocol.crop_fraction)
    scores = video_scores(model, test_set, device, settings.batch_size, workers)
    labels = test["label"].to_numpy()
    return {"top1": topk_accuracy(scores, labels, 1), "top5": topk_accuracy(scores, labels, 5),
            "history": history, "num_train": len(train), "num_test": len(test)}
