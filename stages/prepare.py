"""prepare: a Common Voice release dir -> filtered 16 kHz splits (Parquet) + a JSON report.

Every clip that is dropped is counted by reason (and the first paths listed): bad rows, bad
audio and hygiene rules alike. Nothing bad stops the run; a missing column or broken encoding
does, with the file and line.

    python -m stages.prepare --out data/prepared --report reports/prepare.json
"""

import argparse
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from svwhisper.audio import SAMPLE_RATE, AudioError, encode_flac, load_audio
from svwhisper.commonvoice import read_tsv
from svwhisper.params import load_params
from svwhisper.text import normalize

SPLITS = ("train", "dev", "test")
MAX_LISTED = 20  # paths (or TSV lines) listed per drop reason in the report
ROW_GROUP_SIZE = 256  # clips per Parquet row group of the prepared splits (about 15 MB of FLAC)
DROP_REASONS = (  # every one appears in the report, with 0 where nothing was dropped
    "malformed_row",
    "empty_sentence",
    "sentence_too_long",
    "down_votes",
    "test_speaker",
    "missing_clip",
    "undecodable_clip",
    "too_short",
    "too_long",
    "chars_per_second",
)


@dataclass(frozen=True)
class PrepareParams:
    source_dir: str
    train_tsvs: tuple[str, ...] = ("train",)
    dev_tsvs: tuple[str, ...] = ("dev",)
    test_tsvs: tuple[str, ...] = ("test",)
    min_duration_s: float = 0.3
    max_duration_s: float = 30.0
    max_sentence_chars: int = 250
    min_chars_per_second: float = 2.0
    max_chars_per_second: float = 30.0
    min_vote_margin: int = 0
    drop_test_speakers_from_train: bool = False
    max_clips_per_split: int = 0

    def check(self) -> None:
        if not 0 <= self.min_duration_s < self.max_duration_s:
            raise ValueError("need 0 <= min_duration_s < max_duration_s")
        if not 0 <= self.min_chars_per_second < self.max_chars_per_second:
            raise ValueError("need 0 <= min_chars_per_second < max_chars_per_second")
        if self.max_clips_per_split < 0 or self.max_sentence_chars < 1:
            raise ValueError("max_clips_per_split must be >= 0 (0 = all) and max_sentence_chars >= 1")

    def tsvs(self, split: str) -> tuple[str, ...]:
        return {"train": self.train_tsvs, "dev": self.dev_tsvs, "test": self.test_tsvs}[split]


class DropLog:
    """Counts dropped clips by reason and keeps the first few examples of each."""

    def __init__(self):
        self.counts, self.examples = Counter(dict.fromkeys(DROP_REASONS, 0)), {}

    def add(self, reason: str, examples: list[str]) -> None:
        self.counts[reason] += len(examples)
        if examples:
            listed = self.examples.setdefault(reason, [])
            listed.extend(examples[: MAX_LISTED - len(listed)])

    def drop(self, frame: pd.DataFrame, mask, reason: str, source: Path) -> pd.DataFrame:
        """Rows of `frame` where `mask` is False; the others are logged under `reason`."""
        self.add(reason, [str(source / "clips" / p) for p in frame.loc[mask, "path"]])
        return frame[~mask]


def select_rows(frame: pd.DataFrame, params: PrepareParams, log: DropLog, source: Path) -> pd.DataFrame:
    """Rows worth decoding: a sentence that is non-empty and not too long, enough votes."""
    frame = log.drop(frame, frame["sentence"].str.strip() == "", "empty_sentence", source)
    frame = log.drop(frame, frame["sentence"].str.len() > params.max_sentence_chars, "sentence_too_long", source)
    voted_down = (frame["up_votes"] - frame["down_votes"]) < params.min_vote_margin
    return log.drop(frame, voted_down, "down_votes", source)


def decode_clip(clip: Path, sentence: str, params: PrepareParams) -> tuple[bytes | None, float, str]:
    """(FLAC bytes or None, duration in s, drop reason or "") for one clip and its sentence.

    The characters-per-second bounds also catch truncated files, which decode without error.
    """
    if not clip.exists():
        return None, 0.0, "missing_clip"
    try:
        samples = load_audio(clip)
    except AudioError:
        return None, 0.0, "undecodable_clip"
    duration = len(samples) / SAMPLE_RATE
    if duration < params.min_duration_s:
        return None, duration, "too_short"
    if duration > params.max_duration_s:
        return None, duration, "too_long"
    if not params.min_chars_per_second <= len(sentence) / duration <= params.max_chars_per_second:
        return None, duration, "chars_per_second"
    return encode_flac(samples), duration, ""


def prepare_split(
    source: Path, split: str, params: PrepareParams, excluded_speakers: frozenset[str] = frozenset()
) -> tuple[pd.DataFrame, dict]:
    """Read, filter and decode one split; returns its table and its report entry.

    Rows whose client_id is in `excluded_speakers` are dropped as "test_speaker".
    """
    log, frames = DropLog(), []
    for name in params.tsvs(split):
        frame, malformed = read_tsv(source / f"{name}.tsv")
        log.add("malformed_row", [f"{source / name}.tsv:{line}" for line in malformed])
        frames.append(frame)
    frame = select_rows(pd.concat(frames, ignore_index=True), params, log, source)
    frame = log.drop(frame, frame["client_id"].isin(excluded_speakers), "test_speaker", source)
    if params.max_clips_per_split:
        frame = frame.iloc[: params.max_clips_per_split]
    clips = [source / "clips" / p for p in frame["path"]]
    with ThreadPoolExecutor(max_workers=2) as pool:  # libsndfile and soxr release the GIL
        decoded = list(pool.map(lambda c, s: decode_clip(c, s, params), clips, frame["sentence"]))
    reasons = pd.Series([reason for _, _, reason in decoded], index=frame.index)
    for reason in sorted(set(reasons) - {""}):
        log.add(reason, [str(c) for c, r in zip(clips, reasons, strict=True) if r == reason])
    keep = (reasons == "").to_numpy()
    out = pd.DataFrame(
        {
            "id": [Path(p).stem for p in frame["path"]],
            "client_id": frame["client_id"].to_list(),
            "sentence": frame["sentence"].to_list(),
            "duration_s": [d for _, d, _ in decoded],
            "audio": [a for a, _, _ in decoded],
        }
    )[keep].reset_index(drop=True)
    report = {
        "kept": len(out),
        "dropped": dict(log.counts),
        "dropped_examples": log.examples,
        "hours": round(float(out["duration_s"].sum()) / 3600, 4),
        "speakers": int(out["client_id"].nunique()),
    }
    return out, report


def overlaps(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Sentences (normalised) and speakers that two splits share: leaks that flatter test WER."""
    out = {}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        sentences = set(map(normalize, tables[a]["sentence"])) & set(map(normalize, tables[b]["sentence"]))
        out[f"sentences_{a}_{b}"] = len(sentences)
        out[f"speakers_{a}_{b}"] = len(set(tables[a]["client_id"]) & set(tables[b]["client_id"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory for {train,dev,test}.parquet")
    parser.add_argument("--report", type=Path, required=True, help="JSON report path")
    args = parser.parse_args()
    params = load_params(PrepareParams, "prepare")

    source = Path(params.source_dir)
    report = {"source_dir": params.source_dir, "sample_rate_hz": SAMPLE_RATE, "splits": {}}
    tables = {}
    for split in ("test", "dev", "train"):  # test first: its speakers may be excluded from train
        excluded = frozenset()
        if split == "train" and params.drop_test_speakers_from_train:
            excluded = frozenset(tables["test"]["client_id"])
        tables[split], report["splits"][split] = prepare_split(source, split, params, excluded)
        print(
            f"prepare: {split}: {report['splits'][split]['kept']} clips, dropped {report['splits'][split]['dropped']}"
        )
        if tables[split].empty:
            raise SystemExit(f"prepare: split {split!r} kept no clips; see the counts above")
    report["splits"] = {split: report["splits"][split] for split in SPLITS}
    report["overlap"] = overlaps(tables)
    args.out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        # bounded row groups: featurize reads one at a time, so its memory does not grow with the split
        tables[split].to_parquet(args.out / f"{split}.parquet", index=False, row_group_size=ROW_GROUP_SIZE)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
