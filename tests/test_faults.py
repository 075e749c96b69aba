"""Faults that must not lose work: the best checkpoint across a resume from the remote, partial and old remote
checkpoints, a remote that stalls, outputs with the right mode and no stale temporaries, checkpoints whose files
do not match their marker; and a kill -9 of every stage that writes, after which `dvc repro` ends where an
uninterrupted run ends."""

import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from svwhisper.atomic import atomic_dir, atomic_path, write_text_atomic
from svwhisper.checkpoints import COMPLETE, MarkComplete, checkpoints_in, is_complete, start_or_resume
from svwhisper.params import RemoteParams
from svwhisper.remote import CheckpointMirror, CheckpointStore, fetch_run_from_remote, resume_from_remote

WORLD = type("State", (), {"is_world_process_zero": True})()


def checkpoint(run_dir: Path, step: int, best: int | None = None, complete: bool = True) -> Path:
    """A checkpoint dir as the Trainer and MarkComplete leave it; its trainer state names checkpoint-`best`."""
    path = run_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"w" * (100 + step))
    trainer_state = {
        "global_step": step,
        "best_model_checkpoint": f"/elsewhere/run/checkpoint-{best}" if best else None,
    }
    (path / "trainer_state.json").write_text(json.dumps(trainer_state))
    if complete:
        args = type("Args", (), {"output_dir": str(run_dir), "world_size": 1})()
        state = type("State", (), {"global_step": step, "is_world_process_zero": True})()
        MarkComplete(run_dir / "no-logs").on_save(args, state, None)
    return path


def local_store(tmp_path: Path) -> CheckpointStore:
    from dvc_objects.fs.local import LocalFileSystem

    return CheckpointStore(LocalFileSystem(), str(tmp_path / "remote"), "run1")


def sync(store: CheckpointStore, run_dir: Path, tmp_path: Path) -> None:
    mirror = CheckpointMirror(tmp_path, RemoteParams(), run_dir, "run1", opener=lambda: store)
    mirror.on_save(None, WORLD, None)
    assert mirror.close(timeout=30)
    assert mirror.failures == 0


# --- resume from the remote keeps the best checkpoint ---


def test_resume_from_the_remote_fetches_the_best_checkpoint_too(tmp_path):
    store = local_store(tmp_path)
    elsewhere = tmp_path / "machine-1"
    for step, best in ((20, 20), (40, 20), (60, 20)):  # the best by dev WER stayed at step 20
        store.upload(checkpoint(elsewhere, step, best))
    run_dir = tmp_path / "machine-2"
    fetched = resume_from_remote(store, run_dir)
    assert fetched == run_dir / "checkpoint-60"
    assert sorted(p.name for p in checkpoints_in(run_dir)[0]) == ["checkpoint-20", "checkpoint-60"]
    assert not (run_dir / "checkpoint-40").exists()  # neither the newest nor the best: not needed


def test_a_local_best_checkpoint_with_a_truncated_file_is_fetched_again(tmp_path):
    store = local_store(tmp_path)
    elsewhere = tmp_path / "machine-1"
    for step, best in ((20, 20), (40, 20)):
        store.upload(checkpoint(elsewhere, step, best))
    run_dir = tmp_path / "machine-2"
    shutil.copytree(elsewhere / "checkpoint-20", run_dir / "checkpoint-20")  # its marker, and a file cut short
    with (run_dir / "checkpoint-20" / "model.safetensors").open("r+b") as weights:
        weights.truncate(10)
    assert (run_dir / "checkpoint-20" / COMPLETE).is_file() and not is_complete(run_dir / "checkpoint-20")
    assert resume_from_remote(store, run_dir) == run_dir / "checkpoint-40"
    assert is_complete(run_dir / "checkpoint-20")  # the best one is whole again: the end of training loads it


def test_the_mirror_keeps_the_best_and_reclaims_partial_and_older_remote_checkpoints(tmp_path):
    store = local_store(tmp_path)
    earlier = tmp_path / "preempted-process"
    for step in (10, 20, 30):
        store.upload(checkpoint(earlier, step, best=10))
    partial = checkpoint(earlier, 40, best=10, complete=False)  # rotated away mid-upload: no marker there
    store.fs.makedirs(store.fs.join(store.run, "checkpoint-40"), exist_ok=True)
    store.fs.put_file(
        str(partial / "model.safetensors"), store.fs.join(store.run, "checkpoint-40", "model.safetensors")
    )
    store.upload(checkpoint(earlier, 90, best=10))  # ahead of this machine: another one may be training on
    run_dir = tmp_path / "run"
    checkpoint(run_dir, 50, best=10)
    sync(store, run_dir, tmp_path)
    assert store.names() == {"checkpoint-10": True, "checkpoint-50": True, "checkpoint-90": True}


def test_an_upload_cut_off_by_the_trainer_rotating_the_checkpoint_leaves_nothing_on_the_remote(tmp_path):
    store = local_store(tmp_path)
    run_dir = tmp_path / "run"
    doomed = checkpoint(run_dir, 40)
    real_put = store.fs.put_file

    def put_then_rotate(local, remote, **kwargs):
        real_put(local, remote, **kwargs)
        for path in sorted(doomed.iterdir()):  # the Trainer deletes the checkpoint mid-upload
            path.unlink()

    store.fs.put_file = put_then_rotate
    with pytest.raises(FileNotFoundError):
        store.upload(doomed)
    assert store.names() == {}


# --- a remote that stalls before step 0 ---


class StalledFS:
    """A remote filesystem whose listing never answers, until released."""

    protocol = "stalled"

    def __init__(self):
        self.release = threading.Event()

    def join(self, *parts):
        return "/".join(parts)

    def ls(self, path, detail=False):
        self.release.wait()
        return [f"{path}/checkpoint-80"]

    def exists(self, path):
        return True

    def find(self, path):
        return [f"{path}/model.safetensors", f"{path}/{COMPLETE}"]

    def get_file(self, remote, local):
        Path(local).write_text("late")


def test_a_remote_that_stalls_while_listing_is_given_up_after_the_fetch_timeout(tmp_path, capsys):
    fs = StalledFS()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    params = RemoteParams(fetch_timeout_s=1.0)
    started = time.monotonic()
    fetched = fetch_run_from_remote(
        tmp_path, params, run_dir, "run1", opener=lambda: CheckpointStore(fs, "root", "run1")
    )
    assert fetched is None and time.monotonic() - started < 5
    assert "no answer within 1 s" in capsys.readouterr().out
    fs.release.set()  # the connection comes back while training goes on without it
    time.sleep(0.5)
    assert list(run_dir.iterdir()) == []  # the abandoned fetch changes nothing


def test_remote_pull_gives_up_on_a_remote_that_stalls_after_connecting(tmp_path):
    from svwhisper.remote import RemoteError, pull_within

    fs = StalledFS()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    started = time.monotonic()
    with pytest.raises(RemoteError, match="no checkpoints pulled within 1 s"):
        pull_within(CheckpointStore(fs, "root", "run1"), run_dir, timeout=1.0)
    assert time.monotonic() - started < 5
    fs.release.set()  # the listing answers after all: the abandoned pull writes nothing
    time.sleep(0.5)
    assert list(run_dir.iterdir()) == []


# --- atomic outputs: plain modes, no stale temporaries ---


def test_atomic_outputs_get_the_mode_of_a_plain_write(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "data" / "train.parquet", "x")
        with atomic_dir(tmp_path / "models" / "base") as tmp:
            (tmp / "config.json").write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "data/train.parquet").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "models/base").stat().st_mode & 0o777 == 0o755


def test_temporaries_of_a_killed_writer_are_swept_and_a_live_writers_are_not(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale_file = tmp_path / f".train.parquet.{dead.pid}.abc123.tmp"
    stale_dir = tmp_path / f".base.{dead.pid}.def456.old"
    live = tmp_path / f".train.parquet.{os.getpid()}.live99.tmp"
    stale_file.write_text("half")
    (stale_dir / "replaced").mkdir(parents=True)
    live.write_text("being written")
    write_text_atomic(tmp_path / "train.parquet", "whole")
    with atomic_dir(tmp_path / "base") as tmp:
        (tmp / "a").write_text("a")
    assert not stale_file.exists() and not stale_dir.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["train.parquet", "base", live.name])


def test_a_kill_during_an_atomic_write_leaves_the_old_output_and_the_next_write_cleans_up(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    code = (
        "import os, sys\nfrom pathlib import Path\nfrom svwhisper.atomic import atomic_path\n"
        f"with atomic_path(Path({str(target)!r})) as tmp:\n    tmp.write_text('half')\n    os.kill(os.getpid(), 9)\n"
    )
    assert subprocess.run(["python", "-c", code], cwd=Path(__file__).parents[1]).returncode == -signal.SIGKILL
    assert target.read_text() == "old" and len(list(tmp_path.iterdir())) == 2  # the old output and a stale temp
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# --- checkpoints whose files do not match their marker ---


def test_a_checkpoint_with_a_truncated_file_is_not_complete_and_is_deleted_on_resume(tmp_path, capsys):
    run_dir = tmp_path / "run"
    checkpoint(run_dir, 20)
    damaged = checkpoint(run_dir, 40)
    with open(damaged / "model.safetensors", "r+b") as handle:  # a power cut after the marker reached the disk
        handle.truncate(10)
    assert [p.name for p in checkpoints_in(run_dir)[0]] == ["checkpoint-20"]
    assert start_or_resume(run_dir, tmp_path / "dvclive") == run_dir / "checkpoint-20"
    assert not damaged.exists() and "do not match its marker" in capsys.readouterr().out


def test_every_file_of_a_checkpoint_is_flushed_before_its_marker(tmp_path, monkeypatch):
    from svwhisper import atomic

    flushed: list[str] = []
    real = os.fsync

    def record(fd):
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(atomic.os, "fsync", record)
    path = checkpoint(tmp_path / "run", 10)
    marker_at = next(i for i, name in enumerate(flushed) if name.endswith(".tmp") and COMPLETE in name)
    before = set(flushed[:marker_at])
    assert {str(path / "model.safetensors"), str(path / "trainer_state.json")} <= before


# --- kill -9 of every stage that writes ---

# train last: its resumed weights match the uninterrupted run's within float noise, not bit for bit, so the stages
# after it would then differ from the baseline too; each stage before it must give the very same bytes
STAGES = ("prepare", "base_model", "featurize", "evaluate", "export", "train")
STALE = (".tmp", ".old", ".fetching")


def lock_outs(repo: Path, stages=None) -> dict[str, str]:
    """{out path: md5} of the outs in dvc.lock of `stages` (all by default)."""
    import yaml

    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {
        o["path"]: o["md5"] for name, stage in lock.items() if stages is None or name in stages for o in stage["outs"]
    }


def repro(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["dvc", "repro", *args], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"dvc repro {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


def kill_stage(dvc_pid: int) -> bool:
    """SIGKILL the stage's command that DVC started and everything it started (featurize's workers, ...), all at
    once, as the OOM killer or a crash ends a process; whether anything was still running."""
    import psutil

    try:
        tree = psutil.Process(dvc_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for child in tree:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    return bool(tree)


@pytest.mark.slow
def test_a_kill_at_a_random_moment_of_any_stage_then_repro_ends_as_an_uninterrupted_run(tiny_repo, tmp_path):
    """Each stage is run alone (`dvc repro -s -f`) and its command is SIGKILLed with all its processes at a seeded
    random moment of its measured duration; `dvc repro` then rebuilds. Every out must have the md5 of the uninterrupted
    run's (train: the same final step and dev WER, and the same outs before it), and no temporary may be left."""
    import shutil

    from conftest import GIT_ENV, STAGE_SECONDS

    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo, symlinks=True)
    baseline, metrics = lock_outs(repo), json.loads((repo / "metrics/eval.json").read_text())
    path = f"{Path(os.sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, **GIT_ENV, "PATH": path, "OMP_NUM_THREADS": "1"}
    rng = random.Random(int(os.environ.get("SVWHISPER_FAULT_SEED", "20")))
    for stage in STAGES:
        if stage == "train":
            shutil.rmtree(repo / "checkpoints", ignore_errors=True)  # else it resumes from the finished run
        duration = STAGE_SECONDS[stage]  # as the tiny repo's own run took it (with 2 threads: this run is slower)
        delay = rng.uniform(0.3, 0.9) * duration  # past DVC's start-up, inside the stage's own work
        proc = subprocess.Popen(
            ["dvc", "repro", "-s", "-f", "--no-run-cache", stage], cwd=repo, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(delay)
        killed = kill_stage(proc.pid)
        proc.wait()
        when = f"{stage} killed at {delay:.1f} s of {duration:.1f} s (still running: {killed})"
        repro(repo, env)
        if stage == "train":
            assert lock_outs(repo, {"prepare", "base_model", "featurize"}) == lock_outs(
                tiny_repo, {"prepare", "base_model", "featurize"}
            )
            again = json.loads((repo / "metrics/eval.json").read_text())
            assert again["wer"] == pytest.approx(metrics["wer"], abs=0.02), when
        else:
            assert lock_outs(repo) == baseline, when
        if left := stale(repo):  # DVC restored the out from its run cache: the stage did not run to sweep them
            repro(repo, env, "-s", "-f", "--no-run-cache", stage)  # the next write of the same output does
            assert stale(repo) == [], f"{when}: {left}"


def stale(repo: Path) -> list[Path]:
    """Temporaries of atomic writes left anywhere in `repo` (DVC's and git's own dirs aside)."""
    return [p for p in repo.rglob("*") if p.name.endswith(STALE) and not {".dvc", ".git"} & set(p.parts)]
