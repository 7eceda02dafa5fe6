"""Video clips for evaluation: read only the frames a video's windows use, crop, normalise.

Used by feature export (fixed windows, centre crop) and by fine-tuning (a random window and
crop per epoch). RGB comes from the frame store, flow from the flow store (one item per frame
pair). Readers (DataLoader workers) decode only the frames a video's windows use, each once
whatever the windows' overlap, and crop them in uint8 where that is exact; the device turns them
into network input (:func:`windows_to_input`: float, normalised with :mod:`vsslpipe.data.modality`
like the training input, resized if the view needs it, gathered into clips), so the host neither
converts whole videos to float nor copies floats to the device.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..data.modality import MODALITIES, normalize_flow, normalize_rgb
from ..errors import DataError


class VideoSource:
    """Frame-range reads from the store of a modality; picklable into DataLoader workers."""

    def __init__(self, modality: str, path: str | Path):
        if modality not in MODALITIES:
            raise DataError(f"unknown modality {modality!r}; valid: {', '.join(MODALITIES)}")
        self.modality = modality
        if modality == "rgb":
            from ..data.framestore import FrameStore
            self.store = FrameStore(path)
        else:
            from ..data.flowstore import FlowStore
            self.store = FlowStore(path)
        self.bound = getattr(self.store, "bound", None)

    def video_ids(self) -> list[str]:
        return self.store.video_ids()

    def length(self, video_id: str) -> int:
        """Frames (RGB) or frame pairs (flow) of a video; a DataError when there are none."""
        n = self.store.num_frames(video_id) if self.modality == "rgb" else self.store.num_pairs(video_id)
        if n == 0:
            raise DataError(f"{self.store.path}: video {video_id!r} has no "
                            f"{'frames' if self.modality == 'rgb' else 'flow pairs'}")
        return n

    def read_items(self, video_id: str, index: np.ndarray, stride: int = 1) -> np.ndarray:
        """Frames (or pairs) ``index`` (sorted, unique) as uint8 ``(len(index), H, W, C)``.

        Only those frames are decoded: the index is split into runs ``lo, lo + stride, ...``
        (windows of one temporal stride give few runs), each one store read with that step.
        """
        read = self.store.read if self.modality == "rgb" else self.store.read_uint8
        parts, where = [], []
        for run in _runs(index, stride):
            step = stride if len(run) > 1 else 1
            parts.append(read(video_id, int(run[0]), int(run[-1]) + 1, step))
            where.append(np.searchsorted(index, run))
        if len(parts) == 1:
            return parts[0]
        out = np.empty((len(index), *parts[0].shape[1:]), parts[0].dtype)
        for part, pos in zip(parts, where):
            out[pos] = part
        return out

    def read(self, video_id: str) -> torch.Tensor:
        """The whole video as a normalised (C, N, H, W) float tensor (for analysis scripts)."""
        x = torch.from_numpy(np.ascontiguousarray(self.read_items(video_id, np.arange(self.length(video_id)))))
        return normalize_frames(x, self.modality, self.bound).transpose(0, 1)


def _runs(index: np.ndarray, stride: int) -> list[np.ndarray]:
    """Sorted unique ``index`` as arithmetic runs of difference ``stride`` (per residue class
    modulo ``stride``, split at gaps)."""
    runs = []
    for residue in range(stride):
        sub = index[index % stride == residue]
        if len(sub):
            runs += np.split(sub, np.flatnonzero(np.diff(sub) != stride) + 1)
    return runs


def window_index(num_items: int, starts: Sequence[int], clip_len: int, stride: int) -> np.ndarray:
    """(n_clips, clip_len) item indices: start + k * stride, clamped to the last item, so a
    window that runs past the end repeats the last frame (the rule for short videos)."""
    index = np.asarray(starts, np.int64)[:, None] + np.arange(clip_len) * stride
    return np.minimum(index, num_items - 1)


def read_windows(source: VideoSource, video_id: str, index: np.ndarray, stride: int,
                 size: Optional[int] = None, crop_fraction: float = 1.0) -> dict:
    """The windows ``index`` (see :func:`window_index`) of a video, each frame read once:
    ``{"frames": uint8 (U, H, W, C) the distinct frames, "index": (n_clips, T) positions in
    frames, "done": the view is finished}``. With ``size``, frames whose short side is already
    ``size / crop_fraction`` (no resize) are centre-cropped to ``size`` here: exact in uint8,
    and fewer bytes to move; others are resized on the device (:func:`windows_to_input`).
    Overlapping windows (sliding every 15 frames) share frames, so they travel once."""
    used, inverse = np.unique(index, return_inverse=True)
    frames = source.read_items(video_id, used, stride)
    done = size is not None and min(frames.shape[1:3]) == round(size / crop_fraction)
    if done:
        frames = np.ascontiguousarray(center_crop(frames, size, channels_last=True))
    return {"frames": torch.from_numpy(np.ascontiguousarray(frames)),
            "index": torch.from_numpy(inverse.reshape(index.shape)), "done": done}


def dequantize(q: torch.Tensor, bound: float) -> torch.Tensor:
    """uint8 flow -> float pixels; the same float32 arithmetic as ``flowstore.dequantize_flow``
    (so features match the float reader), on the tensor's device."""
    return q.float() * float(np.float32(2.0 * bound / 255.0)) - float(np.float32(bound))


def normalize_frames(frames: torch.Tensor, modality: str, bound: Optional[float] = None) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` -> normalised float ``(N, C, H, W)`` (modality's convention), a
    channels-last view: the arithmetic runs in memory order, and the caller's gather or
    ``contiguous`` is the one copy into the network's layout."""
    x = frames.permute(3, 0, 1, 2)[None]   # (1, C, N, H, W), as the modality functions take it
    x = normalize_rgb(x.float() / 255.0) if modality == "rgb" else normalize_flow(dequantize(x, bound), bound)
    return x[0].transpose(0, 1)


def to_input(clips: torch.Tensor, modality: str, bound: Optional[float] = None) -> torch.Tensor:
    """uint8 ``(B, T, H, W, C)`` -> normalised float ``(B, C, T, H, W)`` on its device."""
    x = normalize_frames(clips.flatten(0, 1), modality, bound).unflatten(0, clips.shape[:2])
    return x.transpose(1, 2).contiguous()


def windows_to_input(item: dict, modality: str, bound: Optional[float], size: int,
                     crop_fraction: float = 1.0) -> torch.Tensor:
    """A :func:`read_windows` item (on its device) -> ``(n_clips, C, T, size, size)`` float:
    the distinct frames normalised (and resized/cropped unless done), then gathered."""
    x = normalize_frames(item["frames"], modality, bound)   # (U, C, H, W)
    if not item["done"]:
        x = center_crop(resize_frames(x, round(size / crop_fraction)), size)
    return x[item["index"]].transpose(1, 2).contiguous()


def resize_frames(frames: torch.Tensor, short: int) -> torch.Tensor:
    """(N, C, H, W) with the short side resized to ``short`` (bilinear, antialiased)."""
    h, w = frames.shape[-2:]
    if min(h, w) == short:
        return frames
    scale = short / min(h, w)
    out_hw = (max(short, round(h * scale)), max(short, round(w * scale)))
    return F.interpolate(frames, size=out_hw, mode="bilinear", align_corners=False, antialias=True)


def resize_short_side(clip: torch.Tensor, short: int) -> torch.Tensor:
    """(C, T, H, W) with the short side resized to ``short`` (time as the batch)."""
    return resize_frames(clip.transpose(0, 1), short).transpose(0, 1)


def center_crop(clip, size: int, channels_last: bool = False):
    """Centre ``size`` x ``size`` of (..., H, W) (or (..., H, W, C)); tensors or arrays."""
    h, w = clip.shape[-3:-1] if channels_last else clip.shape[-2:]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    if channels_last:
        return clip[..., top:top + size, left:left + size, :]
    return clip[..., top:top + size, left:left + size]


def eval_view(clip: torch.Tensor, size: int, crop_fraction: float = 1.0) -> torch.Tensor:
    """(C, T, H, W): short side to ``size / crop_fraction``, then the centre ``size`` x ``size``."""
    return center_crop(resize_short_side(clip, round(size / crop_fraction)), size)


def cut_window(video: torch.Tensor, start: int, clip_len: int, stride: int) -> torch.Tensor:
    """Frames start, start+stride, ... of a (C, N, H, W) video (the last one repeats)."""
    return video[:, torch.from_numpy(window_index(video.shape[1], [start], clip_len, stride)[0])]


def random_view(window: np.ndarray, size: int, modality: str, generator: torch.Generator,
                min_area: float = 0.4, flip_p: float = 0.5) -> torch.Tensor:
    """Fine-tuning augmentation of a uint8 ``(T, H, W, C)`` window: a random square crop (area
    fraction of the short side's square in [min_area, 1]) resized to ``size`` x ``size``, and a
    horizontal flip with p ``flip_p``; uint8 ``(T, size, size, C)``.

    Done in uint8 in the worker (the batch crossing to the device is small and of one shape);
    for flow the resize acts on the quantised values, which are linear in the flow, and a flip
    negates x exactly as ``255 - q`` (the quantisation is symmetric about zero).
    """
    t, h, w, c = window.shape
    short = min(h, w)
    area = float(torch.empty(1).uniform_(min_area, 1.0, generator=generator))
    side = max(8, int(round(short * area ** 0.5)))
    top = int(torch.randint(0, h - side + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - side + 1, (1,), generator=generator))
    crop = torch.from_numpy(np.ascontiguousarray(window[:, top:top + side, left:left + side]))
    crop = crop.permute(0, 3, 1, 2)
    if side != size:
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False,
                             antialias=True)
    if bool(torch.rand(1, generator=generator) < flip_p):
        crop = crop.flip(-1)
        if modality == "flow":
            crop[:, 0] = 255 - crop[:, 0]
    return crop.permute(0, 2, 3, 1).contiguous()


class WindowedVideos(Dataset):
    """Item i: every evaluation window of video ``video_ids[i]``, as :func:`read_windows` gives
    them (uint8); :meth:`to_input` finishes the view on the device."""

    def __init__(self, source: VideoSource, video_ids: Sequence[str], clip: dict,
                 starts_fn, crop_fraction: float = 1.0):
        self.source, self.video_ids = source, list(video_ids)
        self.clip, self.starts_fn, self.crop_fraction = clip, starts_fn, crop_fraction

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, i: int) -> dict:
        vid = self.video_ids[i]
        n = self.source.length(vid)
        clip_len, stride, size = self.clip["clip_len"], self.clip["stride"], self.clip["size"]
        starts = self.starts_fn(n, (clip_len - 1) * stride + 1)
        index = window_index(n, starts, clip_len, stride)
        return read_windows(self.source, vid, index, stride, size, self.crop_fraction)

    def to_input(self, item: dict, device: torch.device) -> torch.Tensor:
        """An item as normalised network input (n_clips, C, T, size, size) on ``device``."""
        item = {**item, "frames": item["frames"].to(device, non_blocking=True),
                "index": item["index"].to(device, non_blocking=True)}
        return windows_to_input(item, self.source.modality, self.source.bound, self.clip["size"],
                                self.crop_fraction)


def check_ids(source: VideoSource, wanted: Sequence[str], what: Optional[str] = None) -> None:
    missing = sorted(set(wanted) - set(source.video_ids()))
    if missing:
        raise DataError(f"{source.store.path}: {len(missing)} video(s) of the manifest are missing"
                        f"{' (' + what + ')' if what else ''}, e.g. {missing[0]!r}")
