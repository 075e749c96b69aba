"""Publish the final model to the Hugging Face Hub, with a model card written from the pipeline's own files.

    python -m svwhisper.publish you/svwhisper-small-sv --dry-run out/   # writes the exact folder it would upload
    python -m svwhisper.publish you/svwhisper-small-sv [--private]      # uploads it (`hf auth login` or HF_TOKEN)

Opt-in, never a stage of `dvc repro`. Everything in the card comes from files: the metrics from the
evaluate stage, the params the model was trained with from `dvc.lock`, the data counts from the
prepare report, and the git commit and `dvc.lock` hash that produced it. The card is refused when
the model or metrics on disk are not the ones `dvc.lock` records (`dvc status` not clean for them).
"""

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

from svwhisper import whisper_base
from svwhisper.model_files import SAVED_MODEL, missing_groups
from svwhisper.params import PublishParams

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
SAMPLE_CORPUS = "data/sample"  # sources under it are the shipped synthetic corpus: the model is a demo


class PublishError(Exception):
    """Publishing cannot go on; the message says why and what to do."""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def public_url(url: str) -> str:
    """The web address of a git remote URL for a public card: https only, no user, password, token, query or
    fragment; `git@host:owner/repo` becomes `https://host/owner/repo`. "" when there is none to show."""
    url = url.strip()
    if scp := re.match(r"^[\w.-]+@([\w.-]+):(?!/)(.+)$", url):  # git@github.com:owner/repo.git
        url = f"https://{scp.group(1)}/{scp.group(2)}"
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return ""
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(("https", host, parts.path, "", ""))


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise PublishError(f"{path} is missing: run `dvc repro` (or `dvc pull`) first")
    return json.loads(path.read_text(encoding="utf-8"))


def lock_params(lock: dict, stage: str, block: str) -> dict:
    """The `block` params that `stage` last ran with, as dvc.lock records them."""
    try:
        return lock["stages"][stage]["params"]["params.yaml"][block]
    except KeyError:
        raise PublishError(f"dvc.lock has no {block} params for stage {stage}: run `dvc repro` first") from None


def dataset_entries(sources: dict) -> tuple[list[str], str]:
    """(Hub dataset ids among the sources, a readable name of the test sources)."""
    hub = [s["name"] for split in sources.values() for s in split if s.get("kind") == "hf" and s.get("name")]
    test = sources.get("test", [])
    name = ", ".join(s.get("name") or f"{s['kind']}:{s.get('path', '')}" for s in test) or "test split"
    if test and all(str(s.get("path", "")).startswith(SAMPLE_CORPUS) for s in test):
        name = "svwhisper sample corpus (synthetic sv-SE speech, CC0 sentences)"
    return sorted(set(hub)), name


def is_demo(sources: dict) -> bool:
    return all(str(s.get("path", "")).startswith(SAMPLE_CORPUS) for split in sources.values() for s in split)


def base_model_of(name: str) -> tuple[str | None, str]:
    """(the card's base_model id or None, the sentence that says where the starting weights came from)."""
    if name == whisper_base.NAME:
        return whisper_base.HUB_ID, (
            f"Fine-tuned from `{whisper_base.HUB_ID}` (MIT), installed offline as {whisper_base.REVISION}: "
            f"the CTranslate2 conversion, from the packages {', '.join(whisper_base.PACKAGES)}, whose files "
            "matched Systran's published sha256 before they were converted back to transformers' format."
        )
    if name in ("", "scratch"):
        return None, (
            "Built and initialised locally (random init, tokenizer trained on the training text), not fine-tuned "
            "from a pretrained checkpoint."
        )
    return name, f"Fine-tuned from `{name}`."


def build_card(repo: Path, model_dir: Path, params: PublishParams, paths) -> str:
    """The model card (YAML metadata + Markdown) of `model_dir`, from the pipeline's files in `repo`."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    lock_path = repo / "dvc.lock"
    if not lock_path.is_file():
        raise PublishError("dvc.lock is missing: run `dvc repro` first")
    lock = yaml.safe_load(lock_path.read_text(encoding="utf-8"))
    metrics = read_json(repo / paths.metrics)
    report = read_json(repo / paths.prepare_report)
    train_log = repo / paths.train_log / "metrics.json"
    dev = json.loads(train_log.read_text(encoding="utf-8")) if train_log.is_file() else {}
    model = lock_params(lock, "base_model", "model")
    train = lock_params(lock, "train", "train")
    sources = lock_params(lock, "prepare", "prepare")["sources"]
    hub_datasets, test_name = dataset_entries(sources)
    demo = is_demo(sources)
    base_model, origin_line = base_model_of(model.get("name", ""))
    wer, cer = round(100 * metrics["wer"], 2), round(100 * metrics["cer"], 2)
    results = [
        EvalResult(
            task_type="automatic-speech-recognition",
            task_name="Speech recognition",
            dataset_type=hub_datasets[0] if hub_datasets else "svwhisper-local",
            dataset_name=params.dataset_name or test_name,
            dataset_split="test",
            metric_type=metric,
            metric_name=f"Test {metric.upper()} (%)",
            metric_value=value,
        )
        for metric, value in (("wer", wer), ("cer", cer))
    ]
    commit = git(repo, "rev-parse", "HEAD") or "unknown (not a git checkout)"
    origin = public_url(git(repo, "remote", "get-url", "origin"))
    project = f"[svwhisper]({origin})" if origin else "svwhisper"
    dirty = " (with uncommitted changes)" if git(repo, "status", "--porcelain", "--untracked-files=no") else ""
    data = ModelCardData(
        language="sv",
        license=params.license,
        library_name="transformers",
        pipeline_tag="automatic-speech-recognition",
        tags=["whisper", "svwhisper", "dvc", *(["demo", "synthetic-speech"] if demo else [])],
        base_model=base_model,
        datasets=hub_datasets or None,
        model_name=model_dir.name if model_dir.name != "final" else "svwhisper",
        eval_results=results,
    )
    splits = report["splits"]
    data_rows = "\n".join(
        f"| {split} | {s['kept']} | {sum(s['dropped'].values())} | {s['hours']:.2f} | {s.get('speakers', '')} |"
        for split, s in splits.items()
    )
    source_rows = "\n".join(f"| {split} | {', '.join(names)} |" for split, names in report["sources"].items())
    train_rows = "\n".join(f"| `{k}` | `{json.dumps(v)}` |" for k, v in train.items())
    model_rows = "\n".join(f"| `{k}` | `{json.dumps(v)}` |" for k, v in model.items())
    dev_wer = f"{100 * dev['eval']['wer']:.2f}" if dev.get("eval") else "not recorded"
    if demo:
        use = (
            "**This is a demo, not a usable Swedish recogniser.** It was trained on the small synthetic corpus "
            "shipped with svwhisper: espeak-ng reading CC0 sentences with a few voice variants. It shows that the "
            "pipeline runs end to end; its error rates hold for that synthetic speech only, and fine-tuning on it "
            "teaches nothing about human voices. For a real model, run the same pipeline with the "
            "`whisper-small-cv` preset on Common Voice."
        )
    else:
        use = (
            "Transcribing Swedish speech (`sv`), clips or long recordings split into windows, as trained. Expect "
            "higher error rates on accents, recording conditions and vocabulary unlike the training data, on "
            "overlapping speakers and on non-Swedish speech; do not use it where errors have consequences without "
            "a person checking the transcript. The measured numbers hold for the test set named above only."
        )
    body = f"""
# {data.model_name}

Whisper-architecture speech recognition for Swedish, trained with {project} (a DVC pipeline:
`prepare → base_model → featurize → train → evaluate`). {origin_line}

## Intended use and limitations

{use}

## Results

On the test split ({metrics["n_utterances"]} utterances, {metrics["hours"]:.2f} h of {test_name}),
greedy decoding, text normalised (lower case, no punctuation) before scoring:

| metric | value |
|---|---|
| test WER | {wer:.2f} % |
| test CER | {cer:.2f} % |
| test WER, orthographic (case and punctuation kept) | {100 * metrics.get("wer_orthographic", float("nan")):.2f} % |
| dev WER at the chosen checkpoint | {dev_wer} % |
| untrained base model, test WER | {100 * metrics.get("base_wer", float("nan")):.2f} % |

## Training data

| split | sources |
|---|---|
{source_rows}

| split | clips kept | clips dropped | hours | speakers |
|---|---|---|---|---|
{data_rows}

## Training procedure

Model (`model` params of the `base_model` stage):

| param | value |
|---|---|
{model_rows}

Training (`train` params, as `dvc.lock` records the run that produced these weights):

| param | value |
|---|---|
{train_rows}

## Reproduce

Produced by git commit `{commit}`{dirty}, `dvc.lock` sha256 `{hashlib.sha256(lock_path.read_bytes()).hexdigest()}`.

```bash
git checkout {commit[:12]} && make install && .venv/bin/dvc pull     # fetch these weights, or
git checkout {commit[:12]} && make repro                             # rebuild them
```

## Usage

```python
from transformers import pipeline

asr = pipeline("automatic-speech-recognition", model="<this repo>")
print(asr("clip.wav")["text"])
```
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def check_model(model_dir: Path) -> None:
    if missing_groups(model_dir, "transformers")[0]:
        raise PublishError(
            f"no model in {model_dir} (weights, config, tokenizer and processor files): run `make repro` (builds "
            f"it) or `dvc pull` (fetches it)"
        )


def check_current(repo: Path, paths) -> None:
    """Refuse when the model or metrics on disk differ from what dvc.lock records: the card would not fit them."""
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "train", "evaluate", "--json"], cwd=repo, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise PublishError(f"`dvc status` failed: {done.stderr.strip()[-500:]}")
    if json.loads(done.stdout or "{}"):
        raise PublishError(
            f"{paths.final_model} or {paths.metrics} is not what dvc.lock records (dvc status: {done.stdout.strip()}):"
            f" run `dvc repro` first, so that the card describes the model it ships"
        )


def write_folder(repo: Path, model_dir: Path, out: Path, params: PublishParams, paths) -> Path:
    """The exact folder to upload: the model's weights (safetensors), processor files, generation config, card."""
    card = build_card(repo, model_dir, params, paths)
    out.mkdir(parents=True, exist_ok=True)
    for name in SAVED_MODEL:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out / name)
    (out / "README.md").write_text(card, encoding="utf-8")
    return out


def hub_token() -> str:
    from huggingface_hub import get_token

    token = get_token()  # HF_TOKEN, else the token `hf auth login` saved
    if not token:
        raise PublishError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access)")
    return token


def upload(folder: Path, repo_id: str, private: bool, message: str, token: str) -> str:
    """Create the Hub repo if needed and upload `folder`; the commit's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    if private and api.repo_exists(repo_id, repo_type="model"):
        if not api.repo_info(repo_id, repo_type="model").private:
            raise PublishError(
                f"{repo_id} exists and is public: --private does not change an existing repo, so nothing was "
                f"uploaded; make it private in its settings on the Hub first, or publish without --private"
            )
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message=message)
    return str(getattr(info, "commit_url", info))


def publish(repo: Path, repo_id: str, dry_run: Path | None, private: bool = False) -> Path | str:
    """Write the folder (`dry_run`) or upload it to `repo_id`; the folder or the commit URL."""
    from svwhisper.paramfile import load_params
    from svwhisper.params import Paths

    if not REPO_ID.match(repo_id):
        raise PublishError(f"the Hub repo must be owner/name (e.g. you/svwhisper-small-sv), got {repo_id!r}")
    paths = load_params(Paths, "paths", repo / "params.yaml")
    params = load_params(PublishParams, "publish", repo / "params.yaml")
    model_dir = repo / paths.final_model
    check_model(model_dir)
    check_current(repo, paths)
    if dry_run is not None:
        return write_folder(repo, model_dir, dry_run, params, paths)
    token = hub_token()  # before any work: no token, no folder
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(repo, model_dir, Path(tmp) / "upload", params, paths)
        commit = git(repo, "rev-parse", "--short", "HEAD")
        message = f"{params.commit_message} ({commit})" if commit else params.commit_message
        return upload(folder, repo_id, private, message, token)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo_id", help="the Hub model repo, owner/name")
    parser.add_argument("--dry-run", type=Path, metavar="DIR", help="write the folder it would upload to DIR, only")
    parser.add_argument("--private", action="store_true", help="create the Hub repo private")
    args = parser.parse_args()
    try:
        result = publish(Path.cwd(), args.repo_id, args.dry_run, args.private)
    except PublishError as err:
        sys.exit(f"publish: {err}")
    if args.dry_run is not None:
        print(f"publish: wrote {result} (the exact folder an upload sends); nothing uploaded")
    else:
        print(f"publish: uploaded to {result}")


if __name__ == "__main__":
    main()
