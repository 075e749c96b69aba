"""The DVC remote (a local directory standing in for Google Drive): fresh clone to served model, checkpoints
that follow training to another machine, `dvc get`/`dvc import` of the model, the gdrive checks, no secrets."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import app
from conftest import GIT_ENV, MAX_CLIP_CER, REPO, clip_cer, kill_train_once, override_params, run
from svwhisper.checkpoints import COMPLETE
from svwhisper.metrics import error_rates
from svwhisper.remote import CheckpointStore, gdrive_problem, with_timeout
from svwhisper.text import normalize
from svwhisper.transcribe import load_backend

RESUME_TRAIN = {"max_steps": 60, "warmup_steps": 5, "eval_steps": 20, "save_steps": 20, "logging_steps": 10}
ENV = {**os.environ, **GIT_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def remote_cli(repo: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "svwhisper.remote", *args]
    return subprocess.run(cmd, cwd=repo, env=env or ENV, capture_output=True, text=True, timeout=300)


# --- Google Drive: the filesystem imports, and every missing piece is named without touching the network ---


def test_gdrive_filesystem_imports_and_is_what_dvc_picks_for_a_gdrive_url():
    from dvc.fs import get_cloud_fs
    from dvc_gdrive import GDriveFileSystem
    from pydrive2.fs import GDriveFileSystem as PyDrive2FileSystem

    config = {"core": {}, "remote": {"drive": {"url": "gdrive://1AbCdEfG/svwhisper"}}}
    cls, settings, path = get_cloud_fs(config, name="drive")
    assert cls is GDriveFileSystem and path == "1AbCdEfG/svwhisper"
    assert issubclass(PyDrive2FileSystem, __import__("fsspec").AbstractFileSystem)


def service_account_key(path: Path, **changes) -> Path:
    key = {"type": "service_account", "client_email": "dvc@project.iam.gserviceaccount.com", **changes}
    path.write_text(json.dumps(key), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "settings, env, expected",
    [
        ({"url": "gdrive://"}, {}, "no folder id"),
        ({"url": "gdrive://1AbC"}, {}, "gdrive_client_id <id>"),
        ({"url": "gdrive://1AbC", "gdrive_client_id": "id"}, {}, "gdrive_client_secret"),
        ({"url": "gdrive://1AbC", "gdrive_client_id": "id", "gdrive_client_secret": "s"}, {}, "not signed in"),
        ({"url": "gdrive://1AbC", "gdrive_client_id": "id", "gdrive_client_secret": "s"}, {"saved": 1}, ""),
        ({"url": "gdrive://1AbC", "gdrive_use_service_account": True}, {}, "gdrive_service_account_json_file_path"),
        ({"url": "gdrive://1AbC", "gdrive_use_service_account": True}, {"key": "missing"}, "no service account key"),
        ({"url": "gdrive://1AbC", "gdrive_use_service_account": True}, {"key": "not json"}, "is not JSON"),
        ({"url": "gdrive://1AbC", "gdrive_use_service_account": True}, {"key": "user"}, "not a service account key"),
        ({"url": "gdrive://1AbC", "gdrive_use_service_account": True}, {"key": "good"}, ""),
        ({"url": "gdrive://1AbC", "gdrive_use_service_account": True}, {"env": "good"}, ""),
    ],
)
def test_gdrive_check_names_what_is_missing(settings, env, expected, tmp_path):
    settings = {**settings, "gdrive_user_credentials_file": str(tmp_path / "signed-in.json")}
    if env.get("saved"):
        (tmp_path / "signed-in.json").write_text("{}")
    environ = {}
    key = tmp_path / "key.json"
    if env.get("key") == "not json":
        key.write_text("client_email: x")
    elif env.get("key") == "user":
        service_account_key(key, type="authorized_user")
    elif env.get("key") == "good" or env.get("env") == "good":
        service_account_key(key)
    if "key" in env:
        settings["gdrive_service_account_json_file_path"] = str(key)
    if env.get("env"):
        environ["GDRIVE_CREDENTIALS_DATA"] = key.read_text()
    problem = gdrive_problem("drive", settings, environ)
    assert (expected in problem) if expected else problem == "", problem


@pytest.mark.slow  # eight dvc/svwhisper CLI processes that load the gdrive plugin: about 35 s
def test_check_and_push_fail_fast_and_say_what_is_missing_without_credentials(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp", "config.local"))
    shutil.copy(REPO / "params.yaml", repo)
    # no saved sign-in anywhere; the code from this checkout, the config and params from `repo`
    env = {**ENV, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    env.pop("GDRIVE_CREDENTIALS_DATA", None)
    assert "no DVC remote configured" in remote_cli(repo, "check", env=env).stderr
    run(["git", "init", "-q"], repo)
    run(["dvc", "remote", "add", "-d", "drive", "gdrive://1AbCdEfG/svwhisper"], repo)
    for action in ("check", "push"):
        start = time.monotonic()
        done = remote_cli(repo, action, env=env)
        assert done.returncode == 1 and time.monotonic() - start < 60
        assert "no OAuth client of its own" in done.stderr and "gdrive_client_id" in done.stderr, done.stderr
    run(["dvc", "remote", "modify", "--local", "drive", "gdrive_client_id", "1234.apps.googleusercontent.com"], repo)
    run(["dvc", "remote", "modify", "--local", "drive", "gdrive_client_secret", "not-a-secret"], repo)
    done = remote_cli(repo, "check", env=env)
    assert done.returncode == 1 and "not signed in" in done.stderr and "never opens a browser" in done.stderr
    assert "gdrive_client_secret" not in (repo / ".dvc/config").read_text()  # --local: not in the tracked config


def test_a_remote_that_does_not_answer_is_reported_after_the_timeout():
    start = time.monotonic()
    assert with_timeout(lambda: time.sleep(30) or "", 0.5, "no answer") == "no answer"
    assert time.monotonic() - start < 5
    assert "ValueError: bad url" in with_timeout(lambda: (_ for _ in ()).throw(ValueError("bad url")), 5, "late")


# --- checkpoints on any remote ---


def test_checkpoint_store_uploads_marker_last_and_takes_only_complete_ones(tmp_path):
    from dvc_objects.fs.local import LocalFileSystem

    local = tmp_path / "run"
    for step in (10, 20):
        (local / f"checkpoint-{step}/dvclive").mkdir(parents=True)
        (local / f"checkpoint-{step}/model.safetensors").write_bytes(b"w" * step)
        (local / f"checkpoint-{step}/dvclive/metrics.json").write_text(f'{{"step": {step}}}')
        (local / f"checkpoint-{step}" / COMPLETE).write_text("done")
    store = CheckpointStore(LocalFileSystem(), str(tmp_path / "remote"), "abc")
    store.upload(local / "checkpoint-10")
    store.upload(local / "checkpoint-20")
    (tmp_path / "remote/checkpoints/abc/checkpoint-20" / COMPLETE).unlink()  # as if cut off before the marker
    assert store.names() == {"checkpoint-10": True, "checkpoint-20": False}
    fetched = store.download("checkpoint-10", tmp_path / "elsewhere")
    assert (fetched / "dvclive/metrics.json").read_text() == '{"step": 10}' and (fetched / COMPLETE).is_file()
    assert (fetched / "model.safetensors").read_bytes() == b"w" * 10
    store.remove("checkpoint-10")
    assert store.names() == {"checkpoint-20": False}


# --- fresh clone to served model; training that moves to another machine ---


@pytest.fixture(scope="module")
def pushed(tiny_repo, tmp_path_factory) -> tuple[Path, Path]:
    """(clone A: the tiny repo's results pushed to a local-directory remote, that remote)."""
    root = tmp_path_factory.mktemp("remote")
    repo_a, store = root / "a", root / "store"
    shutil.copytree(tiny_repo, repo_a, symlinks=True)
    shutil.rmtree(repo_a / "checkpoints", ignore_errors=True)
    run(["dvc", "remote", "add", "-d", "store", str(store)], repo_a)
    run(["git", "commit", "-qam", "a local directory remote"], repo_a)
    pushed = remote_cli(repo_a, "push")
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert (store / "files/md5").is_dir()
    return repo_a, store


@pytest.mark.slow
def test_fresh_clone_pulls_and_serves_the_model_without_training(pushed, memorised, tmp_path):
    repo_a, _ = pushed
    repo_b = tmp_path / "b"
    run(["git", "clone", "-q", str(repo_a), str(repo_b)], tmp_path)
    assert not (repo_b / "models/final").exists()
    pulled = remote_cli(repo_b, "pull")
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    assert "no checkpoints of run" in pulled.stdout
    assert "up to date" in run(["dvc", "status"], repo_b).stdout
    repro = run(["dvc", "repro"], repo_b).stdout
    assert "Running stage" not in repro and "up to date" in repro, repro
    clip, sentence = memorised[0]
    for backend, model in (("transformers", "models/final"), ("ctranslate2", "models/ct2")):
        params = app.AppParams(backend=backend)
        text = app.transcribe(str(clip), model=str(repo_b / model), params=params).text
        # a bound, not the exact string: int8 kernels differ by CPU, and a tiny model may swap a word on some
        assert error_rates([normalize(sentence)], [text])["cer"] <= 0.2, (backend, text, sentence)


@pytest.mark.slow
def test_dvc_get_and_import_fetch_just_the_model_into_another_project(pushed, memorised, tmp_path):
    repo_a, _ = pushed
    clip, sentence = memorised[0]
    run(["dvc", "get", str(repo_a), "models/final", "-o", str(tmp_path / "got")], tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    run(["git", "init", "-q"], other)
    run(["dvc", "init", "-q"], other)
    run(["dvc", "import", str(repo_a), "models/final", "-o", "asr-model"], other)
    source = yaml.safe_load((other / "asr-model.dvc").read_text())["deps"][0]
    assert source["path"] == "models/final" and source["repo"]["url"] == str(repo_a) and source["repo"]["rev_lock"]
    for model in (tmp_path / "got", other / "asr-model"):
        backend = load_backend("transformers", model)
        assert clip_cer(sentence, backend([app.load_audio(clip)])[0]) <= MAX_CLIP_CER


@pytest.mark.slow
def test_training_killed_on_one_machine_resumes_on_another_from_the_pushed_checkpoint(pushed, tmp_path):
    repo_a, store = pushed
    machine_1, machine_2 = tmp_path / "machine-1", tmp_path / "machine-2"
    run(["git", "clone", "-q", str(repo_a), str(machine_1)], tmp_path)
    run(["dvc", "pull"], machine_1)
    override_params(machine_1 / "params.yaml", {"train": RESUME_TRAIN})
    run(["git", "commit", "-qam", "a longer run"], machine_1)
    kill_train_once(machine_1, ENV, store, f"checkpoints/*/checkpoint-*/{COMPLETE}")  # once one is on the remote

    run(["git", "clone", "-q", str(machine_1), str(machine_2)], tmp_path)
    pulled = remote_cli(machine_2, "pull")
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    step = int(re.search(r"resumes from \S+ \(step (\d+)\)", pulled.stdout).group(1))
    assert step in (20, 40), pulled.stdout
    resumed = run(["dvc", "repro", "train"], machine_2).stdout
    assert "train: resuming from checkpoints/" in resumed and f"(step {step})" in resumed, resumed
    state = json.loads(next((machine_2 / "checkpoints").glob("*/checkpoint-60/trainer_state.json")).read_text())
    assert state["global_step"] == 60
    assert "pushed checkpoint-60" in resumed  # and machine 2 mirrors on in turn
    # the best checkpoint is there for load_best_model_at_end, as in an uninterrupted run
    best = Path(state["best_model_checkpoint"]).name
    assert (machine_2 / "checkpoints" / Path(state["best_model_checkpoint"]).parent.name / best).is_dir(), best
    assert "best dev WER" in resumed and "is not on disk" not in resumed, resumed


# --- no secrets in git ---

SECRET_NAMES = re.compile(
    r"(^|/)(\.env|config\.local|.*\.(p12|pem|key)|.*(credentials|client_secret|service.account).*\.json)$"
)
SECRET_TEXT = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\"(private_key|client_secret|refresh_token)\"\s*:\s*\"[^\"]"
)


def credential_looking(repo: Path) -> list[str]:
    """Tracked files of `repo` whose name or content looks like a credential."""
    tracked = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True).stdout.split()
    found = []
    for name in tracked:
        path = repo / name
        if SECRET_NAMES.search(name):
            found.append(name)
        elif path.is_file() and path.stat().st_size < 1_000_000 and SECRET_TEXT.search(path.read_text(errors="ignore")):
            found.append(name)
    return found


def test_no_credential_looking_file_is_tracked_and_the_usual_ones_are_ignored(tmp_path):
    assert credential_looking(REPO) == []
    probe = tmp_path / "probe"
    probe.mkdir()
    run(["git", "init", "-q"], probe)
    shutil.copy(REPO / ".gitignore", probe)
    (probe / ".dvc").mkdir()
    shutil.copy(REPO / ".dvc/.gitignore", probe / ".dvc")
    risky = [".dvc/config.local", ".env", "gdrive-user-credentials.json", "my-service-account.json", "sa.p12"]
    for name in risky:
        (probe / name).write_text("x")
    ignored = subprocess.run(["git", "check-ignore", *risky], cwd=probe, capture_output=True, text=True).stdout
    assert ignored.split() == risky
    # and the scan catches one that got in anyway (force-added past .gitignore), by name and by content
    pem = "-----BEGIN " + "PRIVATE KEY-----"  # split, so that this file does not itself look like a key
    (probe / "notes.txt").write_text(json.dumps(dict(type="service_account", private_key=pem)))
    run(["git", "add", "-f", ".env", "notes.txt"], probe)
    assert credential_looking(probe) == [".env", "notes.txt"]
