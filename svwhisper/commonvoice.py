"""Read a Common Voice release directory: `<locale>/{train,dev,test,...}.tsv` + `clips/*.mp3`."""

import csv
import unicodedata
from pathlib import Path

import pandas as pd

REQUIRED_COLUMNS = ("client_id", "path", "sentence", "up_votes", "down_votes")


class ManifestError(ValueError):
    """A TSV that cannot be read as a Common Voice manifest; the message names file and line."""


def read_tsv(path: Path) -> pd.DataFrame:
    """One Common Voice TSV as a DataFrame of strings (votes as ints), sentences NFC-normalised.

    Common Voice writes quote characters inside sentences unescaped, so quoting is off.
    Extra columns of newer releases are kept; a missing required column is an error.
    """
    try:
        frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path}:{_first_undecodable_line(path)}: not valid UTF-8 ({err.reason})") from None
    except pd.errors.ParserError as err:
        raise ManifestError(f"{path}: {err}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(f"{path}:1: missing required column(s) {', '.join(missing)}")
    for votes in ("up_votes", "down_votes"):
        frame[votes] = pd.to_numeric(frame[votes], errors="coerce").fillna(0).astype(int)
    frame["sentence"] = [unicodedata.normalize("NFC", s).strip() for s in frame["sentence"]]
    return frame


def _first_undecodable_line(path: Path) -> int:
    """1-based number of the first line that is not UTF-8 (pandas' offsets are per read chunk)."""
    for number, line in enumerate(Path(path).read_bytes().split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return number
    return 0
