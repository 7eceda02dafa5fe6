"""Training views, cut in the loader workers: the spatial half of the augmentation.

A *view* is one temporal window of a video (:class:`Window`) cropped and resized to the training
size: uint8 ``(T, S, S, C)``. The spatial draw -- a random-resized-crop box (area and aspect
ranges of the preset), a horizontal flip -- is made per clip (per frame when ``consistent`` is
false) from the sample's numpy generator, so a sample stays a function of (seed, epoch, index).
Photometric augmentation stays batched on the device (:mod:`vsslpipe.data.augment`).

Cutting views in the workers lets videos of any frame sizes share a batch, and the bytes that
cross the worker boundary are training-size views, not whole frames.

Boxes are integer (torchvision's ``RandomResizedCrop`` algorithm: 10 tries, then the largest
centred crop of an allowed aspect) and resized bilinearly at pixel centres without antialiasing
(``cv2.resize`` ``INTER_LINEAR``). The centre view (memory-bank passes, the frozen stream of
co-training) is the centred square of side ``min(H, W)``, i.e. the short side resized to ``S``
and a centre crop.

Flow: a mirror of quantised flow negates its x component, ``q -> 255 - q``; for the symmetric
quantiser (``f(q) = q * 2b / 255 - b``) ``f(255 - q) = -f(q)`` exactly. ``flow_compat`` (CoCLR's
code) mirrors without negating.

``decode: gpu``: the worker sends a window's JPEG bytes and the crop boxes instead of pixels,
and the training process decodes batches on the device (``torchvision.io.decode_jpeg`` on
lists) and cuts the same views there (:func:`decode_views`); flow is never JPEG and is always
cut in the workers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import cv2
import numpy as np

JPEG_PREFIX = "jpeg:"   # sample key of a window's JPEG bytes (decode: gpu)
TRIES = 10


@dataclass(frozen=True)
class Spatial:
    """The spatial augmentation of one modality: what a worker needs to cut views."""

    size: int
    area: tuple = (1.0, 1.0)        # crop area, fraction of the frame
    aspect: tuple = (1.0, 1.0)      # crop width / height
    flip_p: float = 0.0
    consistent: bool = True         # False: a draw per frame
    negate_x: bool = False          # flow: a mirror negates the x component

    def boxes(self, rng: np.random.Generator, frames: int, height: int, width: int) -> np.ndarray:
        """``(units, 5)`` int32 rows ``x0, y0, w, h, flip``: one unit per clip, or per frame."""
        n = 1 if self.consistent else frames
        # one draw for everything, then plain float arithmetic: per-unit numpy calls on arrays
        # of 10 would cost more than the crop itself
        draws = rng.random((n, 2 * TRIES + 3)).tolist()
        lo, hi = math.log(self.aspect[0]), math.log(self.aspect[1])
        out = np.empty((n, 5), np.int32)
        for k, u in enumerate(draws):
            for i in range(TRIES):
                area = height * width * (self.area[0] + (self.area[1] - self.area[0]) * u[i])
                ratio = math.exp(lo + (hi - lo) * u[TRIES + i])
                w, h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
                if 1 <= w <= width and 1 <= h <= height:
                    x0 = int(u[-3] * (width - w + 1))
                    y0 = int(u[-2] * (height - h + 1))
                    break
            else:                             # torchvision's fallback: centred, aspect clamped
                w, h = _fallback(height, width, self.aspect)
                x0, y0 = (width - w) // 2, (height - h) // 2
            out[k] = (x0, y0, w, h, u[-1] < self.flip_p)
        return out

    @staticmethod
    def center_box(height: int, width: int) -> np.ndarray:
        side = min(height, width)
        return np.array([[(width - side) // 2, (height - side) // 2, side, side, 0]], np.int32)


def _fallback(height: int, width: int, aspect: tuple) -> tuple[int, int]:
    ratio = width / height
    if ratio < aspect[0]:
        return width, int(round(width / aspect[0]))
    if ratio > aspect[1]:
        return int(round(height * aspect[1])), height
    return width, height


def cut(frames: np.ndarray, boxes: np.ndarray, size: int, negate_x: bool = False) -> np.ndarray:
    """``(T, H, W, C)`` uint8 -> ``(T, size, size, C)``: frame ``t`` cropped to box ``t`` (or the
    one box), resized (bilinear, pixel centres), mirrored where the box says so."""
    t, _, _, c = frames.shape
    out = np.empty((t, size, size, c), np.uint8)
    rows = boxes.tolist()
    for i in range(t):
        x0, y0, w, h, flip = rows[i if len(rows) > 1 else 0]
        crop = frames[i, y0:y0 + h, x0:x0 + w]
        dst = out[i]
        if (w, h) == (size, size):
            dst[...] = crop
        elif c <= 4:   # straight into the output (OpenCV keeps up to 4 channels as one image)
            cv2.resize(crop, (size, size), dst=dst, interpolation=cv2.INTER_LINEAR)
        else:
            dst[...] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
        if flip:
            cv2.flip(dst, 1, dst=dst)
            if negate_x:
                np.subtract(255, dst[..., 0], out=dst[..., 0])
    return out


def window_indices(start: int, clip_len: int, stride: int, num_frames: int) -> np.ndarray:
    """Frames ``start, start + stride, ...``; past the last frame the last frame repeats (the
    rule evaluation uses: index clamped to ``n - 1``)."""
    return np.minimum(start + np.arange(clip_len) * stride, num_frames - 1)


class Window:
    """Frames ``indices`` of one modality of a video, read once for every view cut from it."""

    def __init__(self, video, indices: Sequence[int], modality: Optional[str] = None,
                 stride: int = 1):
        self.video, self.modality, self.stride = video, modality, int(stride)
        self.indices = np.asarray(indices, dtype=np.int64)
        self._frames: Optional[np.ndarray] = None

    @classmethod
    def clip(cls, video, start: int, clip_len: int, stride: int,
             modality: Optional[str] = None) -> "Window":
        return cls(video, window_indices(start, clip_len, stride, video.num_frames), modality, stride)

    def _plan(self) -> tuple[int, int, int, Optional[np.ndarray]]:
        """``(lo, hi, step, pick)``: one contiguous read ``[lo, hi)`` at ``step``, then ``pick``
        (None: the read is the window)."""
        idx = self.indices
        lo = int(idx[0])
        regular = np.array_equal(idx, lo + np.arange(len(idx)) * self.stride)
        if regular:
            return lo, lo + (len(idx) - 1) * self.stride + 1, self.stride, None
        lo = int(idx.min())
        return lo, int(idx.max()) + 1, 1, idx - lo

    def frames(self) -> np.ndarray:
        """``(T, H, W, C)`` uint8 (RGB frames or quantised flow)."""
        if self._frames is None:
            idx = self.indices
            if idx.max() - idx.min() + 1 > 4 * len(idx):
                # scattered frames (image MoCo's random frames): never decode the whole span
                scattered = getattr(self.video, "read_scattered", None)
                if scattered is not None:
                    self._frames = scattered(idx, modality=self.modality)
                else:
                    got = {int(i): self.video.read(int(i), int(i) + 1, modality=self.modality)[0]
                           for i in np.unique(idx)}
                    self._frames = np.stack([got[int(i)] for i in idx])
            else:
                lo, hi, step, pick = self._plan()
                data = self.video.read(lo, hi, step, modality=self.modality)
                self._frames = data if pick is None else data[pick]
        return self._frames

    def jpeg(self) -> list:
        """The window's JPEG bytes, one uint8 array per frame (``decode: gpu``)."""
        idx = self.indices
        lo, hi = int(idx.min()), int(idx.max()) + 1
        data = self.video.read_jpeg(lo, hi, modality=self.modality)   # one call: bytes are cheap
        return [data[int(i) - lo] for i in idx]


def _encoded(video, modality: Optional[str]) -> bool:
    check = getattr(video, "jpeg_views", None)
    return bool(check(modality)) if check is not None else False


def take_views(video, window: Window, rng: Optional[np.random.Generator],
               spatial: Optional[Spatial], names: Sequence[str], center: bool = False) -> dict:
    """Views ``names`` of ``window``, each with its own spatial draw (``center``: the centre view,
    no randomness). ``spatial`` None gives the raw window under every name (whole frames)."""
    if spatial is None:
        frames = window.frames()
        return {name: frames for name in names}
    t = len(window.indices)
    if _encoded(video, window.modality):
        height, width = video.frame_size(window.modality)
        out: dict = {JPEG_PREFIX + names[0]: window.jpeg()}
        for name in names:
            boxes = Spatial.center_box(height, width) if center else spatial.boxes(rng, t, height, width)
            out[name] = {"jpeg": names[0], "boxes": boxes}
        return out
    frames = window.frames()
    _, height, width, _ = frames.shape
    out = {}
    for name in names:
        boxes = Spatial.center_box(height, width) if center else spatial.boxes(rng, t, height, width)
        out[name] = cut(frames, boxes, spatial.size, spatial.negate_x)
    return out


def collate(samples: list) -> dict:
    """``default_collate``, except JPEG byte lists (one per sample, of arrays of any length)."""
    from torch.utils.data import default_collate

    jpeg = [k for k in samples[0] if k.startswith(JPEG_PREFIX)]
    batch = default_collate([{k: v for k, v in s.items() if k not in jpeg} for s in samples])
    for k in jpeg:
        batch[k] = [s[k] for s in samples]
    return batch


def decode_views(batch: Mapping, device, size: int) -> dict:
    """``decode: gpu`` batches -> the batch with every encoded view as uint8 ``(B, T, S, S, 3)``
    on ``device``: JPEG decoded there (once per window) and cut with the boxes the workers drew.
    A batch without encoded views is returned as it is."""
    encoded = [k for k, v in batch.items() if isinstance(v, Mapping) and "boxes" in v]
    if not encoded:
        return dict(batch)
    out = {k: v for k, v in batch.items() if k not in encoded and not k.startswith(JPEG_PREFIX)}
    decoded: dict = {}
    for key in encoded:
        source = batch[key]["jpeg"][0]
        if source not in decoded:
            decoded[source] = _decode(batch[JPEG_PREFIX + source], device)
        out[key] = _cut_on_device(decoded[source], batch[key]["boxes"], size, device)
    return out


def _decode(jpegs: list, device):
    """B lists of T JPEG arrays -> ``(B, T, groups)``: groups of same-sized frames, each
    ``(flat indices, (N, 3, H, W) uint8)`` on ``device``."""
    import warnings

    import torch

    b, t = len(jpegs), len(jpegs[0])
    data = [torch.from_numpy(np.asarray(a, dtype=np.uint8)) for sample in jpegs for a in sample]
    with warnings.catch_warnings():     # torchvision 0.29 points at TorchCodec; same decoder
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg

        images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    by_shape: dict = {}
    for i, img in enumerate(images):
        by_shape.setdefault(tuple(img.shape), []).append(i)
    groups = [(idx, torch.stack([images[i] for i in idx])) for idx in by_shape.values()]
    return b, t, groups


def _cut_on_device(decoded, boxes, size: int, device):
    """The worker's :func:`cut` on the device: bilinear at pixel centres, sample coordinates
    clamped to the box (as ``cv2.resize`` of the crop), flip folded into the sampling grid."""
    import torch
    import torch.nn.functional as F

    b, t, groups = decoded
    boxes = boxes.to(device, non_blocking=True).reshape(b, -1, 5)
    boxes = boxes.expand(b, t, 5).reshape(b * t, 5).float()
    centres = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    out = None
    for idx, frames in groups:
        n, c, height, width = frames.shape
        if len(groups) > 1:
            index = _index_tensor(idx, device)
            bx = boxes.index_select(0, index)
        else:
            bx = boxes
        x0, y0, w, h, flip = bx.unbind(1)
        sx = x0[:, None] + centres * (w / size)[:, None] - 0.5
        sx = torch.minimum(torch.maximum(sx, x0[:, None]), (x0 + w - 1)[:, None])
        sx = torch.where(flip[:, None] > 0, sx.flip(1), sx)
        sy = (y0[:, None] + centres * (h / size)[:, None] - 0.5)
        sy = torch.minimum(torch.maximum(sy, y0[:, None]), (y0 + h - 1)[:, None])
        gx = (2 * sx + 1) / width - 1
        gy = (2 * sy + 1) / height - 1
        grid = torch.stack([gx[:, None, :].expand(n, size, size), gy[:, :, None].expand(n, size, size)], -1)
        views = F.grid_sample(frames.float(), grid, mode="bilinear", padding_mode="border",
                              align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
        if len(groups) == 1:
            out = views
        else:
            if out is None:
                out = torch.empty(b * t, c, size, size, dtype=torch.uint8, device=device)
            out.index_copy_(0, index, views)
    return out.view(b, t, -1, size, size).permute(0, 1, 3, 4, 2)


def _index_tensor(idx: list, device):
    """Host indices on ``device`` without a synchronising copy (pinned, non-blocking)."""
    import torch

    index = torch.as_tensor(idx, dtype=torch.long)
    if torch.device(device).type == "cuda":
        return index.pin_memory().to(device, non_blocking=True)
    return index
