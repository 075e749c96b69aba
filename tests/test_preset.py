"""Presets apply through DVC's own `-S` parser and give params every stage accepts."""

import shutil

import pytest
import yaml
from dvc.utils.hydra import apply_overrides
from test_params import BLOCKS

from conftest import REPO
from svwhisper.paramfile import load_params
from svwhisper.preset import PRESETS, flow, load_preset, overrides
from svwhisper.study import SEEDS, VARIANTS, overrides_of, run_command


def test_overrides_flatten_blocks_and_keep_lists_whole():
    preset = {"train": {"learning_rate": 1e-5, "precision": "auto"}, "prepare": {"sources": {"dev": [{"kind": "x"}]}}}
    assert overrides(preset) == [
        "train.learning_rate=1.0e-05",
        "train.precision=auto",
        "prepare.sources.dev=[{kind: x}]",
    ]
    assert flow(True) == "true" and flow("torchrun --nproc_per_node 4") == "torchrun --nproc_per_node 4"


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESETS.glob("*.yaml")))
def test_every_preset_applied_with_dash_s_loads_in_every_block(tmp_path, name):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    preset = load_preset(name)
    apply_overrides(params, overrides(preset))  # what `dvc exp run -S` does with them
    applied = yaml.safe_load(params.read_text(encoding="utf-8"))
    typed = {block: load_params(cls, block, params) for block, cls in BLOCKS.items()}
    for block, values in preset.items():
        for key, value in values.items():
            if isinstance(value, dict | list):
                assert applied[block][key] == value, f"{block}.{key}"
            else:  # "1e-05" comes back as a string: compare after our typed loading, as the stages see it
                assert getattr(typed[block], key) == value, f"{block}.{key}"


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(SystemExit, match="known: .*whisper-small-cv"):
        load_preset("whisper-large")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_study_variant_changes_what_it_names_of_the_default_and_loads_in_every_block(tmp_path, name):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    cmd = run_command(name, SEEDS[1])
    sets = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-S"]
    assert cmd[:4] == ["dvc", "exp", "run", "--temp"] and cmd[-1] == "evaluate"  # the workspace is left alone
    assert sets == overrides_of(name, SEEDS[1]) and len(sets) == len({s.split("=")[0] for s in sets})
    apply_overrides(params, sets)  # DVC's own -S parser, as `dvc exp run` applies them
    typed = {block: load_params(cls, block, params) for block, cls in BLOCKS.items()}
    default = {block: load_params(cls, block, REPO / "params.yaml") for block, cls in BLOCKS.items()}
    assert typed["train"].seed == SEEDS[1]
    for override in sets:
        key, value = override.split("=")
        block, *path = key.split(".")
        got, shipped = typed[block], default[block]
        for field in path:
            got, shipped = getattr(got, field), getattr(shipped, field)
        expected = yaml.safe_load(value)  # "3e-5" stays a string in YAML: the stages read it as a number
        expected = tuple(expected) if isinstance(expected, list) else expected
        if isinstance(got, float):
            assert got == pytest.approx(float(expected)), override
        else:
            assert got == expected, override
        if override in VARIANTS[name][1] and not override.endswith("mask_time_prob=0.05"):
            assert got != shipped, f"{override} changes nothing of the default"
