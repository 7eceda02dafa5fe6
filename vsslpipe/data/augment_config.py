"""``pretrain.augment`` settings and the augmentation presets (the loader workers cut the spatial
half, vsslpipe.data.views; vsslpipe.data.augment applies the photometric half on the device).

Kept free of torch so that reading a configuration (every CLI start) does not import it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

PRESETS: dict[str, dict] = {
    "cvrl": dict(area=(0.3, 1.0), aspect=(0.5, 2.0), flip_p=0.5, jitter=(0.8, 0.8, 0.8, 0.2),
                 jitter_p=0.8, gray_p=0.2, blur_p=(1.0, 0.1), solarize_p=(0.0, 0.2),
                 blur_sigma=(0.1, 2.0)),
    "coclr": dict(area=(0.2, 1.0), aspect=(0.75, 4.0 / 3.0), flip_p=0.5,
                  jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8, gray_p=0.2, blur_p=(0.5, 0.5),
                  solarize_p=(0.0, 0.0), blur_sigma=(0.1, 2.0)),
}


@dataclass(frozen=True)
class AugmentConfig:
    """``pretrain.augment`` in params.yaml. ``overrides`` replaces single preset values."""

    preset: str = "cvrl"
    consistent: bool = True          # false: a new draw per frame (ablation only)
    flow_compat: bool = False        # CoCLR's flow handling (no x negation, jitter on flow)
    overrides: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"preset {self.preset!r} unknown; valid: {', '.join(PRESETS)}")
        bad = sorted(set(self.overrides) - set(PRESETS[self.preset]))
        if bad:
            raise ConfigError(f"overrides: unknown key(s) {', '.join(bad)}; "
                              f"valid: {', '.join(PRESETS[self.preset])}")

    def resolved(self) -> dict:
        values = dict(PRESETS[self.preset])
        for k, v in self.overrides.items():
            values[k] = tuple(v) if isinstance(v, list) else v
        return values
