"""The shipped defaults: every stage's dataclass carries the values of the repository's
params.yaml (which the package ships), so a key left out of a params file means the same value
wherever the command runs, and `--help` shows what a run will use."""
from pathlib import Path

import pytest
import yaml

from vsslpipe.config import from_dict, to_dict

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def _sections():
    from vsslpipe.stages.export import ExportConfig
    from vsslpipe.stages.extract import ExtractConfig
    from vsslpipe.stages.finetune import FinetuneConfig
    from vsslpipe.stages.flow import FlowConfig
    from vsslpipe.stages.linear import LinearConfig
    from vsslpipe.stages.retrieve import RetrieveConfig
    from vsslpipe.stages.summary import SummaryConfig
    from vsslpipe.stages.synth import SynthConfig
    from vsslpipe.data.dataset_config import DataConfig
    from vsslpipe.train.config import PretrainConfig

    return [("data", DataConfig), ("synth", SynthConfig), ("extract", ExtractConfig),
            ("flow", FlowConfig), ("export", ExportConfig), ("retrieve", RetrieveConfig),
            ("linear", LinearConfig), ("finetune", FinetuneConfig), ("summary", SummaryConfig),
            ("pretrain.defaults", PretrainConfig)]


@pytest.mark.parametrize("section,cls", _sections(), ids=lambda x: x if isinstance(x, str) else "")
def test_dataclass_defaults_equal_params_yaml(section, cls):
    values = PARAMS
    for part in section.split("."):
        values = values[part]
    shipped, repo = to_dict(cls()), to_dict(from_dict(cls, values, section))
    if section == "pretrain.defaults":          # method hyper-parameters: checked below
        shipped.pop("method_args"), repo.pop("method_args")
    assert shipped == repo


def test_method_defaults_equal_params_yaml():
    from vsslpipe.methods import METHODS

    for name, args in PARAMS["pretrain"]["defaults"]["method_args"].items():
        config = METHODS.get(name).Config
        assert to_dict(config()) == to_dict(from_dict(config, args, name)), name
