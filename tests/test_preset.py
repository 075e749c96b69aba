"""Presets apply through DVC's own `-S` parser and give params every stage accepts."""

import shutil

import pytest
import yaml
from dvc.utils.hydra import apply_overrides
from test_params import BLOCKS

from conftest import REPO
from svwhisper.paramfile import load_params
from svwhisper.preset import PRESETS, flow, load_preset, overrides
from svwhisper.study import STEPS, VARIANTS, overrides_of, queue_commands


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


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_study_variant_sets_what_it_names_and_loads_in_every_block(tmp_path, name):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    cmd = next(c for c in queue_commands() if name in c)
    sets = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-S"]
    assert f"train.max_steps={STEPS}" in sets and "model.name=scratch" in sets
    assert set(VARIANTS[name]) <= set(sets) and len(sets) == len({s.split("=")[0] for s in sets})
    apply_overrides(params, sets)
    typed = {block: load_params(cls, block, params) for block, cls in BLOCKS.items()}
    baseline = tmp_path / "baseline.yaml"
    shutil.copy(REPO / "params.yaml", baseline)
    apply_overrides(baseline, overrides_of("study-baseline"))
    recipe = {block: load_params(cls, block, baseline) for block, cls in BLOCKS.items()}
    for override in sets:
        key, value = override.split("=")
        block, field = key.split(".")
        expected = yaml.safe_load(value.replace("1e-3", "0.001").replace("3e-3", "0.003"))
        assert getattr(typed[block], field) == expected, override
    for override in VARIANTS[name]:  # each variant changes something of the scratch recipe
        block, field = override.split("=")[0].split(".")
        assert getattr(typed[block], field) != getattr(recipe[block], field), f"{override} changes nothing"
