"""Two-stream samples (CoCLR / CVTCL co-training) and the un-augmented centre view.

Flow has one item fewer than frames (pair ``i`` lies between frames ``i`` and ``i + 1``), so a
two-stream video offers ``min(frames, pairs)`` positions (the dataset's ``num_frames`` for several
modalities); a window starting at ``s`` reads frames ``s..`` and the pairs that start at the same
frames, so both streams see the same motion.

Co-training trains one stream per phase and only embeds the other, frozen one, so a sample holds
the views of its epoch's phase only (:func:`trained_stream`, from the epoch the dataset passes
on the video): the trained stream's query and key views and the frozen stream's centre view of
the query's window.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sampling import clip_span, uniform_start
from .views import Spatial, Window, take_views
from .windows import independent_starts

MODALITIES = ("rgb", "flow")


def trained_stream(epoch: int, epochs_per_phase: int, first_phase: str) -> str:
    """The stream co-training trains in ``epoch`` (phases alternate, ``first_phase`` first)."""
    other = "flow" if first_phase == "rgb" else "rgb"
    return first_phase if (epoch // epochs_per_phase) % 2 == 0 else other


def other_stream(modality: str) -> str:
    return "flow" if modality == "rgb" else "rgb"


@dataclass(frozen=True)
class TwoStreamSampler:
    """Co-training views of one video for the stream ``t`` trained in the sample's epoch:
    ``{t: query view, f"{t}_key": key view, f"{o}_center": centre view of the frozen stream o}``
    uint8 ``(T, S, S, C)``, all of the query's window except the key view with
    ``two_windows=True`` (a second, independent window: CoCLR's loader,
    :mod:`vsslpipe.data.windows`); then streams in ``ltcl`` also get ``f"{t}_ltcl"``, a second
    view of the query's window (LTCL's sub-clips must show the query's window)."""

    clip_len: int
    stride: int
    spatial_rgb: Spatial
    spatial_flow: Spatial
    epochs_per_phase: int = 1
    first_phase: str = "rgb"
    two_windows: bool = False
    ltcl: tuple = ()

    def __call__(self, video, rng: np.random.Generator) -> dict:
        t = trained_stream(getattr(video, "epoch", 0), self.epochs_per_phase, self.first_phase)
        spatial = {"rgb": self.spatial_rgb, "flow": self.spatial_flow}
        n, length, stride = video.num_frames, self.clip_len, self.stride
        if self.two_windows:
            a, b = independent_starts(n, length, stride, rng)
            names = (t, f"{t}_ltcl") if t in self.ltcl else (t,)
        else:
            a = b = uniform_start(n, length, stride, rng)
            names = (t, f"{t}_key")
        out = take_views(video, Window.clip(video, a, length, stride, t), rng, spatial[t], names)
        if self.two_windows:
            key = Window.clip(video, b, length, stride, t)
            out.update(take_views(video, key, rng, spatial[t], (f"{t}_key",)))
        o = other_stream(t)
        frozen = Window.clip(video, a, length, stride, o)
        out.update(take_views(video, frozen, None, spatial[o], (f"{o}_center",), center=True))
        return out


@dataclass(frozen=True)
class CenterClipSampler:
    """``{"clip": (T,S,S,C)}``: the centre view of the middle window of one modality
    (memory-bank passes)."""

    clip_len: int
    stride: int
    modality: str
    spatial: Spatial

    def __call__(self, video, rng: np.random.Generator) -> dict:
        max_start = max(video.num_frames - clip_span(self.clip_len, self.stride), 0)
        window = Window.clip(video, max_start // 2, self.clip_len, self.stride, self.modality)
        return take_views(video, window, None, self.spatial, ("clip",), center=True)
