"""Fine-tuning settings (``finetune`` in params.yaml); torch-free so the CLI starts fast."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError


@dataclass(frozen=True)
class FinetuneSettings:
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-4
    dropout: float = 0.5
    batch_size: int = 16
    seed: int = 0
    flip_p: float = 0.0       # horizontal flips: off for the built-in set (direction is the class); UCF101: 0.5
    min_area: float = 0.4     # random crop: smallest area fraction of the short side's square

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or not 0 <= self.dropout < 1:
            raise ConfigError("epochs >= 1, batch_size >= 1, lr > 0, dropout in [0, 1)")
        if not 0 <= self.flip_p <= 1 or not 0 < self.min_area <= 1:
            raise ConfigError("flip_p in [0, 1], min_area in (0, 1]")
