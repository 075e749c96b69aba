"""Where clips come from: Common Voice releases, manifests, folders and Hugging Face datasets.

Each source in `params.yaml` (`prepare.sources.<split>`) is a `Source`; `iter_clips(source)`
yields one `Clip` per row and one `BadRow` per row that cannot be read (counted, never fatal).
A file that cannot be read as a table at all (bad UTF-8, a missing required column) raises
`ManifestError` naming the file and line. Audio is not decoded here: that is prepare's job.
"""

import csv
import io
import os
import re
import stat
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from svwhisper.params import Source

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus")
CV_COLUMNS = ("client_id", "path", "sentence", "up_votes", "down_votes")
MANIFEST_COLUMNS = ("path", "sentence")


class ManifestError(ValueError):
    """A table that cannot be read as a manifest; the message names the file and line."""


@dataclass(frozen=True)
class Clip:
    """One candidate clip: its audio is not decoded yet."""

    id: str  # unique across sources: Common Voice's clip name, the file's path, or the dataset and its row
    sentence: str  # NFC, stripped
    speaker: str  # "" when the source does not say
    audio: Path | bytes  # a file, or encoded audio bytes (wav, flac, mp3, ...)
    where: str  # what the report lists if the clip is dropped
    vote_margin: int | None = None  # Common Voice up_votes - down_votes


@dataclass(frozen=True)
class BadRow:
    """A row that could not be read (wrong number of fields, bad quoting, not UTF-8, ...), as `file:line`."""

    where: str
    reason: str = "malformed_row"
    reason_text: str = ""  # what exactly was wrong, for the report's examples


# line and paragraph separators, form feeds, NUL and the other C0/C1 controls (tab is a TSV's field separator)
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text or "").strip()


def read_table(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict | BadRow]]:
    """Rows of a .tsv or .csv file as (1-based line, {column: value}), or (line, BadRow) for a row that is not one.

    Each physical line (ended by \\n, \\r\\n or \\r only: U+2028, U+0085 or a form feed inside a sentence
    do not end a row) is one row, parsed on its own: an unbalanced quote, a field over the csv module's
    limit, a wrong number of fields or bytes that are not UTF-8 cost that one row, counted with its line,
    never the rows after it. TSV is read with quoting off: Common Voice writes quote characters inside
    sentences unescaped, so a field is whatever lies between tabs. CSV uses standard quoting (sentences
    contain commas); a quoted field may not span lines. Extra columns are kept. A file whose header lacks a
    required column raises ManifestError naming the file and line.
    """
    text = Path(path).read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    csv_file = Path(path).suffix.lower() == ".csv"
    dialect = {"strict": True} if csv_file else {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    lines = io.StringIO(text, newline="")
    header = next(csv.reader([next(lines, "")], **dialect), [])
    missing = [c for c in required if c not in header]
    if missing:
        raise ManifestError(f"{path}:1: missing required column(s) {', '.join(missing)}")
    for number, line in enumerate(lines, start=2):
        if not line.rstrip("\r\n"):
            continue
        if BAD_UTF8.search(line):
            yield number, BadRow(f"{path}:{number}", reason_text="not valid UTF-8")
            continue
        try:
            fields = next(csv.reader([line], **dialect))
        except csv.Error as err:
            yield number, BadRow(f"{path}:{number}", reason_text=str(err))
            continue
        if len(fields) != len(header):
            yield number, BadRow(f"{path}:{number}", reason_text=f"{len(fields)} fields, the header has {len(header)}")
        elif any(CONTROL.search(f) for f in fields):
            yield number, BadRow(f"{path}:{number}", "control_characters", "a line break or control character")
        else:
            yield number, dict(zip(header, fields, strict=True))


BAD_UTF8 = re.compile(r"[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8


def vote_margin(row: dict) -> int | None:
    """up_votes - down_votes of a Common Voice row; None when the release left them empty (the margin is unknown,
    no vote filter applies). ValueError naming the column for anything that is not a count."""
    up, down = row["up_votes"].strip(), row["down_votes"].strip()
    if not up and not down:
        return None
    for column, value in (("up_votes", up), ("down_votes", down)):
        if not value.isdigit():
            raise ValueError(f"{column} {value[:20]!r} is not a count")
    return int(up) - int(down)


def file_id(clip: Path) -> str:
    """A clip's id from its file: the path as the params name it, normalised, without its suffix. Unique across
    sources (two folders of the same layout differ by their own path); the same file listed twice is a duplicate."""
    return Path(os.path.normpath(clip)).with_suffix("").as_posix()


def commonvoice_clips(source: Source) -> Iterator[Clip | BadRow]:
    """Rows of `<path>/<tsv>.tsv` of a Common Voice release, audio in `<path>/clips/`."""
    root = Path(source.path)
    tsv = root / f"{source.tsv}.tsv"
    for number, row in read_table(tsv, CV_COLUMNS):
        if isinstance(row, BadRow):
            yield row
            continue
        try:
            margin = vote_margin(row)
        except ValueError as err:
            yield BadRow(f"{tsv}:{number}", reason_text=str(err))
            continue
        clip = root / "clips" / row["path"]
        yield Clip(Path(row["path"]).stem, nfc(row["sentence"]), row["client_id"], clip, str(clip), margin)


def manifest_clips(source: Source) -> Iterator[Clip | BadRow]:
    """Rows of a `path`,`sentence` CSV/TSV (optional `speaker`); paths relative to the manifest's dir."""
    manifest = Path(source.path)
    for _, row in read_table(manifest, MANIFEST_COLUMNS):
        if isinstance(row, BadRow):
            yield row
            continue
        clip = manifest.parent / row["path"]
        yield Clip(file_id(clip), nfc(row["sentence"]), row.get("speaker", ""), clip, str(clip))


MAX_TRANSCRIPT_BYTES = 64 * 1024  # a transcript file's size limit: hundreds of sentences, never a whole disk


def read_transcript(path: Path, root: Path) -> str | BadRow:
    """The text of a folder source's transcript file, or why it is not read: a file that resolves outside the
    source's `root` (a symlink to a token, `..`) is outside_data; one that is not a regular file (a FIFO would
    block, /dev/zero never ends) or over MAX_TRANSCRIPT_BYTES is unreadable_transcript."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        return BadRow(str(path), "outside_data", "resolves outside the source's folder")
    try:
        fd = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting for a writer
    except OSError as err:
        return BadRow(str(path), "unreadable_transcript", err.strerror or str(err))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # fstat: what was opened, not what is there now
            return BadRow(str(path), "unreadable_transcript", "not a regular file")
        data = handle.read(MAX_TRANSCRIPT_BYTES + 1)
    if len(data) > MAX_TRANSCRIPT_BYTES:
        return BadRow(str(path), "unreadable_transcript", f"larger than {MAX_TRANSCRIPT_BYTES} bytes")
    return data.decode("utf-8", errors="replace")


def folder_clips(source: Source) -> Iterator[Clip | BadRow]:
    """Audio files under a dir, each with its transcript in a `.txt` file of the same stem beside it.

    A clip in a subfolder is attributed to a speaker named after that subfolder.
    """
    root = Path(source.path)
    if not root.is_dir():
        raise ManifestError(f"{root}: folder source is not a directory")
    for clip in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        transcript = clip.with_suffix(".txt")
        if not transcript.exists():
            yield BadRow(str(clip), "missing_transcript")
            continue
        text = read_transcript(transcript, root)
        if isinstance(text, BadRow):
            yield text
            continue
        relative = clip.relative_to(root)
        speaker = relative.parts[0] if len(relative.parts) > 1 else ""
        # a transcript file may wrap its text over lines: any whitespace run is one space
        sentence = nfc(" ".join(text.split()))
        if CONTROL.search(sentence):
            yield BadRow(str(transcript), "control_characters", "a line break or control character")
            continue
        yield Clip(file_id(clip), sentence, speaker, clip, str(clip))


def hf_clips(source: Source) -> Iterator[Clip | BadRow]:
    """Rows of a Hugging Face dataset (hub id, or a file builder such as parquet over local files).

    Audio is read undecoded ({bytes, path}) so that prepare decodes it like every other source,
    without torchcodec/FFmpeg.
    """
    from datasets import Audio, load_dataset  # heavy: only when an hf source is used

    where = source.describe()
    dataset = load_dataset(
        source.name,
        source.config or None,
        split=source.split,
        data_files=source.path or None,
        revision=source.revision or None,
        streaming=source.streaming,
    )
    columns = dataset.features or {}
    for column in (source.audio_column, source.text_column, source.speaker_column):
        if column and column not in columns:
            raise ManifestError(f"{where}: no column {column!r} (columns: {', '.join(columns)})")
    if isinstance(columns[source.audio_column], Audio):
        dataset = dataset.cast_column(source.audio_column, Audio(decode=False))
    for index, row in enumerate(dataset):
        audio = row[source.audio_column]
        stored = audio.get("bytes") or audio.get("path") if isinstance(audio, dict) else audio
        if not stored:
            yield BadRow(f"{where}#{index}", "missing_clip")
            continue
        speaker = str(row[source.speaker_column] or "") if source.speaker_column else ""
        clip_id = f"{where.removeprefix('hf:')}#{index:08d}"  # unique across sources, even of the same layout
        audio_ref = stored if isinstance(stored, bytes) else Path(stored)
        sentence = nfc(str(row[source.text_column] or ""))
        if CONTROL.search(sentence):
            yield BadRow(f"{where}#{index}", "control_characters", "a line break or control character")
            continue
        yield Clip(clip_id, sentence, speaker, audio_ref, f"{where}#{index}")


def iter_clips(source: Source) -> Iterator[Clip | BadRow]:
    """Every row of `source`, in its own order (deterministic for files and pinned datasets)."""
    readers = {"commonvoice": commonvoice_clips, "manifest": manifest_clips, "folder": folder_clips, "hf": hf_clips}
    return readers[source.kind](source)
