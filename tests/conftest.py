"""Shared fixtures. `tiny_repo` runs the real `dvc repro` once per session on a memorisation slice."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from svwhisper.params import NONSPEECH_KINDS

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "sv-SE"
SPLITS = ("train", "dev", "test")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "svwhisper tests",
    "GIT_AUTHOR_EMAIL": "tests@svwhisper.invalid",
    "GIT_COMMITTER_NAME": "svwhisper tests",
    "GIT_COMMITTER_EMAIL": "tests@svwhisper.invalid",
}
# 8 training clips, also used as dev and test: trained long enough, the model must reproduce them (within a few
# characters: kernels differ by CPU), which proves labels, special tokens and generation config fit together. The
# small from-scratch model (no pretrained weights needed to prove that) keeps it to about a minute.
SCRATCH_MODEL = {"name": "scratch", "chunk_length_s": 4}
TINY_PARAMS = {
    "text": {"normalize_labels": True},
    "model": SCRATCH_MODEL,
    "prepare": {
        "max_clips_per_split": 8,
        "sources": {split: [{"kind": "commonvoice", "path": "data/sample/sv-SE", "tsv": "train"}] for split in SPLITS},
    },
    "train": {
        "learning_rate": 3e-3,
        "warmup_steps": 10,
        "max_steps": 200,
        "batch_size": 8,
        "eval_steps": 50,
        "save_steps": 50,
        "logging_steps": 10,
        "dropout": 0.0,
        "spec_augment": False,
        "eval_batch_size": 8,
        "ctc_weight": 0.3,
        "lr_scheduler": "cosine",
    },
    "evaluate": {"batch_size": 8},
    # memorisation proves labels and special tokens fit: no non-speech rows in its 8 clips; the held-out sets stay
    "featurize": {"nonspeech": {"share": 0.0, "kinds": list(NONSPEECH_KINDS), "seed": 0, "eval_clips": 6}},
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `cmd` with the venv's tools first on PATH; fail the test with its output on error."""
    env = {**os.environ, **GIT_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DVC_EXP_NAME", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def kill_train_once(repo: Path, env: dict, done_when: Path, pattern: str, timeout: float = 300) -> None:
    """Start `dvc repro -f -s train` (train alone: `-f` would rerun every stage before it too) in `repo` in its own
    process group and SIGKILL the whole group (as a preempted VM dies) as soon as a file matching `pattern` exists
    under `done_when`."""
    proc = subprocess.Popen(
        ["dvc", "repro", "-f", "-s", "train"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while not list(done_when.glob(pattern)):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no {done_when}/{pattern} before the run ended (exit {proc.returncode}) or timed out")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def copy_repo(dest: Path) -> Path:
    """The repo's tracked and untracked-not-ignored files, as a fresh clone would have them."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for name in listed:
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def prepared_sample(dest: Path, clips: int, name: str = "test.parquet"):
    """`clips` prepared clips of the shipped test split in `dest/name`: (path, table, a local processor for them)."""
    import pandas as pd
    from transformers import WhisperProcessor

    from svwhisper.modeling import local_feature_extractor, train_tokenizer
    from svwhisper.params import PrepareParams, Sources
    from svwhisper.prepare import prepare_split
    from svwhisper.sources import Source
    from svwhisper.text import normalize

    source = Source(kind="commonvoice", path=str(SAMPLE), tsv="test")
    params = PrepareParams(Sources((source,), (source,), (source,)), max_duration_s=4.0, max_clips_per_split=clips)
    path = dest / name
    prepare_split([source], params, path)
    table = pd.read_parquet(path)
    tokenizer = train_tokenizer(map(normalize, table["sentence"]), vocab_size=300)
    return path, table, WhisperProcessor(feature_extractor=local_feature_extractor(4, 80), tokenizer=tokenizer)


def sample_rows(n: int, start: int = 0) -> list[tuple[str, str, str]]:
    """(client_id, clip file name, sentence) of `n` rows of the shipped train split from row `start`."""
    lines = (SAMPLE / "train.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1 + start : 1 + start + n]]
    return [(r["client_id"], r["path"], r["sentence"]) for r in rows]


def override_params(path: Path, overrides: dict) -> None:
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for block, values in overrides.items():
        params[block].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True), encoding="utf-8")


PEERS_IN_TESTS = {"max_clips": 1}  # Whisper as released, the peers stage's, on one clip: ~3 s a clip at 30 s


def new_repo(dest: Path, overrides: dict) -> Path:
    """A committed git copy of the repo at `dest` with `overrides` in params.yaml and no results yet (the peers
    stage on one clip unless `overrides` says otherwise)."""
    repo = copy_repo(dest)
    # the committed results of the default run: a test run makes its own
    (repo / "dvc.lock").unlink(missing_ok=True)
    for results in ("metrics", "reports", "dvclive"):
        shutil.rmtree(repo / results, ignore_errors=True)
    override_params(repo / "params.yaml", {"peers": PEERS_IN_TESTS} | overrides)
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "test repo"], repo)
    return repo


STAGE_SECONDS: dict[str, float] = {}  # how long each stage of the tiny repo's first `dvc repro` took


def timed_repro(repo: Path, timeout: float = 900) -> dict[str, float]:
    """Run `dvc repro` in `repo` (failing the test on error); the seconds from each stage's "Running stage" line to
    the next stage's (the last: to the end), DVC's hashing and commit of its outs included."""
    env = {**os.environ, **GIT_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DVC_EXP_NAME", None)
    proc = subprocess.Popen(["dvc", "repro"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    starts, lines, deadline = [], [], time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Running stage '"):
            starts.append((line.split("'")[1], time.monotonic()))
        if time.monotonic() > deadline:
            proc.kill()
    if proc.wait() != 0:
        pytest.fail(f"dvc repro exited {proc.returncode}\n{''.join(lines)[-5000:]}")
    ends = [t for _, t in starts[1:]] + [time.monotonic()]
    return {stage: end - start for (stage, start), end in zip(starts, ends, strict=True)}


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> Path:
    """A git copy of the repo with TINY_PARAMS, after a real `dvc repro` (about a minute), committed."""
    repo = new_repo(tmp_path_factory.mktemp("tiny_repo"), TINY_PARAMS)
    STAGE_SECONDS.update(timed_repro(repo))
    run(["git", "add", "-A"], repo)  # commit the baseline's dvc.lock and metrics, as a user would
    run(["git", "commit", "-qm", "baseline run"], repo)
    return repo


# the default params.yaml (Whisper base, 4 s window, orthographic labels) on 8 clips for a few steps
PRETRAINED_TINY = {
    "prepare": {
        "max_clips_per_split": 8,
        "sources": {split: [{"kind": "commonvoice", "path": "data/sample/sv-SE", "tsv": "train"}] for split in SPLITS},
    },
    "train": {"max_steps": 6, "warmup_steps": 1, "batch_size": 8, "eval_steps": 6, "save_steps": 6},
    "evaluate": {"batch_size": 8},
    "peers": {"max_clips": 3},
    # six steps as before (speech only: the CER bounds of the streaming and app tests are set on that model)
    "featurize": {"nonspeech": {"share": 0.0, "kinds": list(NONSPEECH_KINDS), "seed": 0, "eval_clips": 6}},
}
MAX_SIX_STEP_CER = 0.5  # six steps on eight clips: most of each sentence, not all of it


@pytest.fixture(scope="session")
def pretrained_repo(tmp_path_factory) -> Path:
    """The shipped params (Whisper base) on eight clips for six steps, after a real `dvc repro` (about two minutes)."""
    repo = new_repo(tmp_path_factory.mktemp("pretrained"), PRETRAINED_TINY)
    shipped = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    from svwhisper import whisper_base

    assert shipped["model"]["name"] == whisper_base.NAME  # what a user's `make repro` runs
    run(["dvc", "repro"], repo, timeout=900)
    return repo


MAX_CLIP_CER = 0.1  # a memorised clip's transcript: its sentence, give or take a few characters


def clip_cer(sentence: str, text: str) -> float:
    """The character error rate of one transcript against its sentence, both normalised."""
    from svwhisper.metrics import error_rates

    return error_rates([sentence], [text])["cer"]


@pytest.fixture(scope="session")
def memorised(tiny_repo) -> list[tuple[Path, str]]:
    """(clip path, sentence) of the clips the tiny model was trained on: it transcribes each (CER <= MAX_CLIP_CER)."""
    import pandas as pd

    train = pd.read_parquet(tiny_repo / "data/prepared/train.parquet", columns=["id", "sentence"])
    return [
        (tiny_repo / "data/sample/sv-SE/clips" / f"{i}.mp3", s)
        for i, s in zip(train["id"], train["sentence"], strict=True)
    ]


def lay_into_hub_cache(folder: Path, cache: Path, repo_id: str, revision: str = "main") -> str:
    """Put `folder` into the Hugging Face cache `cache` (HF_HUB_CACHE) as huggingface_hub lays a download of
    `repo_id`: `models--owner--name/blobs/<etag>` (sha256 for LFS files, the git blob sha1 for the rest),
    `snapshots/<commit>/<path>` symlinks to them, `refs/<revision>` holding the commit. The commit."""
    import hashlib

    files = sorted(p for p in folder.rglob("*") if p.is_file())
    commit = hashlib.sha1(b"".join(p.relative_to(folder).as_posix().encode() + p.read_bytes() for p in files))
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / commit.hexdigest()
    for path in files:
        data = path.read_bytes()
        lfs = path.suffix in (".safetensors", ".bin") or len(data) > 10_000_000
        etag = hashlib.sha256(data).hexdigest() if lfs else hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        blob = storage / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / revision).write_text(commit.hexdigest())
    return commit.hexdigest()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_BROWSER = CHROMIUM is None and os.environ.get("SVWHISPER_SKIP_BROWSER") == "1"  # skip only when asked to


def transcribe_in_chromium(url: str, clip: Path, out_dir: Path) -> tuple[str, str, str]:
    """Open the page at `url` in headless Chromium, upload `clip`, press Transcribe, download the SRT:
    (the transcript box, the SRT's text, the page's heading)."""
    import re

    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM, (
        "chromium is missing: `make test` installs it as root (apt-get install chromium); "
        "SVWHISPER_SKIP_BROWSER=1 skips this test on purpose"
    )
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1100})
            page.goto(url)
            # the page is drawn by script after `load`: an upload before it has wired its handlers is never sent
            expect(page.get_by_role("button", name="Transcribe")).to_be_visible(timeout=60_000)
            uploaded_in = 60_000  # a loaded 2-core machine answers slowly, not never
            with page.expect_response(re.compile(r"/upload"), timeout=uploaded_in) as uploaded:  # posted, then shown
                page.locator("input[type=file]").first.set_input_files(str(clip))
            assert uploaded.value.ok
            expect(page.get_by_role("button", name="Clear")).to_be_visible()
            page.wait_for_timeout(500)  # the component's value is set just after the upload answers
            page.get_by_role("button", name="Transcribe").click()
            transcript = page.locator("#transcript textarea")
            expect(transcript).not_to_have_value("", timeout=60_000)
            shown = transcript.input_value()
            with page.expect_download() as download:
                page.locator("#srt a").first.click()
            srt = out_dir / "downloaded.srt"
            download.value.save_as(srt)
            heading = page.locator("h1").first.locator("xpath=..").inner_text()
            page.screenshot(path=str(out_dir / "app.png"), full_page=True)
        finally:
            browser.close()
    return shown, srt.read_text(encoding="utf-8"), heading
