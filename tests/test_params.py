import json
from dataclasses import FrozenInstanceError, dataclass

import pytest

from conftest import REPO
from svwhisper.paramfile import ParamsError, load_params
from svwhisper.params import BLOCKS, TrainParams
from svwhisper.peers import PeersParams

# every block of params.yaml, in its order: svwhisper.params's, and the peers stage's (typed in svwhisper.peers so
# that a knob of it never changes a code dep of the training stages)
SHIPPED = dict([*list(BLOCKS.items())[: list(BLOCKS).index("evaluate") + 1], ("peers", PeersParams)])
SHIPPED |= {k: v for k, v in BLOCKS.items() if k not in SHIPPED}


@dataclass(frozen=True)
class Knobs:
    learning_rate: float = 1e-5
    steps: int = 10
    enabled: bool = False
    names: tuple[str, ...] = ("train",)


def write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("block, cls", SHIPPED.items())
def test_every_block_of_the_shipped_params_loads(block, cls):
    params = load_params(cls, block, REPO / "params.yaml")
    with pytest.raises(FrozenInstanceError):
        setattr(params, next(iter(params.__dataclass_fields__)), None)


@pytest.mark.parametrize("block, cls", SHIPPED.items())
def test_every_default_is_the_value_params_yaml_ships(block, cls):
    """One source of truth: code that builds `TrainParams()` runs what a user's `make repro` runs."""
    shipped, default = load_params(cls, block, REPO / "params.yaml"), cls()
    differ = {k: (getattr(default, k), getattr(shipped, k)) for k in cls.__dataclass_fields__}
    assert {k: v for k, v in differ.items() if v[0] != v[1]} == {}


def test_params_yaml_has_exactly_the_blocks_the_settings_define():
    import yaml

    assert list(yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))) == list(SHIPPED)


def test_dvc_exp_scientific_notation_string_becomes_a_float(tmp_path):
    # what `dvc exp run -S train.learning_rate=2e-5` writes: YAML reads 2e-05 as a string
    path = write(tmp_path, "train:\n  learning_rate: 2e-05\n  steps: '300'\n  enabled: 'true'\n  names: dev\n")
    knobs = load_params(Knobs, "train", path)
    assert knobs.learning_rate == pytest.approx(2e-5) and isinstance(knobs.learning_rate, float)
    assert knobs.steps == 300 and knobs.enabled is True and knobs.names == ("dev",)


def test_misspelt_key_is_an_error_naming_file_line_and_key(tmp_path):
    path = write(tmp_path, "train:\n  learning_rate: 0.1\n  learnin_rate: 0.2\n")
    with pytest.raises(ParamsError, match=r"params\.yaml:3: train\.learnin_rate: unknown key"):
        load_params(Knobs, "train", path)


@pytest.mark.parametrize(
    "line, message",
    [("steps: 2.5", "whole number"), ("steps: many", "expected a number"), ("enabled: maybe", "true or false")],
)
def test_values_of_the_wrong_type_are_rejected(tmp_path, line, message):
    with pytest.raises(ParamsError, match=message):
        load_params(Knobs, "train", write(tmp_path, f"train:\n  {line}\n"))


@pytest.mark.parametrize("model", ["openai/whisper-../../tmp/x", "openai/whisper-small/../../x", "openai/whisper-",
                                   "openai/whisper-small\n", "someone/whisper-small"])  # fmt: skip
def test_the_peers_model_is_a_released_whisper_or_the_packaged_base(tmp_path, model):
    path = write(tmp_path, f"peers:\n  model: {json.dumps(model)}\n")
    with pytest.raises(ParamsError, match=r"params\.yaml:2: peers\.model: must be .* openai/whisper-<size>"):
        load_params(PeersParams, "peers", path)
    for released in ("openai/whisper-small", "openai/whisper-large-v3", "openai/whisper-base.en"):
        load_params(PeersParams, "peers", write(tmp_path, f"peers:\n  model: {released}\n"))


def test_missing_block_and_failed_check_are_errors(tmp_path):
    with pytest.raises(ParamsError, match="block 'train' is missing"):
        load_params(Knobs, "train", write(tmp_path, "other: {}\n"))
    bad = write(tmp_path, "train:\n  save_steps: 150\n  eval_steps: 100\n")
    with pytest.raises(ParamsError, match="multiple of eval_steps"):
        load_params(TrainParams, "train", bad)
