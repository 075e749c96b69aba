"""Publishing: the card is made from the pipeline's files, the dry-run folder loads back, the upload reaches the Hub
client with that folder (the client replaced at that one boundary), and each refusal names its reason."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run
from svwhisper import publish
from svwhisper.model_files import SAVED_MODEL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tiny_repo, tmp_path_factory) -> Path:
    """A copy of the tiny repo after its committed `dvc repro`."""
    dest = tmp_path_factory.mktemp("publish") / "repo"
    shutil.copytree(tiny_repo, dest, symlinks=True)
    return dest


def card_metadata(folder: Path) -> dict:
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_dry_run_folder_has_a_card_with_the_committed_metrics_and_loads_back(repo, memorised, tmp_path, monkeypatch):
    from huggingface_hub import ModelCard
    from transformers import WhisperForConditionalGeneration, WhisperProcessor, pipeline

    monkeypatch.chdir(repo)
    folder = publish.publish(repo, "someone/svwhisper-tiny", tmp_path / "out")
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    meta = card_metadata(folder)
    assert meta["language"] == "sv" and meta["pipeline_tag"] == "automatic-speech-recognition"
    assert meta["license"] == "apache-2.0" and "demo" in meta["tags"]
    results = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert results == {"wer": round(100 * metrics["wer"], 2), "cer": round(100 * metrics["cer"], 2)}
    card = ModelCard.load(folder / "README.md")  # the Hub's own parser agrees
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["wer"] == round(100 * metrics["wer"], 2)

    text = (folder / "README.md").read_text(encoding="utf-8")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    assert head in text and "This is a demo, not a usable Swedish recogniser" in text
    assert f"| `max_steps` | `{lock['stages']['train']['params']['params.yaml']['train']['max_steps']}` |" in text
    report = json.loads((repo / "reports/prepare.json").read_text())
    assert f"| train | {report['splits']['train']['kept']} |" in text

    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["README.md", "ctranslate2", *(p.name for p in (repo / "models/final").iterdir() if p.name in SAVED_MODEL)]
    )  # the export in ctranslate2/: tests/test_space.py
    assert not list(folder.glob("*.bin")) and (folder / "model.safetensors").is_file()
    model = WhisperForConditionalGeneration.from_pretrained(folder)
    assert model.generation_config.language in ("sv", "<|sv|>")
    WhisperProcessor.from_pretrained(folder)
    clip, sentence = memorised[0]
    from conftest import MAX_CLIP_CER, clip_cer
    from svwhisper.audio import load_audio

    asr = pipeline("automatic-speech-recognition", model=str(folder))
    assert clip_cer(sentence, asr(load_audio(clip))["text"]) <= MAX_CLIP_CER


class FakeHub:
    """Stands in for huggingface_hub.HfApi: records the calls and what the folder held when it was uploaded."""

    calls: list = []

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def repo_exists(self, repo_id, **kwargs):
        self.calls.append(("repo_exists", repo_id))
        return False

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, folder_path, repo_id, **kwargs):
        files = sorted(p.name for p in Path(folder_path).iterdir())
        self.calls.append(("upload_folder", repo_id, files, card_metadata(Path(folder_path)), kwargs))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()


def test_upload_sends_the_dry_run_folder_to_the_hub_client(repo, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.chdir(repo)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    FakeHub.calls = []
    url = publish.publish(repo, "someone/svwhisper-tiny", None, private=True)
    assert url == "https://huggingface.co/someone/svwhisper-tiny/commit/abc"
    (init, token), exists, create, upload = FakeHub.calls
    assert exists == ("repo_exists", "someone/svwhisper-tiny")
    assert token == "hf_test_token" and create == ("create_repo", "someone/svwhisper-tiny", create[2])
    assert create[2]["private"] is True and create[2]["exist_ok"] is True
    dry = publish.publish(repo, "someone/svwhisper-tiny", tmp_path / "dry")
    assert upload[2] == sorted(p.name for p in dry.iterdir())  # the upload is exactly the dry-run folder
    assert upload[3] == card_metadata(dry)
    assert "svwhisper model (" in upload[4]["commit_message"]


def test_refusals_name_the_problem(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(repo)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no saved login either
    for bad in ("svwhisper", "a/b/c", "/name", "owner/"):
        with pytest.raises(publish.PublishError, match="must be owner/name"):
            publish.publish(repo, bad, tmp_path / "x")
    with pytest.raises(publish.PublishError, match="no Hugging Face token"):
        publish.publish(repo, "someone/svwhisper-tiny", None)
    other = tmp_path / "no-model"
    shutil.copytree(repo, other, symlinks=True, ignore=shutil.ignore_patterns("final"))
    with pytest.raises(publish.PublishError, match="no model in .*models/final"):
        publish.publish(other, "someone/svwhisper-tiny", tmp_path / "y")
    # a model with its weights but nothing else is not a model
    (other / "models/final").mkdir()
    for name in ("model.safetensors", "config.json"):
        shutil.copy(repo / "models/final" / name, other / "models/final" / name)
    with pytest.raises(publish.PublishError, match="no model in .*tokenizer and processor"):
        publish.publish(other, "someone/svwhisper-tiny", tmp_path / "y")
    # a whole model that is not the one dvc.lock records gets no card
    for name in ("tokenizer.json", "tokenizer_config.json", "processor_config.json", "generation_config.json"):
        shutil.copy(repo / "models/final" / name, other / "models/final" / name)
    with (other / "models/final/config.json").open("a", encoding="utf-8") as config:
        config.write("\n")  # the same model, but not the bytes dvc.lock records
    with pytest.raises(publish.PublishError, match="not what dvc.lock records"):
        publish.publish(other, "someone/svwhisper-tiny", tmp_path / "z")
    assert not (tmp_path / "z").exists()
    no_export = tmp_path / "no-export"
    shutil.copytree(repo, no_export, symlinks=True, ignore=shutil.ignore_patterns("model.bin"))
    with pytest.raises(publish.PublishError, match="no complete CTranslate2 export in .*models/ct2 .*model.bin"):
        publish.publish(no_export, "someone/svwhisper-tiny", tmp_path / "w")


def test_cli_dry_run_and_error_exit(repo, tmp_path):
    import subprocess

    cmd = [sys.executable, "-m", "svwhisper.publish"]
    done = subprocess.run(
        [*cmd, "someone/m", "--dry-run", str(tmp_path / "o")], cwd=repo, capture_output=True, text=True
    )
    assert done.returncode == 0 and "nothing uploaded" in done.stdout, done.stderr[-2000:]
    bad = subprocess.run(
        [*cmd, "not-a-repo-id", "--dry-run", str(tmp_path / "p")], cwd=repo, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "publish: the Hub repo must be owner/name" in bad.stderr
