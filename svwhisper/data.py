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

    A non-speech row (labels `<|startoftranscript|><|nocaptions|><|endoftext|>`, svwhisper.nonspeech) is taught twice
    over when `prompt` (start, language, task, no timestamps: what decoding forces) is given: `<|nocaptions|>` where
    the start of transcript predicts (Whisper's own target, behind its P(no speech)), and, with the prompt as its
    decoder input, an end of text right after it (an empty transcript, so that a decoder which forces the prompt
    writes nothing even where the no-speech rule's log-probability condition does not hold). Batches with such rows
    carry their own `decoder_input_ids`; batches without are as before.
    """

    n_frames: int  # the model window in log-mel frames (feature_extractor.nb_max_frames)
    decoder_start_token_id: int
    no_speech_token_id: int | None = None  # <|nocaptions|> (or <|nospeech|>)
    prompt: tuple[int, ...] = ()  # start of transcript, language, task, no timestamps

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        features = np.stack([pad_features(item["input_features"], self.n_frames) for item in items])
        labels = [list(item["labels"]) for item in items]
        silent = [self._is_no_speech(seq) for seq in labels]
        if any(silent) and self.prompt:
            return {"input_features": torch.from_numpy(features), **self._with_inputs(labels, silent)}
        if all(seq and seq[0] == self.decoder_start_token_id for seq in labels):
            labels = [seq[1:] for seq in labels]
        return {"input_features": torch.from_numpy(features), "labels": padded(labels, -100)}

    def _is_no_speech(self, seq: list[int]) -> bool:
        return len(seq) == 3 and seq[0] == self.decoder_start_token_id and seq[1] == self.no_speech_token_id

    def _with_inputs(self, labels: list[list[int]], silent: list[bool]) -> dict[str, torch.Tensor]:
        inputs, targets = [], []
        for seq, no_speech in zip(labels, silent, strict=True):
            # [start, nocaptions, eot] -> inputs: the prompt; targets: nocaptions, task, notimestamps, eot
            if no_speech:
                inputs.append(list(self.prompt))
                targets.append([seq[1], *self.prompt[2:], seq[2]])
            else:  # what the model's own shift of the labels would give
                inputs.append(
                    seq[:-1] if seq[0] == self.decoder_start_token_id else [self.decoder_start_token_id, *seq[:-1]]
                )
                targets.append(seq[1:] if seq[0] == self.decoder_start_token_id else seq)
        end = labels[0][-1]  # the end of text: decoder inputs past a row's end are padded with it (no loss there)
        return {"labels": padded(targets, -100), "decoder_input_ids": padded(inputs, end)}


def padded(rows: list[list[int]], value: int) -> torch.Tensor:
    """Rows of ids as one (rows, longest) long tensor, padded with `value`."""
    out = torch.full((len(rows), max(len(seq) for seq in rows)), value, dtype=torch.long)
    for row, seq in enumerate(rows):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out
