"""The CTranslate2 backend: the export stage's conversion (int8 weights), with the same processor files.

Candidates are scored as the transformers backend scores them: under the model's own distribution. CTranslate2
(like openai/whisper) renormalises the first position's scores after suppressing blank and end of text; the text of
a chunk the model wanted to end at once (a fine-tune trained on non-speech does) would then look confident and
escape the no-speech rule, so that suppressed mass is read off one more decoder step and added back.

A batch is split across `workers` model replicas of one thread each, run at the same time
(CTranslate2's inter_threads; faster-whisper's num_workers): on a small model one thread per
replica beats several threads on one replica, whose per-token decoder steps are too small to
share. `workers` defaults to the CPU cores this process may use.
"""

import math
from pathlib import Path

import ctranslate2
import numpy as np
from transformers import GenerationConfig, WhisperProcessor

from svwhisper.backend import Backend, special_ids, text_tokens, token_cap, usable_cores
from svwhisper.decoding import Candidate


def storage(array) -> ctranslate2.StorageView:
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array))


class CTranslate2Backend(Backend):
    def __init__(self, model_dir: str | Path, compute_type: str = "int8", workers: int = 0):
        self.workers = workers or usable_cores()
        self.model = ctranslate2.models.Whisper(
            str(model_dir), device="cpu", compute_type=compute_type, intra_threads=1, inter_threads=self.workers
        )
        self.processor = WhisperProcessor.from_pretrained(model_dir)
        generation = GenerationConfig.from_pretrained(model_dir)  # the language and task the model was saved with
        self.prompt, self.eot, self.no_speech = special_ids(self.processor.tokenizer, generation)
        window = self.processor.feature_extractor.chunk_length
        # CTranslate2's Whisper samples at most max_length / 2 new tokens (openai/whisper's sample_len), so the
        # same cap as the transformers backend is twice that, within the decoder's positions
        self.max_length = min(2 * token_cap(window, generation.max_length, len(self.prompt)), generation.max_length)
        self.suppressed_first = [self.eot, *self.processor.tokenizer.encode(" ", add_special_tokens=False)]

    def encode(self, features: np.ndarray) -> np.ndarray:
        return np.array(self.model.encode(storage(features), to_cpu=True))

    def generate(self, encoded: np.ndarray, rows: list[int], temperature: float, beam_size: int) -> list[Candidate]:
        features = storage(encoded[rows])
        results = self.model.generate(
            features,
            [self.prompt] * len(rows),
            max_length=self.max_length,
            beam_size=beam_size,
            sampling_temperature=temperature if temperature > 0 else 1.0,
            sampling_topk=0 if temperature > 0 else 1,
            return_scores=True,
            return_no_speech_prob=True,
        )
        candidates = []
        for result, kept in zip(results, self.first_position_kept(features, len(rows)), strict=True):
            tokens = text_tokens(result.sequences_ids[0], self.eot)
            # CTranslate2's score is the sum of log-probabilities divided by the length (length_penalty 1)
            total = result.scores[0] * max(1, len(tokens)) + math.log(max(kept, 1e-30))
            candidates.append(Candidate(tokens, total / (len(tokens) + 1), result.no_speech_prob))
        return candidates

    def first_position_kept(self, features, n: int) -> list[float]:
        """Per row, the probability the model gives the first text position's tokens other than blank and end of
        text (what generate renormalises by when it suppresses them): one greedy step without that suppression."""
        steps = self.model.generate(
            features,
            [self.prompt] * n,
            max_length=len(self.prompt),
            beam_size=1,
            suppress_blank=False,
            return_logits_vocab=True,
        )
        kept = []
        for step in steps:
            logits = np.asarray(step.logits[0][0], dtype=np.float64)
            probs = np.exp(logits - logits.max())
            kept.append(1.0 - probs[self.suppressed_first].sum() / probs.sum())
        return kept

    def align(self, encoded: np.ndarray, rows: list[int], tokens: list[tuple[int, ...]], positions: list[int]):
        alignments = self.model.align(
            storage(encoded[rows]),
            self.prompt[:3],  # start, language, task: CTranslate2 adds <|notimestamps|> itself
            [list(t) for t in tokens],
            [2 * p for p in positions],  # in log-mel frames
        )
        return [(np.array([p[0] for p in r.alignments]), np.array([p[1] for p in r.alignments])) for r in alignments]
