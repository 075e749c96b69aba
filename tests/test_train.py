import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open

from conftest import REPO, override_params, run
from svwhisper.paramfile import ParamsError, parse_block
from svwhisper.params import TrainParams
from svwhisper.trainer import ctc_targets, resolve_precision, train_or_explain_oom


def test_ctc_targets_keep_only_spoken_tokens():
    eot = 50  # first special id: <|endoftext|>; prefix tokens and timestamps are above it
    labels = torch.tensor(
        [
            [51, 52, 53, 10, 11, 12, eot],
            [51, 52, 53, 7, eot, -100, -100],
        ]
    )
    targets, lengths = ctc_targets(labels, eot)
    assert targets.tolist() == [10, 11, 12, 7]
    assert lengths.tolist() == [3, 1]


@pytest.mark.parametrize(
    "asked, cuda, bf16_ok, expected",
    [
        ("auto", False, False, "fp32"),
        ("auto", True, True, "bf16"),
        ("auto", True, False, "fp16"),
        ("fp32", True, True, "fp32"),
    ],
)
def test_precision_follows_the_hardware(asked, cuda, bf16_ok, expected):
    assert resolve_precision(asked, cuda=cuda, bf16_ok=bf16_ok) == expected


def test_precision_the_hardware_cannot_run_is_refused_at_start():
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", cuda=False, bf16_ok=False)
    # bf16 autocast on a CPU: only where it is native; auto never picks it there
    assert resolve_precision("bf16", cuda=False, bf16_ok=False, cpu_bf16=True) == "bf16"
    assert resolve_precision("auto", cuda=False, bf16_ok=False, cpu_bf16=True) == "fp32"
    with pytest.raises(ValueError, match="needs native bfloat16"):
        resolve_precision("bf16", cuda=False, bf16_ok=False, cpu_bf16=False)
    with pytest.raises(ValueError, match="no bfloat16 support"):
        resolve_precision("bf16", cuda=True, bf16_ok=False)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lora_rank": 8, "freeze_encoder": True}, "trains adapters only"),
        ({"lora_rank": 8, "ctc_weight": 0.3}, "trains adapters only"),
        ({"freeze_encoder": True, "ctc_weight": 0.3}, "needs freeze_encoder: false"),
        ({"precision": "fp8"}, "precision: must be one of auto"),
        ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps"),
    ],
)
def test_invalid_combinations_are_rejected_when_params_load(values, message):
    with pytest.raises(ParamsError, match=message):
        parse_block(TrainParams, values, "train")


class OutOfMemoryTrainer:
    def __init__(self, err):
        self.err = err

    def train(self, resume_from_checkpoint=None):
        raise self.err


def test_out_of_memory_names_the_knobs_and_other_errors_pass_through():
    params = TrainParams(batch_size=16)
    with pytest.raises(SystemExit) as stop:
        train_or_explain_oom(
            OutOfMemoryTrainer(torch.OutOfMemoryError("CUDA out of memory. Tried 2 GiB")), params, None
        )
    message = str(stop.value)
    assert "-S train.batch_size=8 -S train.gradient_accumulation_steps=2 (same effective batch of 16)" in message
    assert "gradient_checkpointing=true" in message and "CUDA out of memory" in message
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    with pytest.raises(SystemExit, match="out of memory in a training step"):
        train_or_explain_oom(OutOfMemoryTrainer(cpu), params, None)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        train_or_explain_oom(OutOfMemoryTrainer(RuntimeError("shape mismatch")), params, None)


def run_train_stage(
    tiny_repo: Path, tmp_path: Path, overrides: dict, features: Path | None = None
) -> subprocess.CompletedProcess:
    """The train stage on the tiny repo's base model and features (or `features`), with `overrides` in its train
    block, in `tmp_path`."""
    shutil.copy(tiny_repo / "params.yaml", tmp_path / "params.yaml")
    override_params(tmp_path / "params.yaml", {"train": overrides})
    features = features or tiny_repo / "data/features"
    cmd = [sys.executable, "-m", "stages.train", "--base-model", str(tiny_repo / "models/base")]
    cmd += ["--features", str(features), "--checkpoints", "ck", "--dvclive", "log", "--out", "final"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


SHORT = {"max_steps": 10, "eval_steps": 10, "save_steps": 10, "warmup_steps": 2, "ctc_weight": 0.0}


@pytest.mark.slow
def test_lora_adapters_are_merged_into_a_plain_whisper(tiny_repo, tmp_path):
    # with gradient checkpointing and accumulation, the memory knobs of the whisper-small preset
    lora = {"lora_rank": 4, "learning_rate": 1e-2, "gradient_checkpointing": True, "gradient_accumulation_steps": 2}
    done = run_train_stage(tiny_repo, tmp_path, {**SHORT, **lora})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "M parameters train" in done.stdout
    with safe_open(tmp_path / "final/model.safetensors", "pt") as final:
        assert not [k for k in final.keys() if "lora" in k]
        with safe_open(tiny_repo / "models/base/model.safetensors", "pt") as base:
            name = "model.decoder.layers.0.self_attn.q_proj.weight"
            assert not torch.equal(final.get_tensor(name), base.get_tensor(name))  # adapters folded in
            name = "model.decoder.layers.0.fc1.weight"
            assert torch.equal(final.get_tensor(name), base.get_tensor(name))  # no adapter there: untouched
    state = json.loads(next((tmp_path / "ck").glob("*/checkpoint-10/trainer_state.json")).read_text())
    assert state["global_step"] == 10 and state["train_batch_size"] == 8


@pytest.mark.slow
def test_freeze_encoder_trains_the_decoder_only(tiny_repo, tmp_path):
    done = run_train_stage(tiny_repo, tmp_path, {**SHORT, "freeze_encoder": True, "eval_max_samples": 4})
    assert done.returncode == 0, done.stderr[-3000:]
    with safe_open(tmp_path / "final/model.safetensors", "pt") as final:
        with safe_open(tiny_repo / "models/base/model.safetensors", "pt") as base:
            for name in ("model.encoder.layers.0.fc1.weight", "model.decoder.layers.0.fc1.weight"):
                same = torch.equal(final.get_tensor(name), base.get_tensor(name))
                assert same == ("encoder" in name), name
    evaluated = json.loads((tmp_path / "log/metrics.json").read_text())["eval"]
    assert round(evaluated["runtime"] * evaluated["samples_per_second"]) == 4  # eval_max_samples of the 8 dev clips


@pytest.mark.slow
def test_freezing_the_lowest_encoder_layers_leaves_them_and_the_front_end_as_they_were(tiny_repo, tmp_path):
    done = run_train_stage(tiny_repo, tmp_path, {**SHORT, "freeze_encoder_layers": 1, "eval_max_samples": 4})
    assert done.returncode == 0, done.stderr[-3000:]
    with safe_open(tmp_path / "final/model.safetensors", "pt") as final:
        with safe_open(tiny_repo / "models/base/model.safetensors", "pt") as base:
            for name in ("conv1.weight", "conv2.weight", "layers.0.fc1.weight", "layers.1.fc1.weight"):
                same = torch.equal(final.get_tensor(f"model.encoder.{name}"), base.get_tensor(f"model.encoder.{name}"))
                assert same == (not name.startswith("layers.1")), name  # the tiny encoder's 2 layers: 1 frozen


def nonspeech_prob(model_dir: Path, features: Path) -> float:
    """The median P(no speech) the model in `model_dir` gives the held-out non-speech clips in `features`."""
    from svwhisper.data import FeatureSplit
    from svwhisper.decoding import decode_features
    from svwhisper.hf_backend import TransformersBackend
    from svwhisper.logmel import pad_features
    from svwhisper.params import GREEDY

    backend = TransformersBackend(model_dir)
    frames = backend.processor.feature_extractor.nb_max_frames
    split = FeatureSplit(features)
    batch = np.stack([pad_features(split[i]["input_features"], frames) for i in range(len(split))])
    hyps = decode_features(backend, batch.astype(np.float32), [frames // 2] * len(split), GREEDY)
    return float(np.median([h.no_speech_prob for h in hyps]))


@pytest.mark.slow
def test_training_with_nonspeech_clips_keeps_p_no_speech_where_speech_alone_loses_it(tiny_repo, tmp_path):
    """40 steps from the tiny repo's base model (random init), on its 8 speech clips with and without 8 non-speech
    clips (Whisper's <|nospeech|> target): the held-out non-speech clips (other seeds) must get a clearly higher
    P(no speech) from the first. Fails if the target is not what the loss sees after the start of transcript."""
    from transformers import WhisperProcessor

    from svwhisper.featurize import nonspeech_table
    from svwhisper.params import NonspeechParams

    processor = WhisperProcessor.from_pretrained(tiny_repo / "models/base")
    speech = pd.concat(pd.read_parquet(p) for p in sorted((tiny_repo / "data/features/train").glob("part-*")))
    speech = speech[~speech["id"].str.startswith("nonspeech-")]
    clips = nonspeech_table(tiny_repo / "data/prepared/train.parquet", "train", 8, NonspeechParams(), processor, False)
    probs = {}
    for name, rows in (("with", pd.concat([speech, clips], ignore_index=True)), ("without", speech)):
        features = tmp_path / name / "features"
        (features / "train").mkdir(parents=True)
        rows.to_parquet(features / "train/part-00000.parquet", index=False)
        shutil.copytree(tiny_repo / "data/features/dev", features / "dev")
        run_dir = tmp_path / name
        done = run_train_stage(
            tiny_repo, run_dir, {**SHORT, "max_steps": 40, "eval_steps": 40, "save_steps": 40}, features
        )
        assert done.returncode == 0, done.stderr[-3000:]
        probs[name] = nonspeech_prob(run_dir / "final", tiny_repo / "data/features/test_nonspeech")
    # (after 6 steps it was already 0.009 against 0.0007)
    assert probs["with"] > 5 * probs["without"] and probs["with"] - probs["without"] > 0.02, probs


@pytest.mark.slow
def test_fp16_on_a_cpu_stops_before_any_work(tiny_repo, tmp_path):
    done = run_train_stage(tiny_repo, tmp_path, {"precision": "fp16"})
    assert done.returncode != 0
    assert "train.precision=fp16 needs a CUDA GPU" in done.stderr
    assert not (tmp_path / "ck").exists()


@pytest.mark.slow
def test_launcher_param_runs_the_stage_as_two_torchrun_processes(tiny_repo, tmp_path, monkeypatch):
    """Multi-GPU is the same stage under torchrun; two CPU processes (gloo) exercise that path here."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo, symlinks=True)
    override_params(
        repo / "params.yaml", {"train": {**SHORT, "batch_size": 4, "launcher": "torchrun --nproc_per_node 2"}}
    )
    out = run(["dvc", "repro", "train"], repo).stdout
    assert "torchrun --nproc_per_node 2 -m stages.train" in out
    assert out.count("train: best dev WER") == 1  # one process reports and saves
    state = json.loads(next((repo / "checkpoints").glob("*/checkpoint-10/trainer_state.json")).read_text())
    assert state["train_batch_size"] == 4 and state["global_step"] == 10
    assert (repo / "models/final/model.safetensors").is_file()
