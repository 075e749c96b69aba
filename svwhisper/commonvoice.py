"""Read a Common Voice release directory: `<locale>/{train,dev,test,...}.tsv` + `clips/*.mp3`."""

import unicodedata
from pathlib import Path

import pandas as pd

REQUIRED_COLUMNS = ("client_id", "path", "sentence", "up_votes", "down_votes")


class ManifestError(ValueError):
    """A TSV that cannot be read as a Common Voice manifest; the message names file and line."""


def read_tsv(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """One Common Voice TSV -> (rows as strings, votes as ints, sentences NFC; malformed line numbers).

    Common Voice writes quote characters inside sentences unescaped, so no quoting is applied:
    a field is whatever lies between tabs. Extra columns of newer releases are kept. A row with
    the wrong number of fields is skipped and its 1-based line number returned; bad UTF-8 or a
    missing required column is an error naming the file and line.
    """
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ManifestError(f"{path}:{line}: not valid UTF-8 ({err.reason})") from None
    lines = text.split("\n")
    header = lines[0].rstrip("\r").split("\t")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(f"{path}:1: missing required column(s) {', '.join(missing)}")
    rows, malformed = [], []
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            malformed.append(number)
            continue
        rows.append(fields)
    frame = pd.DataFrame(rows, columns=header, dtype=str)
    for votes in ("up_votes", "down_votes"):
        frame[votes] = pd.to_numeric(frame[votes], errors="coerce").fillna(0).astype(int)
    frame["sentence"] = [unicodedata.normalize("NFC", s).strip() for s in frame["sentence"]]
    return frame, malformed
