"""Checkpoints that survive preemption: one directory per training fingerprint, a marker per checkpoint.

DVC 3 has no checkpoint outs, and it deletes a stage's outs before running it again, so the
Trainer's checkpoints live in a git- and DVC-ignored directory, `<checkpoints>/<fingerprint>/`.
The fingerprint hashes the train params and the contents of the stage's inputs: a rerun resumes
only from checkpoints of the very same run, never from one with other params or data.
A checkpoint counts once `COMPLETE` is written into it, after the Trainer has saved everything
(model, optimizer, scheduler, RNG state, trainer state) and the dvclive logs so far.
"""

import hashlib
import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

from transformers import TrainerCallback

COMPLETE = "COMPLETE"  # written last: a checkpoint without it was cut off mid-write
LOGS = "dvclive"  # the dvclive dir as it was at the checkpoint, restored on resume
_STEP = re.compile(r"^checkpoint-(\d+)$")


def fingerprint(params, inputs: list[Path]) -> str:
    """16 hex digits over the frozen params dataclass `params` and every file under `inputs` (name and bytes)."""
    digest = hashlib.sha256(json.dumps(asdict(params), sort_keys=True).encode())
    for root in map(Path, inputs):
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            digest.update((path.relative_to(root).as_posix() if root.is_dir() else path.name).encode())
            with path.open("rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


def step_of(checkpoint: Path) -> int:
    match = _STEP.match(checkpoint.name)
    return int(match.group(1)) if match else -1


def checkpoints_in(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """(complete, incomplete) checkpoint dirs in `run_dir`, each oldest first; empty when it does not exist."""
    if not run_dir.is_dir():
        return [], []
    found = sorted((p for p in run_dir.iterdir() if p.is_dir() and step_of(p) >= 0), key=step_of)
    return [p for p in found if (p / COMPLETE).is_file()], [p for p in found if not (p / COMPLETE).is_file()]


def resumable(run_dir: Path) -> tuple[Path | None, list[Path]]:
    """(newest complete checkpoint or None, incomplete ones) in `run_dir`."""
    complete, incomplete = checkpoints_in(run_dir)
    return (complete[-1] if complete else None), incomplete


def start_or_resume(run_dir: Path, log_dir: Path) -> Path | None:
    """Where training continues: the newest complete checkpoint in `run_dir`, or None to start at step 0.

    Incomplete checkpoints are deleted (the Trainer would otherwise count them when it rotates
    checkpoints), and the dvclive logs saved with the chosen checkpoint are put back in `log_dir`,
    so the training curves stay whole across the interruption. Says what it did in one line.
    """
    checkpoint, incomplete = resumable(run_dir)
    for partial in incomplete:
        print(f"train: deleting {partial}: cut off before it was complete")
        shutil.rmtree(partial)
    if checkpoint is None:
        print(f"train: no complete checkpoint in {run_dir}: starting at step 0")
        return None
    if (checkpoint / LOGS).is_dir():
        shutil.rmtree(log_dir, ignore_errors=True)
        shutil.copytree(checkpoint / LOGS, log_dir)
    print(f"train: resuming from {checkpoint} (step {step_of(checkpoint)})")
    return checkpoint


class MarkComplete(TrainerCallback):
    """After each Trainer save: copy the dvclive logs into the checkpoint, then write its COMPLETE marker."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.log_dir.is_dir():
            shutil.copytree(self.log_dir, checkpoint / LOGS, dirs_exist_ok=True)
        (checkpoint / COMPLETE).write_text(f"step {state.global_step}\n", encoding="utf-8")
