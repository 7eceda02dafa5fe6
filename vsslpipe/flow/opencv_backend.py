"""The reference backend: OpenCV contrib's Dual TV-L1 (``cv2.optflow``), one pair at a time."""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import VsslpipeError
from .params import TVL1Params


def opencv_version() -> str:
    return cv2.__version__


def create_tvl1(params: TVL1Params):
    """A ``cv2.optflow.DualTVL1OpticalFlow`` configured with every parameter explicitly."""
    if not hasattr(cv2, "optflow"):
        raise VsslpipeError("OpenCV was installed without the contrib modules (cv2.optflow); "
                            "install opencv-contrib-python-headless")
    return cv2.optflow.DualTVL1OpticalFlow_create(
        tau=params.tau, lambda_=params.lambda_, theta=params.theta, nscales=params.nscales,
        warps=params.warps, epsilon=params.epsilon, innnerIterations=params.inner_iterations,
        outerIterations=params.outer_iterations, scaleStep=params.scale_step,
        gamma=params.gamma, medianFiltering=params.median_filtering, useInitialFlow=False)


def to_gray(frames_rgb: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, H, W) uint8 luma (OpenCV's BT.601 weights)."""
    if frames_rgb.shape[0] == 0:
        return np.zeros(frames_rgb.shape[:3], np.uint8)
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames_rgb])


def flow_pairs_opencv(gray: np.ndarray, params: TVL1Params, tvl1=None) -> np.ndarray:
    """Flow between consecutive frames of ``gray`` (T, H, W) uint8 -> (T-1, H, W, 2) float32 px."""
    tvl1 = tvl1 if tvl1 is not None else create_tvl1(params)
    t, h, w = gray.shape
    out = np.empty((max(t - 1, 0), h, w, 2), np.float32)
    for i in range(t - 1):
        out[i] = tvl1.calc(gray[i], gray[i + 1], None)
    return out
