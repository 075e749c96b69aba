"""From a trained model to a Space, offline: publish the tiny model (dry run), lay the folder into a Hugging Face
cache as a download would be, write the Space (dry run), then run the Space's own app.py from its folder, with
nothing importable but the packages its requirements.txt pins (and the Python standard library), HF_HUB_OFFLINE=1
and that cache: a memorised clip is transcribed through the page by gradio_client and in Chromium, on both
backends. The push is tested with huggingface_hub.HfApi replaced by a recorder, as publish's is."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from conftest import MAX_CLIP_CER, NO_BROWSER, REPO, clip_cer, free_port, lay_into_hub_cache, transcribe_in_chromium
from svwhisper import publish, space
from svwhisper.space import SpaceError

pytestmark = pytest.mark.slow
MODEL, SPACE = "someone/svwhisper-tiny", "someone/svwhisper-demo"
PIPELINE_ONLY = ("dvc", "datasets", "peft", "accelerate", "jiwer", "librosa", "audiomentations", "matplotlib")


@pytest.fixture(scope="module")
def published(tiny_repo, tmp_path_factory) -> tuple[Path, Path]:
    """(the tiny repo's copy, the folder `publish --dry-run` writes for it)."""
    repo = tmp_path_factory.mktemp("space") / "repo"
    shutil.copytree(tiny_repo, repo, symlinks=True)
    return repo, publish.publish(repo, MODEL, repo.parent / "published")  # its CLI: tests/test_publish.py


@pytest.fixture(scope="module")
def hub_cache(published) -> tuple[Path, str]:
    """(a Hugging Face cache holding the published folder as MODEL's main, its commit)."""
    cache = published[1].parent / "hf-cache"
    return cache, lay_into_hub_cache(published[1], cache, MODEL)


def write_space(repo: Path, backend: str, out: Path, env: dict | None = None) -> Path:
    cmd = [sys.executable, "-m", "svwhisper.cli", "space", SPACE, "--model", MODEL, "--backend", backend]
    done = subprocess.run([*cmd, "--dry-run", str(out)], cwd=repo, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return out


def pinned(requirements: Path) -> dict[str, str]:
    lines = [line for line in requirements.read_text().splitlines() if line and not line.startswith(("#", "--"))]
    assert all(line.count("==") == 1 for line in lines), lines  # every package pinned
    return dict(line.split("==") for line in lines)


def only_these_packages(names, dest: Path) -> Path:
    """A folder of links to the installed files of exactly the distributions `names` (nothing else importable)."""
    dest.mkdir()
    for name in names:
        dist = metadata.distribution(name)
        for top in sorted({Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}):
            if not (dest / top).exists():
                (dest / top).symlink_to(Path(dist.locate_file(top)))
    return dest


@pytest.fixture(scope="module", params=["ctranslate2", "transformers"])
def served_space(request, published, hub_cache, tmp_path_factory):
    """(the Space folder, its page's URL, the backend): the Space's app.py serving MODEL from the cache, offline."""
    backend = request.param
    root = tmp_path_factory.mktemp(f"space-{backend}")
    folder = write_space(published[0], backend, root / "space")
    site = only_these_packages(pinned(folder / "requirements.txt"), root / "site-packages")
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root),  # no saved Hugging Face login
        "PYTHONPATH": str(site),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(hub_cache[0]),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    log = (root / "app.log").open("w")
    server = subprocess.Popen(  # -S: not even this venv's site-packages; the Space's svwhisper/ comes from its folder
        [sys.executable, "-S", "app.py", "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(url + "config", timeout=5)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"the Space's app.py did not serve: {(root / 'app.log').read_text()[-3000:]}")
            time.sleep(1)
    yield folder, url, backend
    server.terminate()
    server.wait(timeout=30)
    log.close()


def test_publish_uploads_the_ctranslate2_export_beside_the_model(published):
    repo, folder = published
    export = sorted(p.name for p in (repo / "models/ct2").iterdir())
    assert sorted(p.name for p in (folder / "ctranslate2").iterdir()) == export
    for name in export:
        assert (folder / "ctranslate2" / name).read_bytes() == (repo / "models/ct2" / name).read_bytes()
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert f'pipeline("automatic-speech-recognition", model="{MODEL}")' in card
    assert f"svwhisper transcribe lecture.m4a --model {MODEL} --backend ctranslate2" in card


def test_the_space_folder_builds_on_the_hub_by_itself(published, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_never_written")
    monkeypatch.chdir(published[0])  # the CLI's way (a subprocess) is served_space's
    folders = {
        b: space.space(SPACE, MODEL, b, tmp_path / b, False, published[0] / "params.yaml")
        for b in ("ctranslate2", "transformers")
    }
    for backend, folder in folders.items():
        text = (folder / "README.md").read_text(encoding="utf-8")
        meta = yaml.safe_load(text.split("---\n")[1])
        assert meta["sdk"] == "gradio" and meta["sdk_version"] == metadata.version("gradio")
        assert meta["app_file"] == "app.py" and (folder / "app.py").read_bytes() == (REPO / "app.py").read_bytes()
        assert meta["python_version"] == "{}.{}".format(*sys.version_info[:2])
        assert meta["models"] == [MODEL] and meta["preload_from_hub"] == [MODEL]
        assert meta["license"] == "apache-2.0" and len(meta["short_description"]) <= 60 and meta["title"]
        served = yaml.safe_load((folder / "params.yaml").read_text())["app"]
        assert (served["model"], served["backend"], served["host"], served["port"]) == (MODEL, backend, "0.0.0.0", 7860)
        pins = pinned(folder / "requirements.txt")
        assert pins["gradio"] == meta["sdk_version"] and pins["ctranslate2"] == metadata.version("ctranslate2")
        assert all(metadata.version(name) == version for name, version in pins.items())  # what ran here
        assert ("torch" in pins) == (backend == "transformers")
        assert not [name for name in PIPELINE_ONLY if name in pins]
        source = Path(space.__file__).parent
        assert (folder / "svwhisper" / "hub.py").read_bytes() == (source / "hub.py").read_bytes()
        assert (folder / "svwhisper" / "presets").is_dir() and not list(folder.rglob("__pycache__"))
        assert not [p for p in folder.rglob("*") if p.is_file() and b"hf_secret_never_written" in p.read_bytes()]


def test_bad_ids_are_refused_before_anything_is_written_or_sent(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", None)  # any network client use would fail loudly
    params = REPO / "params.yaml"
    for space_id, model, message in [
        ("demo", MODEL, "the Space must be owner/name"),
        ("you/demo@main", MODEL, "the Space must be owner/name"),
        (SPACE, "svwhisper-tiny", "--model must be a Hub model id"),
        (SPACE, "a/b/c", "--model must be a Hub model id"),
    ]:
        with pytest.raises(SpaceError, match=message):
            space.space(space_id, model, "ctranslate2", tmp_path / "out", False, params)
        with pytest.raises(SpaceError, match=message):
            space.space(space_id, model, "ctranslate2", None, False, params)
    assert not (tmp_path / "out").exists()


class FakeHub:
    """Stands in for huggingface_hub.HfApi: records the calls; `files` is what the model repo lists."""

    calls: list = []
    files: list = []

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def list_repo_files(self, repo_id, **kwargs):
        self.calls.append(("list_repo_files", repo_id, kwargs))
        return self.files

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, folder_path, repo_id, **kwargs):
        files = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
        self.calls.append(("upload_folder", repo_id, files, kwargs))


def test_push_creates_a_gradio_space_and_uploads_the_dry_run_folder(published, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.chdir(published[0])
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    params = published[0] / "params.yaml"
    FakeHub.calls, FakeHub.files = [], ["README.md", "config.json", "model.safetensors"]  # published without export
    with pytest.raises(SpaceError, match="has no ctranslate2/model.bin .*svwhisper publish"):
        space.space(SPACE, MODEL, "ctranslate2", None, False, params)
    assert [c[0] for c in FakeHub.calls] == ["init", "list_repo_files"]  # nothing created
    FakeHub.calls, FakeHub.files = [], sorted(str(p.relative_to(published[1])) for p in published[1].rglob("*"))
    url = space.space(SPACE, f"{MODEL}@v1", "ctranslate2", None, True, params)
    assert url == f"https://huggingface.co/spaces/{SPACE}"
    (_, token), listed, created, uploaded = FakeHub.calls
    assert token == "hf_test_token" and listed[1:] == (MODEL, {"revision": "v1", "repo_type": "model"})
    assert created == ("create_repo", SPACE, {"repo_type": "space", "space_sdk": "gradio", "private": True,
                                              "exist_ok": True})  # fmt: skip
    dry = space.space(SPACE, f"{MODEL}@v1", "ctranslate2", tmp_path / "dry", True, params)
    assert uploaded[2] == sorted(str(p.relative_to(dry)) for p in dry.rglob("*") if p.is_file())
    assert uploaded[3]["repo_type"] == "space"
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(SpaceError, match="no Hugging Face token"):
        space.space(SPACE, MODEL, "ctranslate2", None, False, params)  # publish's rule: HF_TOKEN or `hf auth login`


def test_the_space_serves_the_hub_model_offline_through_its_page(served_space, hub_cache, memorised):
    from gradio_client import Client, handle_file

    folder, url, backend = served_space
    config = json.loads(urllib.request.urlopen(url + "config", timeout=10).read())
    shown = json.dumps(config)
    assert f"{MODEL}@{hub_cache[1][:12]}" in shown and f"({backend})" in shown
    assert str(hub_cache[0]) not in shown and "snapshots" not in shown  # no server path on the page
    client = Client(url, verbose=False)
    for clip, sentence in memorised[:2]:
        assert clip_cer(sentence, client.predict(handle_file(str(clip)), api_name="/transcribe")[0]) <= MAX_CLIP_CER


@pytest.mark.skipif(NO_BROWSER, reason="SVWHISPER_SKIP_BROWSER=1 and no chromium here")
def test_the_space_page_transcribes_an_upload_in_chromium(served_space, hub_cache, memorised, tmp_path):
    folder, url, backend = served_space
    clip, sentence = memorised[1]
    shown, cues, heading = transcribe_in_chromium(url, clip, tmp_path)
    assert clip_cer(sentence, shown) <= MAX_CLIP_CER, shown
    assert " --> " in cues and f"{MODEL}@{hub_cache[1][:12]}" in heading and backend in heading
