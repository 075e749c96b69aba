"""The DVC remote: a reachability check that cannot hang, checkpoints mirrored while training, and their fetch.

    python -m svwhisper.remote check [-r NAME]   # says what is missing (credentials, folder id, sharing), exit 1
    python -m svwhisper.remote push [-r NAME]    # the check, then `dvc push`
    python -m svwhisper.remote pull [-r NAME]    # `dvc pull`, then this run's pushed checkpoints: `dvc repro` resumes

Feature archives and models are DVC outs: `dvc push` sends them. Checkpoints are not (DVC 3 deletes
a stage's outs before it runs, see svwhisper.checkpoints), so the train stage mirrors each complete
checkpoint to `<remote>/checkpoints/<fingerprint>/checkpoint-N/` from a background thread (files
first, the COMPLETE marker last; checkpoints the Trainer rotated away are removed there too), and
`pull` fetches the complete ones of the run that params.yaml and the pulled inputs describe. Any
DVC remote works: the same filesystem DVC uses for the remote does the copying.

Google Drive can hang: without saved credentials pydrive2 opens a browser sign-in and waits. So
for a gdrive remote the credentials are checked on disk first, and nothing that could open a
browser is called unless they are there; every network call the train stage waits for runs under
a timeout (the check, and the whole fetch before step 0), and messages never show a URL's user,
password or query.
"""

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse, urlsplit, urlunsplit

from transformers import TrainerCallback

from svwhisper.checkpoints import COMPLETE, checkpoints_in, is_complete, resumable, step_of
from svwhisper.params import RemoteParams

CHECKPOINTS = "checkpoints"  # top folder of the mirrored checkpoints on the remote, beside DVC's files/
SETUP = "see docs/remote.md"


class RemoteError(Exception):
    """The remote cannot be used; the message says what is missing."""


def shown_url(url: str) -> str:
    """`url` as a message may show it: no user, password, query or fragment (`s3://key:secret@bucket` or
    `https://host/path?token=...` would put a secret in a log)."""
    parts = urlsplit(url)
    if not parts.netloc:
        return url.split("?")[0]
    host = parts.netloc.rsplit("@", 1)[-1]  # as written: a Drive folder id is case-sensitive
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def load_config(repo: Path):
    from dvc.config import Config

    return Config(dvc_dir=str(Path(repo) / ".dvc"))


def remote_section(config, name: str = "") -> tuple[str, dict]:
    """(name, settings) of remote `name`, or of the default remote when `name` is ""."""
    name = name or config["core"].get("remote", "")
    if not name:
        raise RemoteError(f"no DVC remote configured: add one with `dvc remote add -d <name> <url>` ({SETUP})")
    if name not in config["remote"]:
        known = ", ".join(config["remote"]) or "none"
        raise RemoteError(f"no DVC remote named {name!r} in .dvc/config or .dvc/config.local (known: {known})")
    return name, dict(config["remote"][name])


def gdrive_user_credentials(settings: dict) -> Path:
    """Where pydrive2 keeps (and looks for) the OAuth sign-in of the remote's client id."""
    if settings.get("gdrive_user_credentials_file"):
        return Path(settings["gdrive_user_credentials_file"]).expanduser()
    import appdirs

    cache = Path(appdirs.user_cache_dir("pydrive2fs", appauthor=False)) / settings["gdrive_client_id"]
    return cache / f"{settings.get('profile') or 'default'}.json"


def gdrive_problem(name: str, settings: dict, environ=os.environ) -> str:
    """What keeps gdrive remote `name` from working without a browser, read from config and disk only; else ""."""
    url = settings["url"]
    if not urlparse(url).netloc:
        return f"remote {name} ({shown_url(url)}) has no folder id: the URL is gdrive://<folder id>[/path] ({SETUP})"
    fix = f"dvc remote modify --local {name}"
    from_env = environ.get("GDRIVE_CREDENTIALS_DATA", "")
    if settings.get("gdrive_use_service_account"):
        key_path = settings.get("gdrive_service_account_json_file_path")
        if from_env:
            text, where = from_env, "GDRIVE_CREDENTIALS_DATA"
        elif key_path:
            if not Path(key_path).expanduser().is_file():
                return f"remote {name}: no service account key at {key_path} (gdrive_service_account_json_file_path)"
            text, where = Path(key_path).expanduser().read_text(encoding="utf-8"), key_path
        else:
            return (
                f"remote {name} uses a service account but has no key: `{fix} gdrive_service_account_json_file_path "
                f"<key.json>`, or put the key's JSON in GDRIVE_CREDENTIALS_DATA ({SETUP})"
            )
        try:
            key = json.loads(text)
        except ValueError:
            return f"remote {name}: {where} is not JSON; a service account key from Google Cloud is"
        if not isinstance(key, dict) or key.get("type") != "service_account" or not key.get("client_email"):
            return f"remote {name}: {where} is not a service account key (needs type service_account, client_email)"
        return ""
    if not (settings.get("gdrive_client_id") and settings.get("gdrive_client_secret")):
        return (
            f"remote {name} has no OAuth client of its own, and Google blocks DVC's built-in one: create an OAuth "
            f"client (Desktop app) in Google Cloud, then `{fix} gdrive_client_id <id>` and `{fix} "
            f"gdrive_client_secret <secret>`; or use a service account ({SETUP})"
        )
    if from_env:
        return ""  # the saved sign-in itself, as CI passes it
    saved = gdrive_user_credentials(settings)
    if not saved.is_file():
        return (
            f"remote {name}: not signed in to Google Drive ({saved} does not exist): run `dvc push` once in a "
            f"terminal on a machine with a browser to sign in, or use a service account; this check never opens "
            f"a browser ({SETUP})"
        )
    return ""


def open_fs(config, name: str):
    """(DVC's filesystem for remote `name`, the remote's root path on it)."""
    from dvc.fs import get_cloud_fs

    cls, settings, path = get_cloud_fs(config, name=name)
    return cls(**settings), path


def probe(fs, path: str, url: str, name: str) -> str:
    """One look at the remote over the network: "" when it answers and can be used."""
    if fs.protocol == "local":
        existing = Path(path)
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not os.access(existing, os.W_OK):
            return f"remote {name}: {existing} (on the way to {path}) is not writable"
        return ""
    if fs.protocol == "gdrive":
        folder = path.split("/")[0]
        try:
            fs.ls(folder)
        except FileNotFoundError:
            return (
                f"remote {name}: folder {folder} not found with these credentials: check the folder id in {url} "
                f"and that the folder is shared with the account (a service account: a Shared Drive it is a member of)"
            )
        return ""
    fs.exists(path)
    return ""


def in_thread(work, timeout: float) -> list:
    """[work()'s result, or the exception it raised], or [] when it takes longer than `timeout` seconds (it is left
    behind in a daemon thread)."""
    answer: list = []

    def target():
        try:
            answer.append(work())
        except Exception as err:  # every failure of a remote is an answer to report, not a crash
            answer.append(err)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout)
    return answer


def with_timeout(work, timeout: float, late: str) -> str:
    """work()'s answer, or `late` if it takes longer than `timeout` seconds, or what it raised, as a line."""
    answer = in_thread(work, timeout)
    if not answer:
        return late
    if isinstance(err := answer[0], Exception):
        cause = f" ({err.__cause__})" if err.__cause__ else ""
        return f"{type(err).__name__}: {err}{cause}"
    return answer[0]


def connect(repo: Path, name: str = "", timeout: float = 60.0) -> tuple[str, object, str]:
    """(remote name, DVC's filesystem for it, its root path) once the remote has answered; never takes much over
    `timeout`. RemoteError names what is missing otherwise."""
    config = load_config(repo)
    name, settings = remote_section(config, name)
    url = settings["url"]
    shown = shown_url(url)
    if url.startswith("gdrive://") and (problem := gdrive_problem(name, settings)):
        raise RemoteError(problem)
    opened = []

    def look() -> str:
        opened.append(open_fs(config, name))
        return probe(*opened[0], shown, name)

    problem = with_timeout(
        look, timeout, f"remote {name} ({shown}) did not answer within {timeout:g} s: check the network and proxy"
    )
    if problem:  # ours starts with the remote's name; the text of an exception gets it put in front
        problem = problem.replace(url, shown)
        raise RemoteError(problem if problem.startswith(f"remote {name}") else f"remote {name} ({shown}): {problem}")
    return name, *opened[0]


class CheckpointStore:
    """`<remote root>/checkpoints/<fingerprint>/checkpoint-N/` on a DVC remote's filesystem."""

    def __init__(self, fs, root: str, fingerprint: str):
        self.fs, self.run = fs, fs.join(root, CHECKPOINTS, fingerprint)

    @classmethod
    def open(cls, repo: Path, name: str, fingerprint: str, timeout: float) -> "CheckpointStore":
        _, fs, root = connect(repo, name, timeout)
        return cls(fs, root, fingerprint)

    def names(self) -> dict[str, bool]:
        """{checkpoint dir name: complete?} of what the remote holds for this run."""
        try:
            found = self.fs.ls(self.run, detail=False)
        except FileNotFoundError:
            return {}
        dirs = [p.rstrip("/").rsplit("/", 1)[-1] for p in found]
        return {d: self.fs.exists(self.fs.join(self.run, d, COMPLETE)) for d in dirs if step_of(Path(d)) >= 0}

    def upload(self, checkpoint: Path) -> None:
        """Copy `checkpoint` there, the marker last; on a failure (the Trainer rotated it away mid-upload, the
        network) the partial copy is removed, or left unmarked for the next sync to reclaim."""
        target = self.fs.join(self.run, checkpoint.name)
        files = sorted(p for p in checkpoint.rglob("*") if p.is_file() and p.name != COMPLETE)
        try:
            for path in [*files, checkpoint / COMPLETE]:  # the marker last: a cut-off upload is never taken
                remote = self.fs.join(target, *path.relative_to(checkpoint).parts)
                self.fs.makedirs(self.fs.parent(remote), exist_ok=True)
                self.fs.put_file(str(path), remote)
        except BaseException:
            try:
                self.remove(checkpoint.name)
            except Exception:  # noqa: BLE001 (the upload's own error is the one to report)
                pass
            raise

    def remove(self, name: str) -> None:
        marker = self.fs.join(self.run, name, COMPLETE)
        if self.fs.exists(marker):
            self.fs.rm(marker)  # first, so that the rest is never taken for a complete checkpoint
        self.fs.rm(self.fs.join(self.run, name), recursive=True)

    def download(self, name: str, run_dir: Path, cancelled: threading.Event | None = None) -> Path:
        """Fetch checkpoint `name` into `run_dir`. Every remote file name is checked first: one that would land
        outside the checkpoint's dir (`..`, an absolute or empty part) is a RemoteError and nothing is written.
        The files go to a hidden dir that is renamed into place once all are there, unless `cancelled` is set
        by then (a fetch given up on must not change the run dir under the training that went on without it)."""
        if step_of(Path(name)) < 0:
            raise RemoteError(f"{name!r} is not a checkpoint name (checkpoint-<step>)")
        source, dest = self.fs.join(self.run, name), run_dir / f".{name}.fetching"
        files = [p for p in self.fs.find(source) if not p.endswith(f"/{COMPLETE}")]
        targets = []
        for remote in [*files, self.fs.join(source, COMPLETE)]:  # the marker last, as on upload
            if not remote.startswith(source.rstrip("/") + "/"):
                raise RemoteError(f"remote file {remote} is not inside {source}: nothing fetched")
            parts = remote[len(source) :].strip("/").split("/")
            if any(part in ("", ".", "..") or "\\" in part or ":" in part for part in parts):
                raise RemoteError(f"remote file {remote} would be written outside {dest}: nothing fetched")
            targets.append((remote, dest.joinpath(*parts)))
        shutil.rmtree(dest, ignore_errors=True)
        try:
            for remote, local in targets:
                if cancelled is not None and cancelled.is_set():
                    raise RemoteError(f"fetching {name} was given up")
                local.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(remote, str(local))
            if cancelled is not None and cancelled.is_set():
                raise RemoteError(f"fetching {name} was given up")
            shutil.rmtree(run_dir / name, ignore_errors=True)  # a local copy of it cut off before its marker
            os.replace(dest, run_dir / name)
        finally:
            shutil.rmtree(dest, ignore_errors=True)
        return run_dir / name


class CheckpointMirror(TrainerCallback):
    """Mirrors the complete checkpoints of `run_dir` to the remote from a background thread.

    Each save (after MarkComplete) asks for one sync; syncs asked for while one runs fold into one.
    A sync uploads the complete local checkpoints the remote lacks, newest first, then makes the
    remote hold what the run dir holds: every remote checkpoint at or below the newest local step
    that is not complete here is removed, whoever uploaded it (this run's rotated-away ones, an
    upload cut off mid-way, those of an earlier process of the same run that this one resumed
    from), except the best checkpoint the newest local one names. A checkpoint above the newest
    local step is never touched: another machine may be ahead on the same run. Training never
    waits for it, except for the last sync at the end, which `close` bounds. Any failure (no remote,
    expired credentials, a failed upload) is printed once, later ones are counted, and training goes on.
    """

    def __init__(self, repo: Path, params: RemoteParams, run_dir: Path, fingerprint: str, opener=None):
        self.repo, self.params, self.run_dir, self.fingerprint = Path(repo), params, Path(run_dir), fingerprint
        self.opener = opener or (
            lambda: CheckpointStore.open(self.repo, params.name, fingerprint, params.check_timeout_s)
        )
        self.requests: queue.Queue = queue.Queue()
        self.store: CheckpointStore | None = None
        self.failures = 0
        self.worker = threading.Thread(target=self._work, name="checkpoint-mirror", daemon=True)
        self.worker.start()

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.requests.put("sync")

    def close(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` s for the syncs asked for so far; False (and a line saying so) when they did not end."""
        self.requests.put(None)
        self.worker.join(timeout)
        if self.failures > 1:
            print(f"train: {self.failures} checkpoint pushes failed in all (the first is reported above)")
        if self.worker.is_alive():
            print(
                f"train: the checkpoint upload did not finish within {timeout:g} s; the remote may lack the newest "
                f"checkpoint (all of them stay in {self.run_dir})"
            )
            return False
        return True

    def _report(self, err: BaseException) -> None:
        self.failures += 1
        if self.failures == 1:
            print(f"train: could not push checkpoints ({type(err).__name__}: {err}); training goes on")

    def _work(self) -> None:
        try:
            self.store = self.opener()
            print(f"train: mirroring checkpoints to {self.store.run}")
        except RemoteError as err:
            print(f"train: checkpoints stay local ({err})")
        except Exception as err:  # noqa: BLE001 (whatever the remote's library raises: report, train on)
            self._report(err)
        while True:
            request = self.requests.get()
            pending = [request]
            while not self.requests.empty():
                pending.append(self.requests.get_nowait())
            if self.store is not None and "sync" in pending:
                try:
                    self._sync()
                except Exception as err:  # noqa: BLE001 (pydrive2/oauth errors are not OSError; the next sync retries)
                    self._report(err)
            if None in pending:
                return

    def _sync(self) -> None:
        complete = checkpoints_in(self.run_dir)[0]
        local = {p.name for p in complete}
        newest_local = step_of(complete[-1]) if complete else -1
        keep = best_of(complete[-1]) if complete else None
        remote = self.store.names()
        for name in sorted(local - {n for n, done in remote.items() if done}, key=lambda n: -step_of(Path(n))):
            if (self.run_dir / name).is_dir():  # the Trainer may have rotated it away since
                self.store.upload(self.run_dir / name)
                print(f"train: pushed {name} to {self.store.run}")
        for name in set(remote) - local - {keep}:
            if step_of(Path(name)) <= newest_local:
                self.store.remove(name)


def best_of(checkpoint: Path) -> str | None:
    """The name of the best checkpoint so far (by dev WER) that `checkpoint`'s trainer state names, if any."""
    try:
        best = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8")).get("best_model_checkpoint")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(best).name if isinstance(best, str) and step_of(Path(Path(best).name)) >= 0 else None


def resume_from_remote(store: CheckpointStore, run_dir: Path, cancelled: threading.Event | None = None) -> Path | None:
    """Before step 0: download the newest complete checkpoint `store` holds when it is newer than any in `run_dir`
    (a run preempted on another machine goes on here), and the best checkpoint it names, so that the end of
    training loads the same best model an uninterrupted run would; the newest checkpoint fetched, or None."""
    newest = resumable(run_dir)[0]
    local_step = step_of(newest) if newest else -1
    complete = {n for n, done in store.names().items() if done}
    newer = [n for n in complete if step_of(Path(n)) > local_step]
    if not newer:
        return None
    fetched = store.download(max(newer, key=lambda n: step_of(Path(n))), run_dir, cancelled)
    best = best_of(fetched)
    if best and best != fetched.name and best in complete and not is_complete(run_dir / best):
        store.download(best, run_dir, cancelled)
        print(f"train: fetched {best} too: the best checkpoint so far")
    return fetched


def fetch_run_from_remote(
    repo: Path, params: RemoteParams, run_dir: Path, fingerprint: str, opener=None
) -> Path | None:
    """resume_from_remote on the configured remote, saying what it did, within `params.fetch_timeout_s` in all:
    past it (a stalled connection) training starts from what is local, and the fetch left behind changes
    nothing. A remote that cannot be used is reported. The checkpoint fetched, or None."""
    opener = opener or (lambda: CheckpointStore.open(repo, params.name, fingerprint, params.check_timeout_s))
    cancelled = threading.Event()

    def fetch():
        store = opener()
        return store, resume_from_remote(store, run_dir, cancelled)

    answer = in_thread(fetch, params.fetch_timeout_s)
    if not answer:
        cancelled.set()
        print(f"train: no checkpoints fetched from the remote (no answer within {params.fetch_timeout_s:g} s)")
        return None
    if isinstance(err := answer[0], Exception):  # a remote that fails must not stop training from its local state
        reason = str(err) if isinstance(err, RemoteError) else f"{type(err).__name__}: {err}"
        print(f"train: no checkpoints fetched from the remote ({reason})")
        return None
    store, fetched = answer[0]
    if fetched is not None:
        print(f"train: fetched {fetched.name} of this run from {store.run}: newer than any here")
    return fetched


def pull_checkpoints(store: CheckpointStore, run_dir: Path, cancelled: threading.Event | None = None) -> list[Path]:
    """Download the complete checkpoints `store` holds that `run_dir` lacks, oldest first; the ones fetched. Once
    `cancelled` is set, nothing more is renamed into `run_dir`."""
    have = {p.name for p in checkpoints_in(run_dir)[0]}
    wanted = sorted((n for n, done in store.names().items() if done and n not in have), key=lambda n: step_of(Path(n)))
    return [store.download(name, run_dir, cancelled) for name in wanted]


def pull_within(store: CheckpointStore, run_dir: Path, timeout: float) -> list[Path]:
    """pull_checkpoints, listing and downloads included, within `timeout` seconds: RemoteError past it (a
    connection that stalls after it was made), with nothing half-fetched left in `run_dir`."""
    cancelled = threading.Event()
    answer = in_thread(lambda: pull_checkpoints(store, run_dir, cancelled), timeout)
    if not answer:
        cancelled.set()
        raise RemoteError(f"the remote stopped answering: no checkpoints pulled within {timeout:g} s")
    if isinstance(err := answer[0], Exception):
        raise err
    return answer[0]


def run_of(repo: Path) -> tuple[Path, str]:
    """(checkpoint dir, fingerprint) of the train run that params.yaml and the inputs on disk describe."""
    from svwhisper.checkpoints import run_fingerprint
    from svwhisper.paramfile import load_params
    from svwhisper.params import Paths, TrainParams

    paths = load_params(Paths, "paths", repo / "params.yaml")
    train = load_params(TrainParams, "train", repo / "params.yaml")
    inputs = [repo / paths.base_model, repo / paths.features]
    for path in inputs:
        if not path.exists():
            raise RemoteError(
                f"{path.relative_to(repo)} is missing, so this run's checkpoints cannot be named: `dvc pull` found no "
                f"copy; `dvc repro featurize` rebuilds it (same bytes, same run), then run this again"
            )
    digest = run_fingerprint(train, inputs)
    return repo / paths.checkpoints / digest, digest


def main() -> None:
    from svwhisper.paramfile import load_params

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("check", "push", "pull"))
    parser.add_argument("-r", "--remote", default=None, help="remote name (default: params remote.name, else DVC's)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds (default: remote.check_timeout_s)")
    args = parser.parse_args()
    repo = Path.cwd()
    params = load_params(RemoteParams, "remote", repo / "params.yaml")
    name, timeout = args.remote if args.remote is not None else params.name, args.timeout or params.check_timeout_s
    try:
        name, fs, root = connect(repo, name, timeout)
    except RemoteError as err:
        sys.exit(str(err) if str(err).startswith("remote ") else f"remote: {err}")
    print(f"remote: {name} is reachable")
    if args.action == "check":
        return
    dvc = [sys.executable, "-m", "dvc", args.action, "-r", name]
    done = subprocess.run([*dvc, "--allow-missing"] if args.action == "pull" else dvc, cwd=repo)
    if args.action == "push":
        sys.exit(done.returncode)
    try:
        run_dir, digest = run_of(repo)
    except RemoteError as err:
        sys.exit(f"remote: {err}")
    try:
        fetched = pull_within(CheckpointStore(fs, root, digest), run_dir, params.fetch_timeout_s)
    except RemoteError as err:
        sys.exit(f"remote: {err}")
    newest = resumable(run_dir)[0]
    if newest is None:
        print(f"remote: no checkpoints of run {digest} on {name} (if the train stage runs, it starts at step 0)")
    else:
        resumes = f"`dvc repro` resumes from {newest} (step {step_of(newest)})"
        print(f"remote: pulled {len(fetched)} checkpoint(s) of run {digest}; {resumes}")
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
