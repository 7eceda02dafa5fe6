"""k x k median filters equal to cv::medianBlur on float images: cv2 itself on CPU, torch's
median over unfolded windows, and a network of min/max operations for torch.compile.

torch's median over unfolded windows materialises k*k copies of the flow and sorts them; under
``torch.compile`` a fixed network of min/max on k*k shifted views fuses into one kernel instead
(no library offers this). The network is Batcher's odd-even merge sort over k*k values padded
with +inf to a power of two, pruned to the comparators the middle output depends on; like any
sorting network it returns exactly the median value, so it equals OpenCV's result bit for bit.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F


def _merge(lo: int, n: int, r: int):
    """Comparators merging the two sorted halves of [lo, lo + n) at stride r (Batcher)."""
    step = 2 * r
    if step < n:
        yield from _merge(lo, n, step)
        yield from _merge(lo + r, n, step)
        for i in range(lo + r, lo + n - r, step):
            yield i, i + r
    else:
        yield lo, lo + r


def _sort(lo: int, n: int):
    if n > 1:
        yield from _sort(lo, n // 2)
        yield from _sort(lo + n // 2, n // 2)
        yield from _merge(lo, n, 1)


@lru_cache(maxsize=None)
def median_program(count: int) -> tuple[tuple[str, int, int], ...]:
    """Operations ("min"/"max", a, b) on value ids 0..count-1 whose last result is the median.

    Values are tracked symbolically through the network: +inf pads turn their comparators into
    no-ops or swaps, and only operations the median needs are kept.
    """
    size = 1 << (count - 1).bit_length()
    wires: list = list(range(count)) + [None] * (size - count)     # None: +inf
    nodes: list[tuple[str, int, int]] = []                         # node id = count + index
    for i, j in _sort(0, size):
        a, b = wires[i], wires[j]
        if a is None or b is None:
            wires[i], wires[j] = (b, a) if a is None else (a, b)   # min(x, inf) = x
            continue
        nodes += [("min", a, b), ("max", a, b)]
        wires[i], wires[j] = count + len(nodes) - 2, count + len(nodes) - 1
    need, keep = {wires[count // 2]}, []
    for k in range(len(nodes) - 1, -1, -1):                        # prune backwards
        if count + k in need:
            keep.append(k)
            need |= {nodes[k][1], nodes[k][2]}
    ids = {v: v for v in range(count)}
    program = []
    for k in reversed(keep):
        op, a, b = nodes[k]
        ids[count + k] = count + len(program)
        program.append((op, ids[a], ids[b]))
    return tuple(program)


def median_blur(u: torch.Tensor, k: int) -> torch.Tensor:
    """k x k median with replicated borders (cv::medianBlur on float images, k in {3, 5}).

    On CPU this calls cv2.medianBlur itself (50x faster than a torch median over unfolded
    windows); on GPU the unfolded median runs on the device.
    """
    b, h, w = u.shape
    if u.device.type == "cpu":
        import cv2
        arr = u.contiguous().numpy()
        return torch.from_numpy(np.stack([cv2.medianBlur(a, k) for a in arr]))
    r = k // 2
    p = F.pad(u[:, None], (r, r, r, r), mode="replicate")
    return F.unfold(p, k).median(dim=1).values.reshape(b, h, w)


def median_network(u: torch.Tensor, k: int) -> torch.Tensor:
    """(B, H, W) -> k x k median with replicated borders, by the pruned network."""
    b, h, w = u.shape
    r = k // 2
    p = F.pad(u[:, None], (r, r, r, r), mode="replicate")[:, 0]
    values = [p[:, dy:dy + h, dx:dx + w] for dy in range(k) for dx in range(k)]
    for op, a, c in median_program(k * k):
        values.append(torch.minimum(values[a], values[c]) if op == "min"
                      else torch.maximum(values[a], values[c]))
    return values[-1]
