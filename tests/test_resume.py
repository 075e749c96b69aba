"""Preemption: `dvc repro` after a SIGKILL of the train stage resumes from its newest complete checkpoint."""

import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import GIT_ENV, kill_train_once, override_params, run
from svwhisper.checkpoints import COMPLETE, MarkComplete, fingerprint, resumable, start_or_resume
from svwhisper.params import TrainParams

# 30 steps, a checkpoint every 10: the kill lands after the first one
RESUME_TRAIN = {"max_steps": 30, "warmup_steps": 5, "eval_steps": 10, "save_steps": 10, "logging_steps": 10}
LOSS_TOLERANCE = 1e-4  # final dev loss, resumed vs uninterrupted (one CPU thread: deterministic kernels)


def test_fingerprint_changes_with_params_and_with_input_bytes(tmp_path):
    (tmp_path / "features").mkdir()
    (tmp_path / "features/part-0.parquet").write_bytes(b"abc")
    base = fingerprint(TrainParams(), [tmp_path / "features"])
    assert base == fingerprint(TrainParams(), [tmp_path / "features"])
    assert base != fingerprint(TrainParams(learning_rate=2e-5), [tmp_path / "features"])
    (tmp_path / "features/part-0.parquet").write_bytes(b"abd")
    assert base != fingerprint(TrainParams(), [tmp_path / "features"])


def test_half_written_checkpoints_are_skipped_and_deleted_and_logs_restored(tmp_path, capsys):
    run_dir = tmp_path / "run"
    for step, complete in ((10, True), (20, True), (30, False)):
        (run_dir / f"checkpoint-{step}").mkdir(parents=True)
        if complete:
            (run_dir / f"checkpoint-{step}" / COMPLETE).write_text("done")
    (run_dir / "checkpoint-20/dvclive").mkdir()
    (run_dir / "checkpoint-20/dvclive/metrics.json").write_text('{"step": 20}')
    assert resumable(run_dir) == (run_dir / "checkpoint-20", [run_dir / "checkpoint-30"])
    log = tmp_path / "dvclive"
    assert start_or_resume(run_dir, log) == run_dir / "checkpoint-20"
    assert not (run_dir / "checkpoint-30").exists()
    assert (log / "metrics.json").read_text() == '{"step": 20}'
    assert "resuming from" in capsys.readouterr().out
    assert start_or_resume(tmp_path / "empty", log) is None


def test_mark_complete_copies_the_logs_then_writes_the_marker(tmp_path):
    from transformers import TrainerState, TrainingArguments

    (tmp_path / "dvclive").mkdir()
    (tmp_path / "dvclive/metrics.json").write_text("{}")
    (tmp_path / "run/checkpoint-5").mkdir(parents=True)
    state = TrainerState(global_step=5)
    MarkComplete(tmp_path / "dvclive").on_save(TrainingArguments(output_dir=str(tmp_path / "run")), state, None)
    assert (tmp_path / "run/checkpoint-5/dvclive/metrics.json").is_file()
    assert (tmp_path / "run/checkpoint-5" / COMPLETE).is_file()


def final_metrics(repo: Path) -> dict:
    return json.loads((repo / "dvclive/metrics.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_repro_after_sigkill_resumes_and_ends_where_an_uninterrupted_run_ends(tiny_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # deterministic CPU kernels, so both runs can be compared
    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo, symlinks=True)
    shutil.rmtree(repo / "checkpoints", ignore_errors=True)
    override_params(repo / "params.yaml", {"train": RESUME_TRAIN})
    run(["git", "commit", "-qam", "resume test params"], repo)

    env = {**os.environ, **GIT_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    kill_train_once(repo, env, repo / "checkpoints", f"*/checkpoint-*/{COMPLETE}")  # after the first checkpoint
    assert not (repo / "models/final").exists()  # DVC removed the out; the kill left no final model

    resumed = run(["dvc", "repro", "train"], repo).stdout
    assert "train: resuming from checkpoints/" in resumed and "(step 10)" in resumed, resumed
    state = json.loads(next((repo / "checkpoints").glob("*/checkpoint-30/trainer_state.json")).read_text())
    assert state["global_step"] == 30
    # the dev-WER curve is whole: steps logged before the kill came back with the checkpoint
    assert pd.read_csv(repo / "dvclive/plots/metrics/eval/wer.tsv", sep="\t")["step"].tolist() == [10, 20, 30]
    again = final_metrics(repo)

    shutil.rmtree(repo / "checkpoints")  # else this run would resume from the finished one
    fresh = run(["dvc", "repro", "--force", "--no-run-cache", "--single-item", "train"], repo).stdout
    assert "starting at step 0" in fresh, fresh
    uninterrupted = final_metrics(repo)
    assert again["step"] == uninterrupted["step"] == 30
    assert again["eval"]["loss"] == pytest.approx(uninterrupted["eval"]["loss"], abs=LOSS_TOLERANCE)
    assert again["eval"]["wer"] == pytest.approx(uninterrupted["eval"]["wer"], abs=1e-9)
