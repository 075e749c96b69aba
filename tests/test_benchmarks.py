"""The benchmarks run and their deterministic parts hold (speed is the benchmark's job, not a test's)."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def benchmark(name: str, *args: str) -> dict:
    """Run benchmarks/<name>.py with `args`; its last line of output, as JSON."""
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_featurize_benchmark_prints_one_json_object_with_its_targets():
    result = benchmark("featurize", "--clips", "16")
    assert result["clips"] == 16
    assert result["max_abs_diff"] <= 1e-3  # the model sees the same input either way
    assert result["size_ratio_vs_seed"] >= 8  # bytes on disk: not a timing
    for key in ("speedup_vs_seed", "peak_rss_mb_1x", "peak_rss_mb_4x", "rss_growth_4x", "targets_met"):
        assert key in result


def test_prepare_benchmark_reads_the_same_clips_from_every_kind_of_source():
    result = benchmark("prepare", "--clips", "16")
    for source in ("commonvoice", "hf_parquet", "hf_parquet_streaming"):
        assert result[f"{source}_kept"] == 16, source
        assert result[f"{source}_clips_per_s"] > 0


def test_train_step_benchmark_trains_both_models_on_the_same_labels():
    result = benchmark("train_step", "--steps", "1", "--batch-size", "2")
    assert result["window_s"]["baseline"] == 30 and result["batch_size"] == 2
    for key in ("baseline_samples_per_s", "ours_samples_per_s", "ours_tokens_per_s", "speedup_vs_baseline"):
        assert result[key] > 0, key


def test_inference_benchmark_compares_both_backends_on_the_same_clips(tiny_repo):
    models = ["--final", str(tiny_repo / "models/final"), "--exported", str(tiny_repo / "models/ct2")]
    result = benchmark("inference", "--clips", "8", "--batch-size", "4", *models)
    assert result["clips"] == 8 and result["audio_s"] > 0
    assert result["ctranslate2_model_mb"] < result["transformers_model_mb"]  # int8 weights
    assert result["wer_delta"] == pytest.approx(result["ctranslate2_wer"] - result["transformers_wer"], abs=1e-3)
    for key in ("speedup_vs_transformers", "transformers_rtf", "ctranslate2_rtf"):
        assert result[key] > 0, key


@pytest.mark.parametrize("backend, model_dir", [("transformers", "models/final"), ("ctranslate2", "models/ct2")])
def test_longform_benchmark_builds_recordings_of_clips_and_counts_words_out_of_nothing(tiny_repo, backend, model_dir):
    args = ["--quick", "--clips", "8", "--backend", backend, "--model-dir", str(tiny_repo / model_dir)]
    result = benchmark("longform", *args)
    assert result["recordings"] == 1 and result["clips"] == 8 and result["audio_s"] > 8 * 1.0
    assert set(result["silence_words_by_input"]) == {"silence", "noise", "tone"}
    assert result["silence_words"] == 0  # speech detection finds no speech in them, whatever the model
    assert 0 <= result["clip_wer"] and 0 <= result["longform_wer"]
    assert result["targets_met"] == (
        result["longform_wer"] <= result["clip_wer"] + 0.03 and (result["first_word_start_mae_s"] or 1) <= 0.3
    )
