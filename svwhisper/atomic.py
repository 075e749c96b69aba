"""Writes that are whole or absent: a kill, a full disk or a preemption never leaves a half-written output.

Each writes into a temporary name beside the target, flushes it to disk, then renames it over
the target in one step (`os.replace`) and syncs the directory, so that the rename itself
survives a power cut. On any failure the temporary file or dir is removed and the old target,
if there was one, is untouched. The output gets the mode a plain write would give it (0666 or
0777 less the umask), not the temporary's 0600/0700. A temporary's name holds the writer's pid,
so that one left by a killed process (kill -9, a power cut) is removed by the next write of the
same target, and a live writer's never is.
"""

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and dir under `root` (and `root`) to disk."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    for path in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        fsync_dir(path)
    fsync_dir(root)


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc), else set and put back."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"^Umask:\s*([0-7]+)", status, re.M).group(1), 8)
    except (OSError, AttributeError):
        mask = os.umask(0o22)
        os.umask(mask)
        return mask


def is_running(pid: int) -> bool:
    """Whether process `pid` is running (also when it is another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_dead(folder: Path, pattern: re.Pattern) -> list[Path]:
    """Remove the files and dirs in `folder` whose whole name `pattern` matches with, as its first group, the pid of
    a process that is no longer running; the ones removed."""
    removed = []
    for entry in folder.iterdir() if folder.is_dir() else []:
        if (match := pattern.fullmatch(entry.name)) and not is_running(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def sweep_stale(target: Path) -> list[Path]:
    """Remove the temporaries of `target` left by writers that are no longer running; the ones removed."""
    return sweep_dead(target.parent, re.compile(rf"\.{re.escape(target.name)}\.(\d+)\..*\.(tmp|old)"))


def _temp_name(target: Path) -> dict:
    return {"dir": target.parent, "prefix": f".{target.name}.{os.getpid()}.", "suffix": ".tmp"}


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside `target` to write a file at; renamed to `target` when the block ends normally."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)
    fd, name = tempfile.mkstemp(**_temp_name(target))
    os.fchmod(fd, 0o666 & ~umask())
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def write_bytes_atomic(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: Path, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """A temporary dir beside `target` to fill; it replaces `target` (and whatever was there) when the block ends
    normally, and is removed when it does not."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)
    tmp = Path(tempfile.mkdtemp(**_temp_name(target)))
    tmp.chmod(0o777 & ~umask())
    try:
        yield tmp
        fsync_tree(tmp)
        old = None
        if target.exists() or target.is_symlink():
            old = Path(tempfile.mkdtemp(**{**_temp_name(target), "suffix": ".old"}))
            os.replace(target, old / "replaced")
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
