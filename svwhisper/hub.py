"""Where a served model comes from: a local folder, or a Hugging Face Hub id `owner/name[@revision]`.

    resolve("models/final", "transformers")                 # a folder: served as it is
    resolve("you/svwhisper-small-sv", "ctranslate2")         # the Hub: fetched into huggingface_hub's cache
    resolve("you/svwhisper-small-sv@v1", "transformers")     # a branch, tag or commit of it

The app (`--model`, `app.model`), `svwhisper transcribe --model` and the Spaces `svwhisper space` writes all go
through `resolve`. A Hub model is fetched with `huggingface_hub.snapshot_download` into its normal cache
(HF_HOME / HF_HUB_CACHE), only the files the backend loads; with HF_HUB_OFFLINE=1 it comes from that cache.
A model `svwhisper publish` uploaded holds transformers' files at its root and the CTranslate2 int8 export
in `ctranslate2/`.

A Hub repo is someone else's files: only safetensors weights are taken (never a pickled `pytorch_model.bin`),
no remote code runs, and the config must be a Whisper model's before any backend reads it. Whatever goes
wrong (no such repo, private without a token, gated, offline and not cached, files missing) is one line in
a ModelError.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

from svwhisper.model_files import NEEDED, SAVED_MODEL, missing_groups

CT2_SUBFOLDER = "ctranslate2"  # where a published model keeps its CTranslate2 export
CT2_FILES = ("config.json", "model.bin", "vocabulary.json", "vocabulary.txt", "tokenizer.json", "tokenizer_config.json",
             "processor_config.json", "preprocessor_config.json", "generation_config.json")  # fmt: skip
PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"  # the Hub's names: no leading/trailing '.', '-', '_'
HUB_ID = re.compile(rf"(?P<repo>{PART}/{PART})(?:@(?P<revision>[A-Za-z0-9][A-Za-z0-9._/-]{{0,199}}))?")  # fullmatch


class ModelError(Exception):
    """The model cannot be served; the message (one line) says why and what to do."""


@dataclass(frozen=True)
class Model:
    path: Path  # the folder the backend loads
    label: str  # what a page shows: "owner/name@<commit>" or the folder's name, never a server path
    hub_id: str = ""  # owner/name when it came from the Hub


def parse_hub_id(text: str) -> tuple[str, str | None]:
    """("owner/name", revision or None) of `owner/name[@revision]`; ValueError when `text` is not one."""
    match = HUB_ID.fullmatch(text)  # `$` would take a trailing newline into a Space's files
    if not match or ".." in text or "--" in match["repo"]:
        raise ValueError(f"{text!r} is not a Hub model id (owner/name or owner/name@revision)")
    return match["repo"], match["revision"]


def is_repo_id(text: str) -> bool:
    """Whether `text` is a Hub repo id to create or push to: owner/name, no revision."""
    try:
        return parse_hub_id(text)[1] is None
    except ValueError:
        return False


def looks_like_path(spec: str) -> bool:
    """Whether `spec` can only mean a folder: it exists, or is written as a path (./x, /x, ~/x, x/, a/b/c)."""
    return (
        Path(spec).expanduser().exists()
        or spec.startswith((".", "/", "~"))
        or spec.endswith("/")
        or (spec.count("/") != 1 and "@" not in spec)
    )


def resolve(spec: str, backend: str) -> Model:
    """The model `spec` names (a folder, else a Hub id) as a folder holding what `backend` loads."""
    if backend not in NEEDED:
        raise ModelError(f"backend must be one of {', '.join(NEEDED)}, got {backend!r}")
    if not spec or not spec.strip():
        raise ModelError("no model given: a folder (models/final) or a Hub id (owner/name)")
    if looks_like_path(spec):
        return local_model(Path(spec).expanduser(), backend)
    try:
        repo_id, revision = parse_hub_id(spec)
    except ValueError:
        raise ModelError(f"{spec}: no such folder, and not a Hub id (owner/name or owner/name@revision)") from None
    return hub_model(repo_id, revision, backend)


def local_model(folder: Path, backend: str) -> Model:
    from svwhisper.backend import missing_model

    if problem := missing_model(folder, backend):
        raise ModelError(problem)
    return Model(folder, folder.resolve().name)


def hub_patterns(backend: str) -> list[str]:
    """The files of a published repo that `backend` loads (safetensors weights only: no pickles)."""
    if backend == "ctranslate2":
        return [f"{CT2_SUBFOLDER}/{name}" for name in CT2_FILES]
    return [name for name in SAVED_MODEL]


def hub_model(repo_id: str, revision: str | None, backend: str) -> Model:
    """Fetch (or find in the cache) the files of `repo_id` at `revision` that `backend` needs."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f"{repo_id}@{revision}" if revision else repo_id
    try:
        root = Path(snapshot_download(repo_id, revision=revision, allow_patterns=hub_patterns(backend)))
    except GatedRepoError:
        raise ModelError(f"{repo_id} is gated: accept its conditions on the Hub, then `hf auth login`") from None
    except RepositoryNotFoundError:
        raise ModelError(
            f"no folder {repo_id} here, and no model {repo_id} on the Hub (or it is private and no token with "
            f"access is set: `hf auth login` or HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise ModelError(f"{repo_id} has no revision {revision!r} (a branch, tag or commit)") from None
    except (LocalEntryNotFoundError, IncompleteSnapshotError):
        raise ModelError(
            f"{at} is not (all) in the Hugging Face cache and the Hub cannot be reached (offline, or HF_HUB_OFFLINE=1):"
            f" fetch it once with network access"
        ) from None
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", "?")
        raise ModelError(f"the Hub refused {at} (HTTP {status}): is the token allowed to read it?") from None
    except (OSError, ValueError) as err:  # the cache not writable, an id the Hub's own validation refuses
        raise ModelError(f"could not fetch {at}: {type(err).__name__}: {str(err).splitlines()[0][:200]}") from None
    folder = root / CT2_SUBFOLDER if backend == "ctranslate2" else root
    missing, _ = missing_groups(folder, backend)
    if backend == "transformers" and not (folder / "model.safetensors").is_file():
        missing = ["model.safetensors", *(m for m in missing if "model.safetensors" not in m)]
    if missing:
        where = f"{CT2_SUBFOLDER}/ of {at}" if backend == "ctranslate2" else at
        hint = (
            "publish it with `svwhisper publish` (it uploads the export), or serve it with --backend transformers"
            if backend == "ctranslate2"
            else "is it a saved Whisper model (safetensors weights)?"
        )
        raise ModelError(f"{where} lacks what the {backend} backend needs ({', '.join(missing)}): {hint}")
    check_whisper_config(folder / "config.json", at)
    return Model(folder, f"{repo_id}@{root.name[:12]}", repo_id)


def check_whisper_config(path: Path, name: str) -> None:
    """ModelError unless `path` is a Whisper model's config.json (a CTranslate2 export's config has no model_type)."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{name}: its config.json cannot be read ({type(err).__name__})") from None
    if not isinstance(config, dict):
        raise ModelError(f"{name}: its config.json is not a JSON object")
    model_type = config.get("model_type", "whisper")
    if model_type != "whisper":
        raise ModelError(f"{name} is not a Whisper model (its config.json says model_type {str(model_type)[:40]!r})")
