"""Deploy the page as a Hugging Face Space that serves a published model.

    svwhisper space you/svwhisper-demo --model you/svwhisper-small-sv --dry-run space/   # writes the folder only
    svwhisper space you/svwhisper-demo --model you/svwhisper-small-sv [--backend transformers] [--private]

The Space folder builds on the Hub without this repository:

    README.md         Spaces front-matter (sdk: gradio at the version pinned here, models, preload_from_hub, ...)
    app.py            this repository's app.py, unchanged: the same page `python app.py` serves
    params.yaml       its `app` block: this checkout's settings, with the model, the backend and host 0.0.0.0
    requirements.txt  the serving packages and everything they need, pinned to the versions installed here
    svwhisper/        the package's source, copied from the installed svwhisper

Why the source and not a wheel: a Space installs requirements.txt before its own files are in place, so a
wheel inside the Space cannot be named there; a wheel's URL on the Hub fails for a private Space, and a git
URL needs this repository public and reachable. The copied source is the code that ran here, imported by
app.py from the Space's folder; requirements.txt holds only published packages. The training packages (dvc,
datasets, peft, ...) are not in it; torch only for the transformers backend.

The CTranslate2 backend is the default: a Space's free hardware is a 2-core CPU, where the int8 export is
several times faster, and it needs no torch. The push takes the token as `publish` does (HF_TOKEN or `hf auth
login`; never printed, never written into a file) and checks that the model holds the backend's files first.
"""

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import yaml

import svwhisper
from svwhisper.hub import CT2_SUBFOLDER, is_repo_id, parse_hub_id
from svwhisper.paramfile import ParamsError, load_params
from svwhisper.params import BACKENDS, AppParams

ROOT = Path(svwhisper.__file__).resolve().parent.parent  # a checkout: app.py and params.yaml beside the package
SERVING = ("gradio", "transformers", "huggingface_hub", "tokenizers", "numpy", "soundfile", "soxr", "av", "ctranslate2",
           "faster-whisper", "onnxruntime", "pyyaml")  # fmt: skip
TORCH = ("torch", "safetensors")  # the transformers backend's
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PACKAGE_FILES = ("*.py", "presets/*.yaml", "templates/*.md")  # what the package holds (pyproject's package-data)


class SpaceError(Exception):
    """The Space cannot be written or pushed; the message says why and what to do."""


def closure(names: tuple[str, ...]) -> dict[str, str]:
    """{distribution name: installed version} of `names` and everything they require here (markers evaluated for
    this Python, extras followed as asked), sorted by name."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, tuple[str, str]] = {}
    todo, done = [(name, frozenset()) for name in names], set()
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if (key, extras) in done:
            continue
        done.add((key, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SpaceError(
                f"{name} is not installed here, so its version cannot be pinned: run `make install`"
            ) from None
        found[key] = (dist.metadata["Name"], dist.version)
        for line in dist.requires or []:
            req = Requirement(line)
            wanted = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in wanted):
                todo.append((req.name, frozenset(req.extras)))
    return dict(sorted(found.values(), key=lambda item: canonicalize_name(item[0])))


def requirements(backend: str) -> str:
    """requirements.txt of a Space serving `backend`: every package pinned, torch from its CPU index."""
    pins = closure(SERVING + (TORCH if backend == "transformers" else ()))
    lines = ["# written by `svwhisper space`: the packages the page imports and all they need, as installed where it"]
    lines.append("# was written and tested (Python {}.{})".format(*sys.version_info[:2]))
    if "+cpu" in pins.get("torch", ""):
        lines.append(f"--extra-index-url {TORCH_CPU_INDEX}")
    return "\n".join([*lines, *(f"{name}=={version}" for name, version in pins.items())]) + "\n"


def space_params(params: AppParams, model: str, backend: str) -> str:
    """The Space's params.yaml: the `app` block, serving `model` on 0.0.0.0:7860 (where Spaces listen)."""
    served = dataclasses.replace(params, model=model, backend=backend, host="0.0.0.0", port=7860)
    block = json.loads(json.dumps(dataclasses.asdict(served)))  # tuples -> lists, for YAML
    header = "# the page's settings (see the app block of svwhisper's params.yaml); app.py reads them\n"
    return header + yaml.safe_dump({"app": block}, sort_keys=False, allow_unicode=True)


def front_matter(model: str, license_: str) -> dict:
    repo_id, _ = parse_hub_id(model)
    description = f"Swedish speech to text: {repo_id}"
    return {
        "title": f"svwhisper: {repo_id.split('/')[1]}"[:60],
        "emoji": "🎙️",
        "colorFrom": "blue",
        "colorTo": "yellow",
        "sdk": "gradio",
        "sdk_version": metadata.version("gradio"),
        "app_file": "app.py",
        "python_version": "{}.{}".format(*sys.version_info[:2]),
        "models": [repo_id],
        "preload_from_hub": [repo_id],  # fetched into the Space's Hugging Face cache at build time
        "license": license_,
        "short_description": description if len(description) <= 60 else description[:59] + "…",
        "pinned": False,
    }


def readme(space_id: str, model: str, backend: str, license_: str, commit: str) -> str:
    meta = yaml.safe_dump(front_matter(model, license_), sort_keys=False, allow_unicode=True)
    repo_id, revision = parse_hub_id(model)
    files = f"`{CT2_SUBFOLDER}/`: its CTranslate2 int8 export" if backend == "ctranslate2" else "its weights"
    at = f" at revision `{revision}`" if revision else ""
    return (
        f"---\n{meta}---\n\n# svwhisper: Swedish speech to text\n\n"
        f"This Space serves [{repo_id}](https://huggingface.co/{repo_id}){at}"
        f" ({files}, on the {backend} backend) with the svwhisper page: microphone or upload in; transcript, timed "
        f"segments with word timings, SRT and WebVTT out. Recordings of any length are cut at Silero VAD's speech "
        f"regions and decoded with Whisper's fallback and no-speech rules.\n\n"
        f"Written by `svwhisper space {space_id} --model {model} --backend {backend}` from svwhisper {commit}. "
        f"`params.yaml` holds the page's settings; `svwhisper/` is the package's source and `requirements.txt` the "
        f"pinned packages it runs with. To update, run the command again.\n"
    )


def git_commit() -> str:
    from svwhisper.publish import git

    commit = git(ROOT, "rev-parse", "--short=12", "HEAD")
    return f"commit `{commit}`" if commit else metadata.version("svwhisper")


def copy_package(dest: Path) -> None:
    package = Path(svwhisper.__file__).resolve().parent
    for pattern in PACKAGE_FILES:
        for path in sorted(package.glob(pattern)):
            target = dest / "svwhisper" / path.relative_to(package)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def write_space(space_id: str, model: str, backend: str, out: Path, params_file: Path) -> Path:
    """The Space folder in `out` (see the module's doc)."""
    check_ids(space_id, model, backend)
    if not (ROOT / "app.py").is_file():
        raise SpaceError(f"no app.py in {ROOT}: `svwhisper space` runs from a checkout of svwhisper (`make install`)")
    try:
        params = load_params(AppParams, "app", params_file) if params_file.is_file() else AppParams()
    except ParamsError as err:
        raise SpaceError(str(err)) from None
    license_ = load_publish_license(params_file)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "app.py", out / "app.py")
    (out / "params.yaml").write_text(space_params(params, model, backend), encoding="utf-8")
    (out / "requirements.txt").write_text(requirements(backend), encoding="utf-8")
    (out / "README.md").write_text(readme(space_id, model, backend, license_, git_commit()), encoding="utf-8")
    copy_package(out)
    return out


def load_publish_license(params_file: Path) -> str:
    from svwhisper.params import PublishParams

    return load_params(PublishParams, "publish", params_file).license if params_file.is_file() else "apache-2.0"


def check_ids(space_id: str, model: str, backend: str) -> None:
    """Refuse bad ids before any network call or file is written."""
    if not is_repo_id(space_id):
        raise SpaceError(f"the Space must be owner/name (e.g. you/svwhisper-demo), got {space_id!r}")
    try:
        parse_hub_id(model)
    except ValueError:
        raise SpaceError(f"--model must be a Hub model id, owner/name[@revision], got {model!r}") from None
    if backend not in BACKENDS:
        raise SpaceError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def check_model_on_hub(api, model: str, backend: str) -> None:
    """SpaceError unless `model` is on the Hub (readable with the token) with the files `backend` needs."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    repo_id, revision = parse_hub_id(model)
    try:
        files = api.list_repo_files(repo_id, revision=revision, repo_type="model")
    except RevisionNotFoundError:
        raise SpaceError(f"{repo_id} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise SpaceError(f"no model {repo_id} on the Hub that this token can read: publish it first") from None
    except HfHubHTTPError as err:
        raise SpaceError(f"the Hub refused to list {repo_id} (HTTP {err.response.status_code})") from None
    needed = ["model.safetensors", "config.json"] if backend == "transformers" else [f"{CT2_SUBFOLDER}/model.bin"]
    if missing := [name for name in needed if name not in files]:
        hint = "`svwhisper publish` uploads it" if backend == "ctranslate2" else "is it a saved Whisper model?"
        raise SpaceError(f"{model} has no {', '.join(missing)} for the {backend} backend: {hint}")


def push(folder: Path, space_id: str, model: str, backend: str, private: bool, token: str) -> str:
    """Create the Space if needed (gradio SDK) and upload `folder`; the Space's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    check_model_on_hub(api, model, backend)
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(folder), repo_id=space_id, repo_type="space", commit_message=f"svwhisper space: {model}"
    )
    return f"https://huggingface.co/spaces/{space_id}"


def space(space_id: str, model: str, backend: str, dry_run: Path | None, private: bool, params_file: Path):
    """Write the Space to `dry_run`, or push it to `space_id`; the folder or the Space's URL."""
    from svwhisper.publish import PublishError, hub_token

    check_ids(space_id, model, backend)
    if dry_run is not None:
        return write_space(space_id, model, backend, dry_run, params_file)
    try:
        token = hub_token()  # before any work: no token, no folder
    except PublishError as err:
        raise SpaceError(str(err)) from None
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_space(space_id, model, backend, Path(tmp) / "space", params_file)
        return push(folder, space_id, model, backend, private, token)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("space_id", help="the Space, owner/name")
    parser.add_argument("--model", required=True, help="the published model it serves, owner/name[@revision]")
    parser.add_argument("--backend", choices=BACKENDS, default="ctranslate2")
    parser.add_argument("--dry-run", type=Path, metavar="DIR", help="write the Space's folder to DIR, only")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="whose app block the page takes")
    args = parser.parse_args()
    try:
        result = space(args.space_id, args.model, args.backend, args.dry_run, args.private, args.params)
    except SpaceError as err:
        sys.exit(f"space: {err}")
    if args.dry_run is not None:
        print(f"space: wrote {result} (the exact folder a push uploads); nothing uploaded")
    else:
        print(f"space: pushed {result}")


if __name__ == "__main__":
    main()
