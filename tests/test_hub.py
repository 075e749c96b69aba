"""Models by Hub id: which specs are folders and which are ids, what a cached Hub model resolves to, and that every
way a Hub model can fail to serve is one line naming it (the Hub client replaced only where the network would be)."""

import json
import subprocess
import sys

import pytest

from conftest import REPO, lay_into_hub_cache
from svwhisper import hub
from svwhisper.hub import ModelError, resolve

REPO_ID = "someone/svwhisper-test"


def fake_model(folder, ct2: bool = True, model_type: str = "whisper", weights: str = "model.safetensors"):
    """The file layout `svwhisper publish` uploads (contents are placeholders: resolving never loads them)."""
    folder.mkdir(parents=True)
    for name in ("tokenizer.json", "processor_config.json", weights):
        (folder / name).write_text("{}")
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    if ct2:
        (folder / "ctranslate2").mkdir()
        for name in ("config.json", "model.bin", "vocabulary.json", "tokenizer.json", "processor_config.json"):
            (folder / "ctranslate2" / name).write_text("{}")
    return folder


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read at import; the env var is for subprocesses
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_ids_and_folders_are_told_apart(tmp_path, monkeypatch):
    assert hub.parse_hub_id("you/svwhisper-small-sv") == ("you/svwhisper-small-sv", None)
    assert hub.parse_hub_id("you/m@v1.0") == ("you/m", "v1.0")
    assert hub.parse_hub_id("you/m@refs/pr/3") == ("you/m", "refs/pr/3")
    for bad in (
        "m",
        "a/b/c",
        "/m",
        "you/",
        "you/m@",
        "-you/m",
        "you/m.",
        "you/a--b",
        "you/a..b",
        "you/m@../x",
        "",
        "you/m\n",
        "you/m@main\n",
    ):  # a trailing newline would be written into a Space's files
        with pytest.raises(ValueError, match="not a Hub model id"):
            hub.parse_hub_id(bad)
    assert hub.is_repo_id("you/m") and not hub.is_repo_id("you/m@main")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "final").mkdir(parents=True)
    for folder in ("models/final", "./m", "/abs/m", "~/m", "m/", "a/b/c", "m"):
        assert hub.looks_like_path(folder), folder
    for hub_id in ("you/m", "you/m@main"):
        assert not hub.looks_like_path(hub_id), hub_id


def test_a_cached_hub_model_resolves_offline_for_both_backends(tmp_path, offline_cache):
    commit = lay_into_hub_cache(fake_model(tmp_path / "published"), offline_cache, REPO_ID)
    model = resolve(REPO_ID, "transformers")
    snapshot = offline_cache / "models--someone--svwhisper-test" / "snapshots" / commit
    assert model.path == snapshot and (model.path / "config.json").is_symlink()
    assert model.label == f"{REPO_ID}@{commit[:12]}" and str(tmp_path) not in model.label
    ct2 = resolve(REPO_ID, "ctranslate2")
    assert ct2.path == snapshot / "ctranslate2" and ct2.label == model.label
    assert resolve(f"{REPO_ID}@{commit}", "transformers").path == snapshot  # a commit needs no ref
    with pytest.raises(ModelError, match=f"{REPO_ID}@v2 is not .* in the Hugging Face cache"):
        resolve(f"{REPO_ID}@v2", "transformers")  # a tag never fetched


def test_what_a_hub_model_lacks_is_named(tmp_path, offline_cache):
    lay_into_hub_cache(fake_model(tmp_path / "a", ct2=False), offline_cache, "someone/no-export")
    with pytest.raises(ModelError, match="ctranslate2/ of someone/no-export lacks .*model.bin.*svwhisper publish"):
        resolve("someone/no-export", "ctranslate2")
    assert resolve("someone/no-export", "transformers").hub_id == "someone/no-export"
    lay_into_hub_cache(fake_model(tmp_path / "b", weights="pytorch_model.bin"), offline_cache, "someone/pickled")
    with pytest.raises(ModelError, match="someone/pickled lacks .*model.safetensors"):  # no pickle is ever loaded
        resolve("someone/pickled", "transformers")
    lay_into_hub_cache(fake_model(tmp_path / "c", model_type="bert"), offline_cache, "someone/bert")
    with pytest.raises(ModelError, match="someone/bert is not a Whisper model .*'bert'"):
        resolve("someone/bert", "transformers")
    with pytest.raises(ModelError, match="someone/never-fetched is not .* cache .*HF_HUB_OFFLINE"):
        resolve("someone/never-fetched", "transformers")
    with pytest.raises(ModelError, match="no model in .*nothing-here for the transformers backend"):
        resolve(str(tmp_path / "nothing-here"), "transformers")
    with pytest.raises(ModelError, match="a/b/c: no model in|no model in a/b/c"):
        resolve("a/b/c", "transformers")


def test_hub_refusals_are_one_line_each(monkeypatch):
    """What the Hub answers (not found or private, gated, no such revision, refused) as the client raises it."""
    import httpx
    import huggingface_hub
    from huggingface_hub import errors

    request = httpx.Request("GET", "https://huggingface.co/api/models/someone/m")

    def answer(status):
        return httpx.Response(status, request=request)

    cases = [
        (errors.RepositoryNotFoundError("404", response=answer(404)), "no model someone/m on the Hub .*hf auth login"),
        (errors.GatedRepoError("403", response=answer(403)), "someone/m is gated"),
        (errors.RevisionNotFoundError("404", response=answer(404)), "someone/m has no revision 'v9'"),
        (errors.HfHubHTTPError("500", response=answer(500)), r"the Hub refused someone/m@v9 \(HTTP 500\)"),
    ]
    for raised, message in cases:

        def fail(*args, raised=raised, **kwargs):
            raise raised

        monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
        with pytest.raises(ModelError, match=message) as caught:
            resolve("someone/m@v9", "transformers")
        assert "\n" not in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["transcribe", "app"])
def test_the_cli_and_the_app_say_what_is_wrong_with_a_hub_model_in_one_line(command, tmp_path):
    clip = next((REPO / "data/sample/sv-SE/clips").glob("*.mp3"))
    args = {
        "transcribe": [sys.executable, "-m", "svwhisper.transcribe", str(clip), "--model", "someone/not-cached"],
        "app": [sys.executable, str(REPO / "app.py"), "--model", "someone/not-cached", "--port", "1"],
    }[command]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "e")}
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "someone/not-cached is not (all) in the Hugging Face cache" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
