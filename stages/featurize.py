"""featurize: prepared splits -> log-mel input features + label ids, one Parquet file per split.

Uses the base model's own processor, so a pretrained Whisper gets its own 80/128-bin front end
and vocabulary. Features are stored trimmed, in float16 (see svwhisper.features).

    python -m stages.featurize --prepared data/prepared --base-model models/base --out data/features
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import WhisperConfig, WhisperProcessor

from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.features import log_mel_batch
from svwhisper.params import load_params
from svwhisper.text import TextParams, label_text

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class FeaturizeParams:
    batch_size: int = 64

    def check(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


def featurize_split(
    table: pd.DataFrame, processor: WhisperProcessor, params: FeaturizeParams, text: TextParams, max_label_len: int
) -> pd.DataFrame:
    """Prepared rows -> rows of (id, sentence, duration_s, features, n_frames, n_mels, labels)."""
    window_s = processor.feature_extractor.chunk_length
    too_long = table[table["duration_s"] > window_s + 1e-6]
    if len(too_long):
        raise SystemExit(
            f"featurize: {len(too_long)} clips are longer than the model's {window_s} s window "
            f"(e.g. {too_long['id'].iloc[0]}, {too_long['duration_s'].iloc[0]:.2f} s): "
            "lower prepare.max_duration_s or raise model.chunk_length_s"
        )
    features = []
    for start in range(0, len(table), params.batch_size):
        clips = [load_audio(a) for a in table["audio"].iloc[start : start + params.batch_size]]
        features.extend(log_mel_batch(processor.feature_extractor, clips))
    labels = processor.tokenizer([label_text(s, text) for s in table["sentence"]]).input_ids
    longest = max(range(len(labels)), key=lambda i: len(labels[i]))
    if len(labels[longest]) > max_label_len:
        raise SystemExit(
            f"featurize: clip {table['id'].iloc[longest]} has {len(labels[longest])} label tokens, more than the "
            f"model's {max_label_len} positions: raise model.max_target_positions or filter longer sentences"
        )
    return pd.DataFrame(
        {
            "id": table["id"],
            "sentence": table["sentence"],
            "duration_s": table["duration_s"],
            "features": [f.tobytes() for f in features],
            "n_frames": [f.shape[0] for f in features],
            "n_mels": [f.shape[1] for f in features],
            "labels": [np.asarray(ids, dtype=np.int32) for ids in labels],
        }
    )


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
    args.out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        prepared = pd.read_parquet(args.prepared / f"{split}.parquet")
        table = featurize_split(prepared, processor, params, text, max_label_len)
        table.to_parquet(args.out / f"{split}.parquet", index=False)
        size_mb = (args.out / f"{split}.parquet").stat().st_size / 1e6
        print(f"featurize: {split}: {len(table)} clips, {size_mb:.1f} MB")


if __name__ == "__main__":
    main()
