"""TV-L1 parameters (OpenCV contrib's ``DualTVL1OpticalFlow`` defaults) shared by both backends."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import check


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
        check(0 < self.scale_step < 1, "scale_step", f"must be in (0, 1), got {self.scale_step:g}")
        for name in ("nscales", "warps", "inner_iterations", "outer_iterations"):
            check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        check(self.median_filtering in (1, 3, 5), "median_filtering",
              "must be 1 (off), 3 or 5 (OpenCV's medianBlur on float images), "
              f"got {self.median_filtering}")
        for name in ("tau", "lambda_", "theta", "epsilon"):
            check(getattr(self, name) > 0, name, f"must be > 0, got {getattr(self, name):g}")
        check(self.gamma >= 0, "gamma", f"must be >= 0, got {self.gamma:g}")

    def as_dict(self) -> dict:
        """OpenCV's names (``lambda`` without the underscore), for the store's attributes."""
        d = dataclasses.asdict(self)
        d["lambda"] = d.pop("lambda_")
        return d
