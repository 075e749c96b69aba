"""Smoke tests of the real pipeline (dvc repro, dvc exp run) on the tiny memorisation slice."""

import dataclasses
import json
import re

import pandas as pd
import pytest
from safetensors import safe_open

from conftest import MAX_CLIP_CER, clip_cer, run
from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.metrics import error_rates
from svwhisper.params import AppParams

pytestmark = pytest.mark.slow


def test_repro_writes_every_out_and_leaves_a_clean_status(tiny_repo):
    for split in ("train", "dev", "test"):
        assert (tiny_repo / "data/prepared" / f"{split}.parquet").is_file()
        assert sorted((tiny_repo / "data/features" / split).glob("part-*.parquet")), split
    for model in ("models/base", "models/final"):
        for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json"):
            assert (tiny_repo / model / name).is_file(), f"{model}/{name}"
    curve = pd.read_csv(tiny_repo / "dvclive/plots/metrics/eval/wer.tsv", sep="\t")
    assert curve["step"].tolist() == [50, 100, 150, 200]  # training steps, as eval_steps says
    # the joint-CTC head (ctc_weight defaults to 0.3) is a training aid: the served model is a plain Whisper
    with safe_open(tiny_repo / "models/final/model.safetensors", "pt") as weights:
        assert not [k for k in weights.keys() if "ctc" in k]
    assert (tiny_repo / "dvc.lock").is_file()

    report = json.loads((tiny_repo / "reports/prepare.json").read_text())
    assert report["splits"]["train"]["kept"] == 8
    metrics = json.loads((tiny_repo / "metrics/eval.json").read_text())
    expected = {"wer", "cer", "wer_orthographic", "n_utterances", "hours", "decoding", "fell_back"}
    assert expected <= metrics.keys()
    assert metrics["n_utterances"] == 8 and metrics["hours"] > 0
    # what fine-tuning must not unlearn: every measure, over the held-out non-speech clips and the test speech
    robustness = metrics["robustness"]
    assert set(robustness) == set(ROBUSTNESS_KEYS)
    assert (robustness["nonspeech_clips"], robustness["speech_clips"]) == (6, 8)
    assert all(0 <= robustness[k] <= 1 for k in ROBUSTNESS_KEYS if k.endswith(("share", "rate", "median")))
    assert robustness["longform_words"] == len(" ".join(normalised_test_sentences(tiny_repo)).split())
    # the error analysis: the test clips' speakers (client_id of the prepared split), their lengths, the worst
    errors = json.loads((tiny_repo / "reports/errors.json").read_text())
    test = pd.read_parquet(tiny_repo / "data/prepared/test.parquet", columns=["id", "client_id"])
    assert sorted(s["speaker"] for s in errors["by_speaker"]) == sorted({c[:8] for c in test["client_id"]})
    assert sum(s["clips"] for s in errors["by_speaker"]) == sum(b["clips"] for b in errors["by_length"]) == 8
    assert {w["id"] for w in errors["worst"]} <= set(test["id"]) and len(errors["worst"]) == 8
    # Whisper as released at its 30 s window beside it, by faster-whisper and by our decoder (one clip in tests)
    peers = json.loads((tiny_repo / "metrics/peers.json").read_text())
    assert (peers["model"], peers["window_s"], peers["n_utterances"]) == ("packaged:openai/whisper-base", 30, 1)
    assert peers["decoding"] == metrics["decoding"]  # the same options as the fine-tuned model's
    assert set(peers["robustness"]["transformers"]) == {
        k for k in ROBUSTNESS_KEYS if not k.startswith(("long", "clip"))
    }
    assert peers["robustness"]["faster_whisper"]["nonspeech_clips"] == 1  # peers.max_clips caps it in tests
    released = pd.read_csv(tiny_repo / "reports/peers.tsv", sep="\t", keep_default_na=False)
    for peer in ("faster_whisper", "transformers"):
        assert peers[peer]["wer"] == pytest.approx(error_rates(released["reference"], released[peer])["wer"], abs=1e-4)

    status = run(["dvc", "status"], tiny_repo).stdout
    assert "up to date" in status, status
    again = run(["dvc", "repro"], tiny_repo).stdout
    assert "didn't change, skipping" in again and "Running stage" not in again, again


ROBUSTNESS_KEYS = (
    "nonspeech_clips",
    "nonspeech_empty_share",
    "nonspeech_no_speech_prob_median",
    "speech_clips",
    "speech_empty_share",
    "loop_share_greedy",
    "longform_words",
    "longform_deletion_rate",
    "clip_deletion_rate",
)


def normalised_test_sentences(repo) -> list[str]:
    from svwhisper.text import normalize

    return [
        normalize(s) for s in pd.read_parquet(repo / "data/prepared/test.parquet", columns=["sentence"])["sentence"]
    ]


def test_memorised_clips_come_back(tiny_repo):
    """Labels, special tokens and generation config are right if generate() returns the sentences."""
    predictions = pd.read_csv(tiny_repo / "reports/predictions.tsv", sep="\t", keep_default_na=False)
    assert len(predictions) == 8
    for row in predictions.itertuples():
        assert clip_cer(row.reference, row.hypothesis) <= MAX_CLIP_CER, row
    metrics = json.loads((tiny_repo / "metrics/eval.json").read_text())
    assert metrics["cer"] <= MAX_CLIP_CER / 2
    # decoded as the app decodes (params.yaml's app.decoding), and the metrics say so
    expected = dataclasses.asdict(dataclasses.replace(AppParams().decoding, word_timestamps=False))
    assert metrics["decoding"] == expected | {"temperatures": list(expected["temperatures"])}


def test_final_model_serves_swedish_in_a_plain_transformers_pipeline(tiny_repo, caplog):
    """The best checkpoint is saved as a complete model dir: any transformers user can load and run it."""
    import warnings

    from transformers import GenerationConfig, pipeline

    final = tiny_repo / "models/final"
    for name in ("processor_config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (final / name).is_file(), name
    generation = GenerationConfig.from_pretrained(final)
    assert (generation.language, generation.task, generation.forced_decoder_ids) == ("sv", "transcribe", None)

    prepared = pd.read_parquet(tiny_repo / "data/prepared/test.parquet")
    # decoded by our decoder, as a user's code would: handed bytes or a file name, transformers' pipeline
    # needs an ffmpeg binary that nothing here installs
    audio = {"raw": load_audio(prepared["audio"][0]), "sampling_rate": SAMPLE_RATE}
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("WARNING"):
        warnings.simplefilter("always")
        asr = pipeline("automatic-speech-recognition", model=str(final))
        text = asr(audio)["text"]
    assert clip_cer(prepared["sentence"][0], text) <= MAX_CLIP_CER  # a memorised clip, in Swedish
    said = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in said if re.search(r"language|forced_decoder_ids|\btask\b|translat", m, re.I)], said
