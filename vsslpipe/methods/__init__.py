"""Self-supervised methods, chosen by ``pretrain.method`` (see :mod:`vsslpipe.methods.base`).

A method is an ``nn.Module`` subclass of :class:`~vsslpipe.methods.base.Method`; it registers
itself with ``@METHODS.register("<name>")`` in its own module, imported at the bottom of this
file (add one import line per new method).
"""
from __future__ import annotations

from ..registry import Registry

METHODS: Registry = Registry("method")


def build_method(spec):
    """The method named ``spec.name``, built from a :class:`~vsslpipe.methods.base.MethodSpec`."""
    return METHODS.build(spec.name, spec=spec)


from . import moco  # noqa: E402,F401  (registers "moco")
from . import cvrl  # noqa: E402,F401  (registers "cvrl")
from . import cvtcl  # noqa: E402,F401  (registers "cvtcl")
from . import coclr  # noqa: E402,F401  (registers "coclr")
from . import image_moco  # noqa: E402,F401  (registers "image_moco": CACL frame CNN)
from . import cacl  # noqa: E402,F401  (registers "cacl")
