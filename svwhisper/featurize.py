"""Log-mel features and label ids of prepared splits (the featurize stage's work), in bounded Parquet shards,
computed over worker processes, byte-identical whatever their number."""

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from transformers import WhisperProcessor

from svwhisper.atomic import atomic_dir
from svwhisper.audio import load_audio
from svwhisper.augment import augment
from svwhisper.logmel import compact_log_mel
from svwhisper.nonspeech import corpus_edges, count_for, generate, target_ids
from svwhisper.params import NONSPEECH_KINDS, AugmentParams, FeaturizeParams, NonspeechParams, TextParams
from svwhisper.text import label_text

CHUNKS_PER_WORKER = 4  # a split is cut into this many chunks per worker: small chunks keep the workers evenly busy


def _one_thread() -> None:
    torch.set_num_threads(1)  # num_proc processes, not num_proc x all-cores threads


def log_mel_of(jobs: list[tuple], feature_extractor, params: AugmentParams | None = None) -> list[tuple]:
    """(FLAC bytes, clip id, copy) -> (trimmed float16 (frames, mel) log-mel, duration in s), one per job.

    Copy 0 is the clip as recorded; copy k > 0 is its k-th augmented version under `params`.
    """
    out = []
    for audio, clip_id, copy in jobs:
        samples = load_audio(audio)
        if copy:
            samples = augment(samples, params, clip_id, copy, feature_extractor.chunk_length)
        out.append((compact_log_mel(samples, feature_extractor), len(samples) / feature_extractor.sampling_rate))
    return out


def featurize_shard(
    table: pd.DataFrame,
    processor: WhisperProcessor,
    text: TextParams,
    max_label_len: int,
    pool=None,
    workers=1,
    augment_params: AugmentParams | None = None,
) -> pd.DataFrame:
    """Prepared rows -> rows of (id, sentence, duration_s, features, n_frames, n_mels, labels).

    `pool` (a ProcessPoolExecutor of `workers` processes) spreads the log-mel work; None computes it here.
    With `augment_params` whose transforms are set, each clip's augmented copies follow the clean rows,
    with ids `<id>~aug<k>`, their own duration, and the clip's sentence and labels.
    """
    window_s = processor.feature_extractor.chunk_length
    too_long = table[table["duration_s"] > window_s + 1e-6]
    if len(too_long):
        raise SystemExit(
            f"featurize: {len(too_long)} clips are longer than the model's {window_s} s window "
            f"(e.g. {too_long['id'].iloc[0]}, {too_long['duration_s'].iloc[0]:.2f} s): "
            "lower prepare.max_duration_s or raise model.chunk_length_s"
        )
    copies = augment_params.copies if augment_params is not None and augment_params.transforms else 0
    ids, audio = table["id"].to_list(), table["audio"].to_list()
    jobs = [(a, i, copy) for copy in range(copies + 1) for a, i in zip(audio, ids, strict=True)]
    if pool is None:
        results = log_mel_of(jobs, processor.feature_extractor, augment_params)
    else:
        n_chunks = workers * CHUNKS_PER_WORKER
        chunks = [jobs[i::n_chunks] for i in range(n_chunks)]
        done = list(pool.map(log_mel_of, chunks, [processor.feature_extractor] * n_chunks, [augment_params] * n_chunks))
        results = [None] * len(jobs)
        for i, result in enumerate(done):
            results[i::n_chunks] = result
    features = [f for f, _ in results]
    labels = processor.tokenizer([label_text(s, text) for s in table["sentence"]]).input_ids
    longest = max(range(len(labels)), key=lambda i: len(labels[i]))
    if len(labels[longest]) > max_label_len:
        raise SystemExit(
            f"featurize: clip {table['id'].iloc[longest]} has {len(labels[longest])} label tokens, more than the "
            f"model's {max_label_len} positions: raise model.max_target_positions or filter longer sentences"
        )
    durations = table["duration_s"].to_list() + [round(d, 3) for _, d in results[len(table) :]]
    return pd.DataFrame(
        {
            "id": ids + [f"{i}~aug{copy}" for copy in range(1, copies + 1) for i in ids],
            "sentence": table["sentence"].to_list() * (copies + 1),
            "duration_s": durations,
            "features": [f.tobytes() for f in features],
            "n_frames": [f.shape[0] for f in features],
            "n_mels": [f.shape[1] for f in features],
            "labels": [np.asarray(seq, dtype=np.int32) for seq in labels] * (copies + 1),
        }
    )


def featurize_split(
    prepared: Path,
    out_dir: Path,
    processor,
    params: FeaturizeParams,
    text: TextParams,
    max_label_len: int,
    augmented: bool = False,
    extra: pd.DataFrame | None = None,
) -> tuple[int, int]:
    """One prepared Parquet file -> `out_dir/part-NNNNN.parquet` shards, whole or not at all (written to a temp
    dir beside it, then renamed); returns (rows, shards). `augmented`: add `params.augment`'s copies (train);
    `extra`: rows in this format (the non-speech clips of `nonspeech_table`), written as the last shard."""
    pool = ProcessPoolExecutor(params.num_proc, initializer=_one_thread) if params.num_proc > 1 else None
    clips = shards = 0
    try:
        with atomic_dir(out_dir) as partial:
            for batch in pq.ParquetFile(prepared).iter_batches(batch_size=params.shard_size):
                table = featurize_shard(
                    batch.to_pandas(),
                    processor,
                    text,
                    max_label_len,
                    pool,
                    params.num_proc,
                    params.augment if augmented else None,
                )
                table.to_parquet(partial / f"part-{shards:05d}.parquet", index=False, compression="zstd")
                clips, shards = clips + len(table), shards + 1
            if extra is not None and len(extra):
                extra.to_parquet(partial / f"part-{shards:05d}.parquet", index=False, compression="zstd")
                clips, shards = clips + len(extra), shards + 1
    finally:
        if pool is not None:
            pool.shutdown()
    return clips, shards


def nonspeech_table(
    prepared: Path, split: str, count: int, params: NonspeechParams, processor, held_out: bool
) -> pd.DataFrame:
    """`count` non-speech clips for `split` (svwhisper.nonspeech) as feature rows with the no-speech target and an
    empty sentence. A held-out set (dev, test) takes every kind in turn and fills the window; the training clips
    draw from `params.kinds`. The corpus kind cuts the silent edges of `prepared`'s own clips."""
    extractor = processor.feature_extractor
    kinds = NONSPEECH_KINDS if held_out else params.kinds
    edges = corpus_edges(prepared) if "corpus" in kinds else []
    clips = generate(split, count, params.seed, extractor.chunk_length, kinds, edges, full_window=held_out)
    features = [compact_log_mel(samples, extractor) for _, _, samples in clips]
    target = np.asarray(target_ids(processor.tokenizer), dtype=np.int32)
    return pd.DataFrame(
        {
            "id": [clip_id for clip_id, _, _ in clips],
            "sentence": [""] * len(clips),
            "duration_s": [round(len(samples) / extractor.sampling_rate, 3) for _, _, samples in clips],
            "features": [f.tobytes() for f in features],
            "n_frames": [f.shape[0] for f in features],
            "n_mels": [f.shape[1] for f in features],
            "labels": [target] * len(clips),
        }
    )


def training_nonspeech(prepared: Path, params: NonspeechParams, processor) -> pd.DataFrame | None:
    """The non-speech rows mixed into the training split at `params.share`, or None when the share is 0."""
    count = count_for(pq.ParquetFile(prepared).metadata.num_rows, params.share)
    return nonspeech_table(prepared, "train", count, params, processor, held_out=False) if count else None
