"""Backbones (chosen by name through :data:`BACKBONES`) and projection heads.

A backbone maps a clip ``(B, C, T, H, W)`` float tensor to a pooled feature ``(B, feature_dim)``;
``C`` is 3 for RGB and 2 for flow. Modules register themselves on import of this package.
"""
from ..registry import Registry

BACKBONES: Registry = Registry("backbone")


def build_backbone(name: str, in_channels: int = 3, **kwargs):
    """A backbone by registry name, e.g. ``build_backbone("r3d_18", in_channels=2)``."""
    return BACKBONES.build(name, in_channels=in_channels, **kwargs)


from . import tiny3d  # noqa: E402,F401  (registers "tiny3d")
from . import video_transformer  # noqa: E402,F401  (registers "video_transformer", CACL)
from . import video_resnets  # noqa: E402,F401  (registers r3d_18, r2plus1d_18, mc3_18, s3d)
from . import c3d  # noqa: E402,F401  (registers "c3d")
