"""Feature splits as torch datasets, and the collator that batches them for Whisper."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from svwhisper.logmel import pad_features


class FeatureSplit(torch.utils.data.Dataset):
    """One featurize output split (a dir of part-*.parquet shards) held in memory; items are dicts for the collator."""

    def __init__(self, path: Path):
        shards = sorted(Path(path).glob("part-*.parquet"))
        if not shards:
            raise FileNotFoundError(f"{path}: no part-*.parquet feature shards; run the featurize stage")
        self.table = pd.concat([pd.read_parquet(shard) for shard in shards], ignore_index=True)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> dict:
        row = self.table.iloc[i]
        features = np.frombuffer(row["features"], dtype=np.float16).reshape(row["n_frames"], row["n_mels"])
        return {"input_features": features, "labels": row["labels"]}


@dataclass(frozen=True)
class SpeechCollator:
    """Pads features to the model window and labels with -100 (ignored by the loss).

    A leading decoder-start token is dropped from the labels: the model prepends it itself
    when it shifts the labels right to make decoder inputs.
    """

    n_frames: int  # the model window in log-mel frames (feature_extractor.nb_max_frames)
    decoder_start_token_id: int

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        features = np.stack([pad_features(item["input_features"], self.n_frames) for item in items])
        labels = [list(item["labels"]) for item in items]
        if all(seq and seq[0] == self.decoder_start_token_id for seq in labels):
            labels = [seq[1:] for seq in labels]
        width = max(len(seq) for seq in labels)
        padded = torch.full((len(labels), width), -100, dtype=torch.long)
        for row, seq in enumerate(labels):
            padded[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return {"input_features": torch.from_numpy(features), "labels": padded}
