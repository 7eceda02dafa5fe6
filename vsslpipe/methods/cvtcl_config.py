"""``method_args.coclr`` / ``method_args.cvtcl``: the settings of the two-stream methods
(:mod:`vsslpipe.methods.cvtcl`; the papers' values and the switches that reproduce the released
code, docs/methods.md)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..errors import ConfigError
from ..losses.ltcl import LTCL_FORMS

MODALITIES = ("rgb", "flow")


@dataclass(frozen=True)
class CoclrConfig:
    stage: str = "init"                  # init | cotrain
    temperature: float = 0.07
    queue_size: int = 2048
    momentum: float = 0.999
    proj_dim: int = 128
    proj_hidden: Optional[int] = None
    proj_layers: int = 2
    shuffle_bn: bool = True
    alpha: float = 1.0                   # weight of L_InfoNCE / L_RF
    init_rgb: Optional[str] = None       # co-training: the init stage's checkpoints
    init_flow: Optional[str] = None
    export_other_to: Optional[str] = None   # co-training: checkpoint of the non-exported stream
    topk: int = 5
    cycles: int = 2
    epochs_per_phase: int = 100
    first_phase: str = "rgb"
    clips: str = "same"                  # key view: same window | independent (CoCLR's code)
    mining_source: str = "bank"          # bank (paper) | queue (CoCLR's code)
    same_source_positive: bool = False   # CoCLR's code: same UCF101 source = positive, not mined
    drop_self_prob: float = 0.0          # CoCLR's code: 0.9
    wait_full_queue: bool = False        # CoCLR's code: no step until the queue is full

    def validate(self) -> None:
        if self.stage not in ("init", "cotrain"):
            raise ConfigError("stage must be init or cotrain")
        if self.queue_size < 1 or not 0.0 <= self.momentum < 1.0 or self.temperature <= 0:
            raise ConfigError("queue_size >= 1, 0 <= momentum < 1 and temperature > 0 required")
        if self.topk < 0 or self.cycles < 1 or self.epochs_per_phase < 1:
            raise ConfigError("topk >= 0, cycles >= 1 and epochs_per_phase >= 1 required")
        if self.first_phase not in MODALITIES or self.mining_source not in ("bank", "queue"):
            raise ConfigError("first_phase must be rgb|flow and mining_source bank|queue")
        if self.clips not in ("same", "independent"):
            raise ConfigError("clips must be same or independent")
        if not 0.0 <= self.drop_self_prob <= 1.0:
            raise ConfigError("drop_self_prob must be in [0, 1]")
        if self.stage == "cotrain" and not (self.init_rgb and self.init_flow):
            raise ConfigError("stage cotrain needs init_rgb and init_flow checkpoints")

    # CoCLR has no LTCL: the fields CVTCL adds read as off
    use_local = use_lt = ltcl_rgb = ltcl_flow = False
    beta, ltcl_form, num_subclips, subclip_len = 0.0, "paper", 4, None


@dataclass(frozen=True)
class CvtclConfig(CoclrConfig):
    beta: float = 1.0                    # weight of L_LTCL
    use_local: bool = True               # L_local, eq. (6) (Table 1 ablation)
    use_lt: bool = True                  # L_LT, eq. (7)
    ltcl_rgb: bool = True                # LTCL in co-training, per stream (paper Table 2)
    ltcl_flow: bool = False
    ltcl_form: str = "paper"             # paper | code (the released code's local loss)
    num_subclips: int = 4
    subclip_len: Optional[int] = None    # default clip_len // num_subclips

    def validate(self) -> None:
        super().validate()
        if self.ltcl_form not in LTCL_FORMS or self.num_subclips < 2:
            raise ConfigError(f"ltcl_form must be one of {LTCL_FORMS}, num_subclips >= 2")
