"""Reading, filtering and decoding the clips of a split (the prepare stage's work): every clip kept or counted under
a reason, written a Parquet row group at a time, whole or not at all."""

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from svwhisper.atomic import atomic_path
from svwhisper.audio import SAMPLE_RATE, AudioTooLong, encode_flac, load_audio
from svwhisper.params import PrepareParams, Source
from svwhisper.sources import BadRow, Clip, iter_clips
from svwhisper.text import normalize

MAX_LISTED = 20  # paths (or TSV lines) listed per drop reason in the report
MAX_DETAIL = 200  # characters of a decoder's error message kept beside its clip's path
ROW_GROUP_SIZE = 256  # clips per Parquet row group of the prepared splits (about 15 MB of FLAC)
DROP_REASONS = (  # every one appears in the report, with 0 where nothing was dropped
    "malformed_row",
    "control_characters",
    "missing_transcript",
    "unreadable_transcript",
    "empty_sentence",
    "sentence_too_long",
    "down_votes",
    "duplicate_clip",
    "test_speaker",
    "outside_data",
    "missing_clip",
    "undecodable_clip",
    "too_short",
    "too_long",
    "chars_per_second",
    "outside_subset",
)
SCHEMA = pa.schema(
    [("id", pa.string()), ("client_id", pa.string()), ("sentence", pa.string()), ("duration_s", pa.float64()),
     ("audio", pa.binary())]
)  # fmt: skip


class DropLog:
    """Counts the rows read and the dropped clips by reason, and keeps the first few examples of each reason."""

    def __init__(self):
        self.counts, self.examples, self.rows = Counter(dict.fromkeys(DROP_REASONS, 0)), {}, 0

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        listed = self.examples.setdefault(reason, [])
        if len(listed) < MAX_LISTED:
            listed.append(where)


def row_problem(clip: Clip, params: PrepareParams, excluded_speakers: frozenset[str]) -> str:
    """Why a clip is not worth decoding ("" = it is): its sentence, votes or speaker."""
    if not clip.sentence:
        return "empty_sentence"
    if len(clip.sentence) > params.max_sentence_chars:
        return "sentence_too_long"
    if clip.vote_margin is not None and clip.vote_margin < params.min_vote_margin:
        return "down_votes"
    if clip.speaker and clip.speaker in excluded_speakers:
        return "test_speaker"
    return ""


def in_subset(clip_id: str, fraction: float, seed: int) -> bool:
    """Whether the clip is in the seeded `fraction` of its split: a hash of (seed, id), so a clip's place does
    not depend on the order or number of the others, and a smaller share's clips lie inside a larger one's."""
    if fraction >= 1:
        return True
    digest = hashlib.sha256(f"{seed}:{clip_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") < fraction * 2**64


def decode_clip(clip: Path | bytes, sentence: str, params: PrepareParams) -> tuple[bytes | None, float, str, str]:
    """(FLAC bytes or None, duration in s, drop reason or "", what went wrong) for one clip and its sentence.

    The characters-per-second bounds also catch truncated files, which decode without error.
    """
    if isinstance(clip, Path) and not clip.is_file():
        return None, 0.0, "missing_clip", ""
    try:
        samples = load_audio(clip, max_duration_s=params.max_duration_s)  # a long file is refused undecoded
    except AudioTooLong as err:
        return None, err.duration_s or params.max_duration_s, "too_long", ""
    except Exception as err:  # noqa: BLE001 (AudioError, or anything a corrupt file makes a decoder raise: count, go on)
        return None, 0.0, "undecodable_clip", (str(err) or type(err).__name__)[:MAX_DETAIL]
    duration = len(samples) / SAMPLE_RATE
    if duration < params.min_duration_s:
        return None, duration, "too_short", ""
    if duration > params.max_duration_s:
        return None, duration, "too_long", ""
    if not params.min_chars_per_second <= len(sentence) / duration <= params.max_chars_per_second:
        return None, duration, "chars_per_second", f"{len(sentence) / duration:.1f} characters a second"
    return encode_flac(samples), duration, "", ""


def allowed_roots(source: Source, params: PrepareParams) -> list[Path]:
    """Where the audio files of `source` may lie: inside local_data; for a hub dataset also the datasets cache."""
    roots = [Path(params.local_data).resolve()]
    if source.kind == "hf":
        from datasets.config import HF_DATASETS_CACHE
        from huggingface_hub.constants import HF_HUB_CACHE

        roots += [Path(HF_DATASETS_CACHE).resolve(), Path(HF_HUB_CACHE).resolve()]
    return roots


def outside(clip: Clip, roots: list[Path]) -> bool:
    """Whether the clip's file, with `..` and symlinks resolved, lies outside every one of `roots`."""
    if not isinstance(clip.audio, Path):
        return False
    resolved = clip.audio.resolve()
    return not any(resolved.is_relative_to(root) for root in roots)


def candidates(
    sources: Iterable[Source],
    params: PrepareParams,
    log: DropLog,
    excluded_speakers: frozenset[str],
    fraction: float = 1.0,
) -> Iterator[Clip]:
    """Clips of all `sources` that pass the row rules (each id once), logging the others.

    A clip whose file resolves outside local_data (`..`, an absolute path, a symlink pointing out) is
    never read: dropped as outside_data.
    """
    seen: set[str] = set()
    for source in sources:
        roots = allowed_roots(source, params)
        for item in iter_clips(source):
            log.rows += 1
            if isinstance(item, BadRow):
                log.add(item.reason, f"{item.where} ({item.reason_text})" if item.reason_text else item.where)
                continue
            if outside(item, roots):
                log.add("outside_data", item.where)
                continue
            reason = row_problem(item, params, excluded_speakers) or ("duplicate_clip" if item.id in seen else "")
            if not reason and not in_subset(item.id, fraction, params.subset_seed):
                reason = "outside_subset"  # undecoded: a learning-curve share costs only its own clips
            if reason:
                log.add(reason, item.where)
                continue
            seen.add(item.id)
            yield item


def prepare_split(
    sources: Iterable[Source],
    params: PrepareParams,
    out: Path,
    excluded_speakers: frozenset[str] = frozenset(),
    fraction: float = 1.0,
) -> tuple[pd.DataFrame, dict]:
    """Read, filter and decode the clips of one split's `sources` into the Parquet file `out`.

    Returns the kept clips' metadata (no audio) and the split's report entry. Clips by a
    speaker in `excluded_speakers` are dropped as "test_speaker"; clips outside the seeded `fraction`
    (`in_subset`) as "outside_subset".
    """
    log, kept, buffer = DropLog(), [], []
    clips = candidates(sources, params, log, excluded_speakers, fraction)
    if params.max_clips_per_split:
        clips = islice(clips, params.max_clips_per_split)
    with (
        atomic_path(out) as partial,  # out appears whole or not at all
        pq.ParquetWriter(partial, SCHEMA) as writer,
        ThreadPoolExecutor(max_workers=params.decode_threads) as pool,
    ):
        while chunk := list(islice(clips, ROW_GROUP_SIZE)):
            for clip, (audio, duration, reason, detail) in zip(
                chunk, pool.map(lambda c: decode_clip(c.audio, c.sentence, params), chunk), strict=True
            ):
                if reason:
                    log.add(reason, f"{clip.where} ({detail})" if detail else clip.where)
                    continue
                buffer.append((clip.id, clip.speaker, clip.sentence, duration, audio))
                kept.append((clip.id, clip.speaker, clip.sentence, duration))
            # full row groups only (and one last partial): featurize reads one group at a time
            while len(buffer) >= ROW_GROUP_SIZE:
                writer.write_table(_table(buffer[:ROW_GROUP_SIZE]))
                buffer = buffer[ROW_GROUP_SIZE:]
        if buffer:
            writer.write_table(_table(buffer))
    meta = pd.DataFrame(kept, columns=["id", "client_id", "sentence", "duration_s"])
    report = {
        "rows": log.rows,  # rows read from the sources: kept + every dropped count
        "kept": len(meta),
        "dropped": dict(log.counts),
        "dropped_examples": log.examples,
        "hours": round(float(meta["duration_s"].sum()) / 3600, 4),
        "speakers": int(meta.loc[meta["client_id"] != "", "client_id"].nunique()),
    }
    return meta, report


def _table(rows: list[tuple]) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, SCHEMA, strict=True)], schema=SCHEMA)


def overlaps(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Clip ids, sentences (normalised) and known speakers that two splits share: leaks that flatter test WER.

    A clip listed in two splits (Common Voice's validated.tsv holds train, dev and test) is the worst.
    """
    out = {}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        out[f"clips_{a}_{b}"] = len(set(tables[a]["id"]) & set(tables[b]["id"]))
        sentences = set(map(normalize, tables[a]["sentence"])) & set(map(normalize, tables[b]["sentence"]))
        out[f"sentences_{a}_{b}"] = len(sentences)
        out[f"speakers_{a}_{b}"] = len((set(tables[a]["client_id"]) & set(tables[b]["client_id"])) - {""})
    return out
