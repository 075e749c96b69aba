"""Checkpoints that survive preemption: one directory per training fingerprint, a marker per checkpoint.

DVC 3 has no checkpoint outs, and it deletes a stage's outs before running it again, so the
Trainer's checkpoints live in a git- and DVC-ignored directory, `<checkpoints>/<fingerprint>/`.
The fingerprint hashes the train params, the contents of the stage's inputs, the source of every
module the train stage imports from this repo (but the OPERATIONAL ones), and the versions of torch,
transformers, accelerate and peft: a rerun resumes only from checkpoints of the very same run, never from one
with other params, data, code or libraries.
A checkpoint counts once `COMPLETE` is written into it (atomically), after the Trainer has saved
everything (model, optimizer, scheduler, the RNG state of every rank, trainer state) and the
dvclive logs so far, and every one of those files is flushed to disk. The marker lists each file
with its size: a checkpoint whose files do not match it (truncated by a power cut, a disk that
lied about a flush, a copy cut short) is not complete, and is deleted like a cut-off one.
"""

import ast
import hashlib
import importlib
import json
import re
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from transformers import TrainerCallback

from svwhisper.atomic import fsync_tree, write_text_atomic

COMPLETE = "COMPLETE"  # written last: a checkpoint without it was cut off mid-write
LOGS = "dvclive"  # the dvclive dir as it was at the checkpoint, restored on resume
_STEP = re.compile(r"^checkpoint-(\d+)$")


LIBRARIES = ("torch", "transformers", "accelerate", "peft")  # what a checkpoint's files and optimizer state depend on
REPO_ROOT = Path(__file__).resolve().parents[1]
# Modules that decide where bytes go and when, never what they are: the checkpoint mirror (what it uploads, its
# messages, its timeouts) and atomic writes. A change to one cannot change a stage's output, so a stage's code (its
# dvc.yaml deps, and the train run's fingerprint) leaves them out, and what only they import.
OPERATIONAL = ("svwhisper/remote.py", "svwhisper/atomic.py")


def stage_code(entry: Path, root: Path = REPO_ROOT) -> list[Path]:
    """`entry` and every module of this repo it imports, directly or not (imports inside functions too), sorted;
    OPERATIONAL modules are not followed.

    Read from the source (ast), not from what one process happened to import, so that the train
    stage and `python -m svwhisper.remote pull` name the same run. dvc.yaml lists exactly these as the
    stage's code deps (a test checks).
    """
    root = Path(root)
    todo, seen = [Path(entry)], set()
    while todo:
        path = todo.pop()
        if path in seen or path.relative_to(root).as_posix() in OPERATIONAL:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            files = (root / f"{name.replace('.', '/')}.py" for name in names)
            todo += [path for path in files if path.is_file()]
    return sorted(seen)


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = str(importlib.import_module(name).__version__)
        except ImportError:
            versions[name] = "not installed"
    return versions


def run_fingerprint(params, inputs: list[Path], root: Path = REPO_ROOT) -> str:
    """The train run's fingerprint: params, input bytes, the train stage's code under `root`, library versions."""
    code = {p.relative_to(root).as_posix(): p for p in stage_code(Path(root) / "stages" / "train.py", root)}
    return fingerprint(params, inputs, code, library_versions())


def fingerprint(params, inputs: list[Path], code: dict[str, Path] | None = None, versions: dict | None = None) -> str:
    """16 hex digits over the frozen params dataclass `params`, every file under `inputs` (name and bytes), the
    source files `code` ({name: path}) and the `versions` of libraries."""
    digest = hashlib.sha256(json.dumps(asdict(params), sort_keys=True).encode())
    digest.update(json.dumps(versions or {}, sort_keys=True).encode())
    for name, path in sorted((code or {}).items()):
        digest.update(name.encode())
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
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


def file_sizes(checkpoint: Path) -> dict[str, int]:
    """{path inside `checkpoint`: size in bytes} of its files, the marker aside."""
    files = (p for p in checkpoint.rglob("*") if p.is_file() and p.name != COMPLETE)
    return {p.relative_to(checkpoint).as_posix(): p.stat().st_size for p in sorted(files)}


def is_complete(checkpoint: Path) -> bool:
    """Whether `checkpoint` has its marker and every file the marker lists, at the size it lists."""
    try:
        text = (checkpoint / COMPLETE).read_text(encoding="utf-8")
    except OSError:
        return False
    if not text.startswith("{"):
        return True  # a marker of an earlier version: "step N", no file list
    try:
        listed = json.loads(text)["files"]
    except (ValueError, KeyError, TypeError):
        return False
    for name, size in listed.items():
        path = checkpoint / name
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def checkpoints_in(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """(complete, incomplete) checkpoint dirs in `run_dir`, each oldest first; empty when it does not exist."""
    if not run_dir.is_dir():
        return [], []
    found = sorted((p for p in run_dir.iterdir() if p.is_dir() and step_of(p) >= 0), key=step_of)
    complete = [p for p in found if is_complete(p)]
    return complete, [p for p in found if p not in complete]


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
        print(f"train: deleting {partial}: cut off before it was complete, or its files do not match its marker")
        shutil.rmtree(partial)
    if checkpoint is None:
        print(f"train: no complete checkpoint in {run_dir}: starting at step 0")
        return None
    if (checkpoint / LOGS).is_dir():
        shutil.rmtree(log_dir, ignore_errors=True)
        shutil.copytree(checkpoint / LOGS, log_dir)
    print(f"train: resuming from {checkpoint} (step {step_of(checkpoint)})")
    return checkpoint


def ranks_saved(checkpoint: Path, world_size: int) -> bool:
    """Whether every rank's RNG state is in `checkpoint` (the Trainer writes one per rank when there are several)."""
    return world_size <= 1 or all((checkpoint / f"rng_state_{rank}.pth").is_file() for rank in range(world_size))


class MarkComplete(TrainerCallback):
    """After each Trainer save: copy the dvclive logs into the checkpoint, flush all its files to disk, then write
    its COMPLETE marker with every file's size.

    The marker is written atomically (temp file, fsync, rename, fsync of the dir), and only once the
    files of every rank are there (waiting up to `wait_s`); otherwise the checkpoint stays unmarked.
    """

    def __init__(self, log_dir: Path, wait_s: float = 300.0):
        self.log_dir, self.wait_s = Path(log_dir), wait_s

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        world_size = int(getattr(args, "world_size", 1))
        deadline = time.monotonic() + self.wait_s
        while not ranks_saved(checkpoint, world_size):
            if time.monotonic() > deadline:
                print(f"train: {checkpoint} not marked complete: not every rank's files arrived in {self.wait_s:g} s")
                return
            time.sleep(0.1)
        if self.log_dir.is_dir():
            shutil.copytree(self.log_dir, checkpoint / LOGS, dirs_exist_ok=True)
        fsync_tree(checkpoint)  # the Trainer's own writes are not flushed: a power cut could truncate them
        marker = {"step": state.global_step, "files": file_sizes(checkpoint)}
        write_text_atomic(checkpoint / COMPLETE, json.dumps(marker, indent=1) + "\n")
