"""featurize: prepared splits -> log-mel input features + label ids, in Parquet shards.

Uses the base model's own processor, so a pretrained Whisper gets its own 80/128-bin front end
and vocabulary. Features are computed over each clip rather than the padded window and stored
trimmed, in float16 (see svwhisper.features). The prepared data is read one shard at a time,
so memory does not grow with the corpus; log-mel runs over `num_proc` worker processes. The
same inputs give byte-identical shards.

    python -m stages.featurize --prepared data/prepared --base-model models/base --out data/features
    -> data/features/{train,dev,test}/part-00000.parquet, ...
"""

import argparse
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from transformers import WhisperConfig, WhisperProcessor

from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.features import compact_log_mel
from svwhisper.files import atomic_dir
from svwhisper.params import at_least, load_params
from svwhisper.text import TextParams, label_text

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class FeaturizeParams:
    shard_size: int = 2000  # clips per output shard (about 60 MB of float16 log-mel at 2 s a clip)
    num_proc: int = 2  # worker processes computing log-mel

    def check(self) -> None:
        at_least(self, 1, "shard_size", "num_proc")


def _one_thread() -> None:
    torch.set_num_threads(1)  # num_proc processes, not num_proc x all-cores threads


def log_mel_of(audio: list[bytes], feature_extractor) -> list[np.ndarray]:
    """FLAC bytes -> trimmed float16 (frames, mel) log-mel, one array per clip."""
    return [compact_log_mel(load_audio(a), feature_extractor) for a in audio]


def featurize_shard(
    table: pd.DataFrame, processor: WhisperProcessor, text: TextParams, max_label_len: int, pool=None, workers=1
) -> pd.DataFrame:
    """Prepared rows -> rows of (id, sentence, duration_s, features, n_frames, n_mels, labels).

    `pool` (a ProcessPoolExecutor of `workers` processes) spreads the log-mel work; None computes it here.
    """
    window_s = processor.feature_extractor.chunk_length
    too_long = table[table["duration_s"] > window_s + 1e-6]
    if len(too_long):
        raise SystemExit(
            f"featurize: {len(too_long)} clips are longer than the model's {window_s} s window "
            f"(e.g. {too_long['id'].iloc[0]}, {too_long['duration_s'].iloc[0]:.2f} s): "
            "lower prepare.max_duration_s or raise model.chunk_length_s"
        )
    audio = table["audio"].to_list()
    if pool is None:
        features = log_mel_of(audio, processor.feature_extractor)
    else:
        n_chunks = workers * 4  # small chunks keep the workers evenly busy
        chunks = [audio[i::n_chunks] for i in range(n_chunks)]
        results = list(pool.map(log_mel_of, chunks, [processor.feature_extractor] * n_chunks))
        features = [None] * len(audio)
        for i, result in enumerate(results):
            features[i::n_chunks] = result
    labels = processor.tokenizer([label_text(s, text) for s in table["sentence"]]).input_ids
    longest = max(range(len(labels)), key=lambda i: len(labels[i]))
    if len(labels[longest]) > max_label_len:
        raise SystemExit(
            f"featurize: clip {table['id'].iloc[longest]} has {len(labels[longest])} label tokens, more than the "
            f"model's {max_label_len} positions: raise model.max_target_positions or filter longer sentences"
        )
    return pd.DataFrame(
        {
            "id": table["id"].to_list(),
            "sentence": table["sentence"].to_list(),
            "duration_s": table["duration_s"].to_list(),
            "features": [f.tobytes() for f in features],
            "n_frames": [f.shape[0] for f in features],
            "n_mels": [f.shape[1] for f in features],
            "labels": [np.asarray(ids, dtype=np.int32) for ids in labels],
        }
    )


def featurize_split(
    prepared: Path, out_dir: Path, processor, params: FeaturizeParams, text: TextParams, max_label_len: int
) -> tuple[int, int]:
    """One prepared Parquet file -> `out_dir/part-NNNNN.parquet` shards, whole or not at all (written to a temp
    dir beside it, then renamed); returns (clips, shards)."""
    pool = ProcessPoolExecutor(params.num_proc, initializer=_one_thread) if params.num_proc > 1 else None
    clips = shards = 0
    try:
        with atomic_dir(out_dir) as partial:
            for batch in pq.ParquetFile(prepared).iter_batches(batch_size=params.shard_size):
                table = featurize_shard(batch.to_pandas(), processor, text, max_label_len, pool, params.num_proc)
                table.to_parquet(partial / f"part-{shards:05d}.parquet", index=False, compression="zstd")
                clips, shards = clips + len(table), shards + 1
    finally:
        if pool is not None:
            pool.shutdown()
    return clips, shards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--base-model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = load_params(FeaturizeParams, "featurize")
    text = load_params(TextParams, "text")

    processor = WhisperProcessor.from_pretrained(args.base_model)
    max_label_len = WhisperConfig.from_pretrained(args.base_model).max_target_positions
    if processor.feature_extractor.sampling_rate != SAMPLE_RATE:
        raise SystemExit(f"featurize: the base model expects {processor.feature_extractor.sampling_rate} Hz audio")
    for split in SPLITS:
        clips, shards = featurize_split(
            args.prepared / f"{split}.parquet", args.out / split, processor, params, text, max_label_len
        )
        size_mb = sum(p.stat().st_size for p in (args.out / split).iterdir()) / 1e6
        print(f"featurize: {split}: {clips} clips in {shards} shard(s), {size_mb:.1f} MB")


if __name__ == "__main__":
    main()
