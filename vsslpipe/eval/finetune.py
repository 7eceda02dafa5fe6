"""Fine-tuning: the whole backbone plus a dropout + linear head, trained with cross-entropy on
labelled training clips (one random window and random crop/flip per video per epoch), evaluated
by averaging the softmax of every evaluation window of each test video (METHODS.md)."""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError
from ..progress import ProgressBar
from .clips import VideoSource, WindowedVideos, check_ids, cut_window, random_view
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
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 10_007 + i)
        video = self.source.read(self.ids[i])
        span = (self.clip["clip_len"] - 1) * self.clip["stride"] + 1
        start = int(torch.randint(0, max(1, video.shape[1] - span + 1), (1,), generator=gen))
        window = cut_window(video, start, self.clip["clip_len"], self.clip["stride"])
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


@torch.no_grad()
def video_scores(model: nn.Module, dataset: WindowedVideos, device: torch.device,
                 batch_size: int) -> np.ndarray:
    """Mean softmax over each video's evaluation windows, (videos, classes)."""
    model.eval()
    scores = []
    for i in range(len(dataset)):
        clips = dataset[i]
        probs = torch.cat([model(c.to(device)).softmax(dim=1) for c in clips.split(batch_size)])
        scores.append(probs.mean(dim=0).cpu().numpy())
    return np.stack(scores)


def finetune(backbone: nn.Module, modality: str, store, manifest: pd.DataFrame,
             protocol: Protocol, clip: dict, settings: FinetuneSettings,
             device: torch.device, workers: int = 0) -> dict:
    """Train backbone + head on the train split; top-1/top-5 (%) on the test split."""
    train, test = (manifest[manifest["split"] == s] for s in ("train", "test"))
    if train.empty or test.empty:
        raise DataError("fine-tuning needs 'train' and 'test' videos in the manifest")
    num_classes = int(manifest["label"].max()) + 1
    source = VideoSource(modality, store)
    check_ids(source, manifest["video_id"].tolist(), modality)
    torch.manual_seed(settings.seed)
    model = Classifier(backbone, backbone.feature_dim, num_classes, settings.dropout).to(device)
    data = RandomClips(source, train["video_id"].tolist(), train["label"].to_numpy(), clip,
                       settings.seed, settings.flip_p, settings.min_area)
    loader = DataLoader(data, batch_size=settings.batch_size, shuffle=True, drop_last=False,
                        num_workers=workers, generator=torch.Generator().manual_seed(settings.seed))
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, settings.epochs))
    history = []
    with ProgressBar(settings.epochs, "finetune", "epochs") as bar:
        for epoch in range(settings.epochs):
            data.epoch = epoch
            model.train()
            total, seen, correct = 0.0, 0, 0
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                logits = model(x)
                loss = nn.functional.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(y)
                seen += len(y)
                correct += int((logits.argmax(1) == y).sum())
            sched.step()
            history.append({"epoch": epoch + 1, "loss": total / seen, "train_top1": 100.0 * correct / seen})
            bar.advance(1, loss=f"{total / seen:.3f}")
    starts = functools.partial(window_starts, mode=protocol.test_windows,
                               step=protocol.window_step, num_clips=protocol.num_clips)
    test_set = WindowedVideos(source, test["video_id"].tolist(), clip, starts, protocol.crop_fraction)
    scores = video_scores(model, test_set, device, settings.batch_size)
    labels = test["label"].to_numpy()
    return {"top1": topk_accuracy(scores, labels, 1), "top5": topk_accuracy(scores, labels, 5),
            "history": history, "num_train": len(train), "num_test": len(test)}
