"""TV-L1 parameters (OpenCV contrib's ``DualTVL1OpticalFlow`` defaults) shared by both backends."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class TVL1Params:
    """Every parameter of OpenCV's Dual TV-L1, at OpenCV's defaults.

    ``lambda_`` is OpenCV's ``lambda`` (a Python keyword). ``gamma`` must stay 0: the
    illumination term is not implemented by the torch backend.
    """

    tau: float = 0.25              # time step of the primal-dual scheme
    lambda_: float = 0.15          # weight of the data (L1) term
    theta: float = 0.3             # coupling between u and v
    nscales: int = 5               # pyramid levels (fewer if a level gets below 16 px)
    warps: int = 5                 # warpings per level
    epsilon: float = 0.01          # stopping threshold (per-pixel RMS of the update)
    inner_iterations: int = 30
    outer_iterations: int = 10     # median filtering happens once per outer iteration
    scale_step: float = 0.8        # pyramid scale factor
    gamma: float = 0.0             # illumination-change term (OpenCV: off by default)
    median_filtering: int = 5      # median kernel on the flow (1 = off)

    def validate(self) -> None:
        if not 0 < self.scale_step < 1:
            raise ConfigError(f"flow.tvl1.scale_step must be in (0, 1), got {self.scale_step}")
        if min(self.nscales, self.warps, self.inner_iterations, self.outer_iterations) < 1:
            raise ConfigError("flow.tvl1: nscales, warps, inner/outer_iterations must be >= 1")
        if self.median_filtering not in (1, 3, 5):
            raise ConfigError("flow.tvl1.median_filtering must be 1 (off), 3 or 5 "
                              f"(OpenCV's medianBlur on float images), got {self.median_filtering}")
        if min(self.tau, self.lambda_, self.theta, self.epsilon) <= 0 or self.gamma < 0:
            raise ConfigError("flow.tvl1: tau, lambda_, theta, epsilon must be > 0, gamma >= 0")

    def as_dict(self) -> dict:
        """OpenCV's names (``lambda`` without the underscore), for the store's attributes."""
        d = dataclasses.asdict(self)
        d["lambda"] = d.pop("lambda_")
        return d
