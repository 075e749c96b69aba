"""The backend interface: what decoding (svwhisper.decoding) asks of a model, and which backend serves a folder.

A backend holds one Whisper model and its processor and runs three things on a batch: `encode` log-mel
features, `generate` text tokens with their scores at one temperature, and `align` tokens to the audio
(the DTW path word timings come from). Everything else (the fallback loop, no-speech, words, chunking)
is the caller's, the same for every backend. Two implement it (svwhisper.transcribe.load_backend picks one):

    TransformersBackend   svwhisper.hf_backend    a `save_pretrained` dir (the train stage's models/final)
    CTranslate2Backend    svwhisper.ct2_backend   the export stage's int8 conversion (models/ct2)

A call never changes shared state (the model, its attention implementation, the global RNG): threads may
share one backend.
"""

import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from svwhisper.audio import SAMPLE_RATE
from svwhisper.decoding import Candidate, DecodeOptions, decode_clips
from svwhisper.model_files import missing_groups
from svwhisper.text import no_speech_token

# A chunk never holds more speech than its window: 15 tokens a second is about twice the fastest speech
# (the sample corpus peaks at 8, fast conversational Swedish at about 10), so real text is never cut,
# while a decoder caught in a repetition loop stops after 60 tokens of a 4 s window instead of 444.
MAX_TOKENS_PER_SECOND = 15


class Backend(ABC):
    """A Whisper model that decodes Swedish (or the language and task it was saved with)."""

    processor = None  # transformers' WhisperProcessor of the model folder
    workers = 1  # a batch is split into this many parts, decoded at the same time
    prompt: list[int]  # start of transcript, language, task, no timestamps
    eot: int  # end of text
    no_speech: int  # <|nospeech|> (or <|nocaptions|>)

    def __call__(self, clips: list[np.ndarray], options: DecodeOptions | None = None) -> list[str]:
        """The transcript of each 16 kHz clip (no word timestamps unless `options` ask for them)."""
        return [h.text for h in decode_clips(self, clips, options or DecodeOptions(word_timestamps=False))]

    def features(self, clips: list[np.ndarray]) -> np.ndarray:
        """Log-mel features (batch, mels, frames) of 16 kHz clips, padded to the model window."""
        features = self.processor.feature_extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="np")
        return np.ascontiguousarray(features.input_features, dtype=np.float32)

    def text(self, tokens) -> str:
        return self.processor.tokenizer.decode(list(tokens), skip_special_tokens=True).strip()

    @abstractmethod
    def encode(self, features: np.ndarray):
        """The encoder's output for a batch of features, in the backend's own array type."""

    @abstractmethod
    def generate(self, encoded, rows: list[int], temperature: float, beam_size: int) -> list[Candidate]:
        """One candidate for each of `rows` of `encoded`: beam search at temperature 0, sampling above it (the
        same input gives the same sample)."""

    @abstractmethod
    def align(self, encoded, rows: list[int], tokens: list[tuple[int, ...]], positions: list[int]):
        """For each of `rows`, the DTW path (token indices, encoder positions) of its `tokens` over its first
        `positions` encoder positions, rows [before the first token, each token]; None where the model has no
        alignment heads."""


def token_cap(window_s: float, decoder_positions: int, prompt_tokens: int) -> int:
    """New tokens allowed for one chunk of a `window_s` window, within the decoder's positions."""
    return min(decoder_positions - prompt_tokens, int(window_s * MAX_TOKENS_PER_SECOND))


def text_tokens(sequence: list[int], eot: int) -> tuple[int, ...]:
    """The text tokens of a generated sequence: up to the end of text, without special tokens."""
    tokens = sequence[: sequence.index(eot)] if eot in sequence else sequence
    return tuple(t for t in tokens if t < eot)


def special_ids(tokenizer, generation) -> tuple[list[int], int, int]:
    """(prompt ids: start, language, task, no timestamps; end of text; the no-speech token) of a saved model."""
    language = generation.language if generation.language.startswith("<|") else f"<|{generation.language}|>"
    prompt = ["<|startoftranscript|>", language, f"<|{generation.task}|>", "<|notimestamps|>"]
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return tokenizer.convert_tokens_to_ids(prompt), eot, no_speech_token(tokenizer)


def usable_cores() -> int:
    """The CPU cores this process may use (Linux: its affinity), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def default_model_dir(backend: str, paths) -> str:
    """Where the pipeline writes the model `backend` runs: the export stage's dir, or the train stage's."""
    return paths.exported if backend == "ctranslate2" else paths.final_model


def missing_model(model_dir: str | Path, backend: str) -> str:
    """A message saying what to run when `model_dir` holds no model for `backend`, else ""."""
    missing, any_present = missing_groups(model_dir, backend)
    fix = "run `make repro` (builds it) or `dvc pull` (fetches it)"
    if not any_present:
        return f"no model in {model_dir} for the {backend} backend: {fix}"
    if missing:
        return (
            f"the model in {model_dir} is incomplete (no {', '.join(missing)}): an interrupted `dvc pull` or copy? "
            f"`dvc pull -f` fetches it whole; or {fix}"
        )
    return ""
