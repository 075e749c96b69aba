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
from svwhisper.hub import CT2_FILES, CT2_SUBFOLDER, is_repo_id
from svwhisper.model_files import SAVED_MODEL, missing_groups
from svwhisper.params import PublishParams

SAMPLE_CORPUS = "data/sample"  # sources under it are the shipped synthetic corpus: the model is a demo
CARD_TEMPLATE = Path(__file__).with_name("templates") / "model_card.md"


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


def released_metrics(repo: Path) -> dict:
    """The peers stage's metrics (Whisper as released on the same test clips), or {} when it has not run."""
    from svwhisper.paramfile import load_params
    from svwhisper.peers import PeersParams

    path = repo / load_params(PeersParams, "peers", repo / "params.yaml").metrics
    return read_json(path) if path.is_file() else {}


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


def eval_results(metrics: dict, dataset_type: str, dataset_name: str) -> list:
    """The card's model-index entries: test WER and CER in percent."""
    from huggingface_hub import EvalResult

    return [
        EvalResult(
            task_type="automatic-speech-recognition",
            task_name="Speech recognition",
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split="test",
            metric_type=metric,
            metric_name=f"Test {metric.upper()} (%)",
            metric_value=round(100 * metrics[metric], 2),
        )
        for metric in ("wer", "cer")
    ]


def decoding_words(decoding: dict | None) -> str:
    """How evaluate decoded, in words, from the metrics' `decoding` entry."""
    if not decoding:
        return "greedily"
    fallback = len(decoding["temperatures"]) > 1
    search = "greedily" if decoding["beam_size"] == 1 else f"with beam search ({decoding['beam_size']} beams)"
    return f"{search}{' and temperature fallback' if fallback else ''}, as the svwhisper app decodes"


def result_rows(metrics: dict, dev: dict, peers: dict) -> list[tuple[str, str]]:
    def percent(key: str, of: dict = metrics) -> str:
        return f"{100 * of[key]:.2f} %" if key in of else "not recorded"

    released = peers.get("model", "the base model").removeprefix("packaged:")

    return [
        ("test WER", percent("wer")),
        ("test CER", percent("cer")),
        ("test WER, orthographic (case and punctuation kept)", percent("wer_orthographic")),
        (
            "dev WER at the chosen checkpoint",
            f"{100 * dev['eval']['wer']:.2f} %" if dev.get("eval") else "not recorded",
        ),
        (
            f"{released} as released (30 s window), by faster-whisper, test WER",
            percent("wer", peers.get("faster_whisper", {})),
        ),
        (
            f"{released} as released, by the same decoder as above, test WER",
            percent("wer", peers.get("transformers", {})),
        ),
    ]


def build_card(repo: Path, model_dir: Path, params: PublishParams, paths, repo_id: str) -> str:
    """The model card (YAML metadata + Markdown, templates/model_card.md) of `model_dir`, published as `repo_id`, from
    the pipeline's files in `repo`."""
    from huggingface_hub import ModelCard, ModelCardData

    lock_path = repo / "dvc.lock"
    if not lock_path.is_file():
        raise PublishError("dvc.lock is missing: run `dvc repro` first")
    lock = yaml.safe_load(lock_path.read_text(encoding="utf-8"))
    metrics, report = read_json(repo / paths.metrics), read_json(repo / paths.prepare_report)
    peers = released_metrics(repo)
    train_log = repo / paths.train_log / "metrics.json"
    dev = json.loads(train_log.read_text(encoding="utf-8")) if train_log.is_file() else {}
    model, train = lock_params(lock, "base_model", "model"), lock_params(lock, "train", "train")
    sources = lock_params(lock, "prepare", "prepare")["sources"]
    hub_datasets, test_name = dataset_entries(sources)
    demo = is_demo(sources)
    base_model, origin_line = base_model_of(model.get("name", ""))
    origin = public_url(git(repo, "remote", "get-url", "origin"))
    data = ModelCardData(
        language="sv",
        license=params.license,
        library_name="transformers",
        pipeline_tag="automatic-speech-recognition",
        tags=["whisper", "svwhisper", "dvc", *(["demo", "synthetic-speech"] if demo else [])],
        base_model=base_model,
        datasets=hub_datasets or None,
        model_name=model_dir.name if model_dir.name != "final" else "svwhisper",
        eval_results=eval_results(
            metrics, hub_datasets[0] if hub_datasets else "svwhisper-local", params.dataset_name or test_name
        ),
    )
    card = ModelCard.from_template(
        data,
        template_path=str(CARD_TEMPLATE),
        model_name=data.model_name,
        repo_id=repo_id,
        ct2_folder=CT2_SUBFOLDER,
        window_s=model.get("chunk_length_s", 30),
        project=f"[svwhisper]({origin})" if origin else "svwhisper",
        origin_line=origin_line,
        demo=demo,
        n_utterances=metrics["n_utterances"],
        hours=metrics["hours"],
        test_name=test_name,
        decoding=decoding_words(metrics.get("decoding")),
        results=result_rows(metrics, dev, peers),
        sources=list(report["sources"].items()),
        splits=list(report["splits"].items()),
        model_params=[(k, json.dumps(v)) for k, v in model.items()],
        train_params=[(k, json.dumps(v)) for k, v in train.items()],
        commit=git(repo, "rev-parse", "HEAD") or "unknown (not a git checkout)",
        dirty=" (with uncommitted changes)" if git(repo, "status", "--porcelain", "--untracked-files=no") else "",
        lock_sha256=hashlib.sha256(lock_path.read_bytes()).hexdigest(),
    )
    return str(card)


def check_model(model_dir: Path, export_dir: Path) -> None:
    if missing_groups(model_dir, "transformers")[0]:
        raise PublishError(
            f"no model in {model_dir} (weights, config, tokenizer and processor files): run `make repro` (builds "
            f"it) or `dvc pull` (fetches it)"
        )
    if missing := missing_groups(export_dir, "ctranslate2")[0]:
        raise PublishError(
            f"no complete CTranslate2 export in {export_dir} (no {', '.join(missing)}): run `dvc repro export` (or "
            f"`dvc pull export`)"
        )


def check_current(repo: Path, paths) -> None:
    """Refuse when the model or metrics on disk differ from what dvc.lock records: the card would not fit them."""
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "train", "evaluate", "export", "--json"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise PublishError(f"`dvc status` failed: {done.stderr.strip()[-500:]}")
    if json.loads(done.stdout or "{}"):
        raise PublishError(
            f"{paths.final_model}, {paths.exported} or {paths.metrics} is not what dvc.lock records (dvc status: "
            f"{done.stdout.strip()}): run `dvc repro` first, so that the card describes the model it ships"
        )


def write_folder(repo: Path, model_dir: Path, out: Path, params: PublishParams, paths, repo_id: str) -> Path:
    """The exact folder to upload: the model's weights (safetensors), processor files, generation config and card
    at its root; the CTranslate2 int8 export (model.bin, vocabulary, the same processor files) in `ctranslate2/`."""
    card = build_card(repo, model_dir, params, paths, repo_id)
    out.mkdir(parents=True, exist_ok=True)
    for name in SAVED_MODEL:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out / name)
    (out / CT2_SUBFOLDER).mkdir(exist_ok=True)
    for name in CT2_FILES:
        if (repo / paths.exported / name).is_file():
            shutil.copy2(repo / paths.exported / name, out / CT2_SUBFOLDER / name)
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

    if not is_repo_id(repo_id):
        raise PublishError(f"the Hub repo must be owner/name (e.g. you/svwhisper-small-sv), got {repo_id!r}")
    paths = load_params(Paths, "paths", repo / "params.yaml")
    params = load_params(PublishParams, "publish", repo / "params.yaml")
    model_dir = repo / paths.final_model
    check_model(model_dir, repo / paths.exported)
    check_current(repo, paths)
    if dry_run is not None:
        return write_folder(repo, model_dir, dry_run, params, paths, repo_id)
    token = hub_token()  # before any work: no token, no folder
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(repo, model_dir, Path(tmp) / "upload", params, paths, repo_id)
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
