"""CoCLR (Han, Xie, Zisserman, NeurIPS 2020): the two-stream co-training CVTCL builds on.

Stage 1 trains each stream alone with MoCo's InfoNCE; stage 2 alternates the streams, each
taking as extra positives the top-K videos nearest in the other, frozen stream's embedding
space. It is CVTCL without LTCL, so it shares CVTCL's implementation
(:mod:`vsslpipe.methods.cvtcl`) with a configuration that has no LTCL parameters.
"""
from __future__ import annotations

from . import METHODS
from .cvtcl import CoclrConfig, Cvtcl


@METHODS.register("coclr")
class Coclr(Cvtcl):
    Config = CoclrConfig
