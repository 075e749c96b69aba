"""Decoding a batch of clips with any backend: the options, the result types, and Whisper's safeguards.

openai/whisper's `transcribe` does not trust one greedy pass. Each chunk is decoded at temperature 0
(greedy, or beam search); a result whose text compresses too well (gzip ratio above
`compression_ratio_threshold`: a repetition loop) or whose average token log-probability is below
`logprob_threshold` (the model is guessing) is decoded again by sampling at the next temperature.
A chunk whose probability of `<|nocaptions|>` at the start is above `no_speech_threshold` while its
text is improbable counts as no speech: it gives no text at all instead of invented words.

`decode_features` owns the loop: encode once, generate (and fall back), then time the words
(svwhisper.timing); the backend (svwhisper.backend) only runs the model. The app, the CLI, the
evaluate stage and the benchmarks all decode through it.
"""

import dataclasses
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from svwhisper.audio import HOP_LENGTH
from svwhisper.paramfile import ParamsRangeError
from svwhisper.params import DecodeOptions
from svwhisper.timing import Word, token_pieces, words_from_path


def add_flags(parser, defaults: DecodeOptions) -> None:
    """One command-line flag per field of DecodeOptions (`--beam-size`, ..., `--no-word-timestamps`)."""
    for field in dataclasses.fields(DecodeOptions):
        value, flag = getattr(defaults, field.name), field.name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(f"--no-{flag}", dest=field.name, action="store_false", default=value)
        elif isinstance(value, tuple):
            parser.add_argument(f"--{flag}", type=float, nargs="+", default=list(value), help="0 alone: no fallback")
        else:
            parser.add_argument(f"--{flag}", type=type(value), default=value)


def from_flags(args) -> DecodeOptions:
    """The DecodeOptions of parsed flags (see add_flags), checked as params.yaml's would be."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(DecodeOptions)}
    options = DecodeOptions(**values | {"temperatures": tuple(values["temperatures"])})
    try:
        options.check()
    except ParamsRangeError as err:
        raise ValueError(f"--{err.key.replace('_', '-')} {err.message}") from None
    return options


@dataclass(frozen=True)
class Candidate:
    """What a backend's `generate` returns for one chunk: text tokens (no special tokens) and their scores."""

    tokens: tuple[int, ...]
    avg_logprob: float  # sum of the tokens' log-probabilities (end of text included) / (tokens + 1)
    no_speech_prob: float  # P(<|nocaptions|>) at the first position


@dataclass(frozen=True)
class Hypothesis:
    """One decoded chunk: the candidate kept, at which temperature, its text, and its words when asked for."""

    tokens: tuple[int, ...]
    text: str
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float
    words: tuple[Word, ...] = ()  # times in the recording


def compression_ratio(text: str) -> float:
    """len(text) / len(gzip(text)) in bytes: about 1-2 for speech, well above 2.4 for a loop."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def is_no_speech(hyp: Hypothesis, options: DecodeOptions) -> bool:
    """openai/whisper's rule: the model says no speech, and its text is improbable."""
    return hyp.no_speech_prob > options.no_speech_threshold and hyp.avg_logprob < options.logprob_threshold


def needs_fallback(hyp: Hypothesis, options: DecodeOptions) -> bool:
    if is_no_speech(hyp, options):
        return False  # silence stays silence: sampling would only invent words for it
    return hyp.compression_ratio > options.compression_ratio_threshold or hyp.avg_logprob < options.logprob_threshold


def decode_with_fallback(backend, encoded, n: int, options: DecodeOptions) -> list[Hypothesis]:
    """Each of the `n` rows of `encoded` (the backend's encoder output) decoded by `backend.generate(encoded, rows,
    temperature, beam_size)`, again at the next temperature while its result fails the thresholds; no-speech
    results come back with empty text."""
    results: list[Hypothesis | None] = [None] * n
    pending = list(range(n))
    for temperature in options.temperatures:
        beams = options.beam_size if temperature == 0 else 1
        retry = []
        for index, found in zip(pending, backend.generate(encoded, pending, temperature, beams), strict=True):
            text = backend.text(found.tokens)
            hyp = Hypothesis(
                found.tokens, text, found.avg_logprob, found.no_speech_prob, temperature, compression_ratio(text)
            )
            results[index] = hyp
            if needs_fallback(hyp, options):
                retry.append(index)
        pending = retry
        if not pending:
            break
    return [dataclasses.replace(h, tokens=(), text="") if is_no_speech(h, options) else h for h in results]


def positions_of(n_samples: int, window_positions: int) -> int:
    """Encoder positions that hold a clip of `n_samples` (the rest of the window is padding)."""
    return max(1, min(window_positions, -(-n_samples // (2 * HOP_LENGTH))))


def timed_words(backend, encoded, hyps: list[Hypothesis], positions: list[int], offsets: list[float]):
    """Each hypothesis's words, timed from `backend.align`'s path over its first `positions` encoder positions and
    shifted by its offset in seconds; () for a chunk without text."""
    out: list[tuple[Word, ...]] = [() for _ in hyps]
    rows = [i for i, h in enumerate(hyps) if h.tokens]
    if not rows:
        return out
    paths = backend.align(encoded, rows, [hyps[i].tokens for i in rows], [positions[i] for i in rows])
    for i, path in zip(rows, paths, strict=True):
        if path is not None:
            pieces = token_pieces(backend.processor.tokenizer.decode, list(hyps[i].tokens))
            out[i] = tuple(words_from_path(pieces, *path, offsets[i]))
    return out


def decode_features(backend, features: np.ndarray, positions: list[int], options: DecodeOptions, offsets=None):
    """Hypotheses for a batch of log-mel `features` (batch, mels, frames) whose audio fills the first `positions`
    encoder positions: Whisper's safeguards as `options` say, words timed when they ask, the batch split over the
    backend's workers (each part encoded once; generate, fallbacks and alignment reuse that)."""
    offsets = offsets if offsets is not None else [0.0] * len(features)

    def part(indices: list[int]) -> list[Hypothesis]:
        encoded = backend.encode(features[indices])
        hyps = decode_with_fallback(backend, encoded, len(indices), options)
        if not options.word_timestamps:
            return hyps
        words = timed_words(backend, encoded, hyps, [positions[i] for i in indices], [offsets[i] for i in indices])
        return [dataclasses.replace(h, words=w) for h, w in zip(hyps, words, strict=True)]

    parts = [list(p) for p in np.array_split(np.arange(len(features)), min(backend.workers, len(features))) if len(p)]
    if len(parts) <= 1:
        return part(parts[0]) if parts else []
    with ThreadPoolExecutor(len(parts)) as pool:  # CTranslate2 releases the GIL: one replica per part
        return [hyp for hyps in pool.map(part, parts) for hyp in hyps]


def decode_clips(backend, clips: list[np.ndarray], options: DecodeOptions, offsets: list[float] | None = None):
    """Hypotheses for 16 kHz `clips` (see decode_features); `offsets` are their starts in the recording, seconds."""
    if not clips:
        return []
    window = backend.processor.feature_extractor.nb_max_frames // 2
    positions = [positions_of(len(clip), window) for clip in clips]
    return decode_features(backend, backend.features(clips), positions, options, offsets)
