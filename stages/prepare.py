"""prepare: a Common Voice release dir -> filtered 16 kHz splits (Parquet) + a JSON report.

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

SPLITS = ("train", "dev", "test")
MAX_LISTED = 20  # paths listed per drop reason in the report


@dataclass(frozen=True)
class PrepareParams:
    source_dir: str
    train_tsvs: tuple[str, ...] = ("train",)
    dev_tsvs: tuple[str, ...] = ("dev",)
    test_tsvs: tuple[str, ...] = ("test",)
    min_duration_s: float = 0.3
    max_duration_s: float = 30.0
    min_vote_margin: int = 0
    max_clips_per_split: int = 0

    def check(self) -> None:
        if not 0 <= self.min_duration_s < self.max_duration_s:
            raise ValueError("need 0 <= min_duration_s < max_duration_s")
        if self.max_clips_per_split < 0:
            raise ValueError("max_clips_per_split must be >= 0 (0 = all)")

    def tsvs(self, split: str) -> tuple[str, ...]:
        return {"train": self.train_tsvs, "dev": self.dev_tsvs, "test": self.test_tsvs}[split]


def select_rows(frame: pd.DataFrame, params: PrepareParams, dropped: Counter) -> pd.DataFrame:
    """Drop rows with an empty sentence or too few votes, counting each reason in `dropped`."""
    empty = frame["sentence"].str.strip() == ""
    dropped["empty_sentence"] += int(empty.sum())
    frame = frame[~empty]
    voted_down = (frame["up_votes"] - frame["down_votes"]) < params.min_vote_margin
    dropped["down_votes"] += int(voted_down.sum())
    return frame[~voted_down]


def decode_clip(clip: Path, params: PrepareParams) -> tuple[bytes | None, float, str]:
    """(FLAC bytes or None, duration in s, drop reason or "") for one clip."""
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
    return encode_flac(samples), duration, ""


def prepare_split(source: Path, split: str, params: PrepareParams) -> tuple[pd.DataFrame, dict]:
    """Read, filter and decode one split; returns its table and its report entry."""
    frame = pd.concat([read_tsv(source / f"{name}.tsv") for name in params.tsvs(split)], ignore_index=True)
    dropped, examples = Counter(), {}
    frame = select_rows(frame, params, dropped)
    if params.max_clips_per_split:
        frame = frame.iloc[: params.max_clips_per_split]
    clips = [source / "clips" / p for p in frame["path"]]
    with ThreadPoolExecutor(max_workers=2) as pool:  # libsndfile and soxr release the GIL
        decoded = list(pool.map(lambda c: decode_clip(c, params), clips))
    keep = []
    for clip, (_, _, reason) in zip(clips, decoded, strict=True):
        keep.append(not reason)
        if reason:
            dropped[reason] += 1
            examples.setdefault(reason, [])
            if len(examples[reason]) < MAX_LISTED:
                examples[reason].append(str(clip))
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
        "dropped": dict(sorted(dropped.items())),
        "dropped_examples": examples,
        "hours": round(float(out["duration_s"].sum()) / 3600, 4),
        "speakers": int(out["client_id"].nunique()),
    }
    return out, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory for {train,dev,test}.parquet")
    parser.add_argument("--report", type=Path, required=True, help="JSON report path")
    args = parser.parse_args()
    params = load_params(PrepareParams, "prepare")

    source = Path(params.source_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"source_dir": params.source_dir, "sample_rate_hz": SAMPLE_RATE, "splits": {}}
    for split in SPLITS:
        table, report["splits"][split] = prepare_split(source, split, params)
        if table.empty:
            raise SystemExit(f"prepare: split {split!r} kept no clips; see the counts above: {report['splits'][split]}")
        table.to_parquet(args.out / f"{split}.parquet", index=False)
        print(f"prepare: {split}: {report['splits'][split]['kept']} clips, {report['splits'][split]['hours']} h")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
