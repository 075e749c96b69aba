"""Regression checks for what fine-tuning can unlearn: silence and noise decoded to nothing, no loops, no words
lost where a long recording is cut into chunks. The evaluate stage writes them for the fine-tuned model
(metrics/eval.json, `robustness`); benchmarks/robustness.py runs them for any model folder and either backend.

    nonspeech_empty_share         held-out non-speech clips (no VAD in front) decoded to no text at all
    nonspeech_no_speech_prob_median  the model's P(no speech) on them: Whisper as released puts most of it there
    speech_empty_share            test speech clips wrongly decoded to nothing
    loop_share_greedy             test speech clips whose greedy output (no fallback) loops: gzip ratio above the
                                  threshold, or a word n-gram repeated three times in a row
    longform_deletion_rate        reference words missing from a long recording's transcript (VAD chunks, the
                                  app's decoding), beside clip_deletion_rate: the same clips decoded one by one
"""

import dataclasses
import statistics

import jiwer
import numpy as np

from svwhisper.audio import SAMPLE_RATE
from svwhisper.decoding import Hypothesis, compression_ratio
from svwhisper.params import DecodeOptions
from svwhisper.text import normalize

LOOP_NGRAM = 4  # longest word n-gram checked for repeats
LOOP_REPEATS = 3  # the same n-gram this many times in a row is a loop
RECORDING_S = 180.0  # one long recording of about 3 minutes, built from test clips
PAUSE_S = (0.2, 1.5)  # pauses between its clips
GREEDY = DecodeOptions(beam_size=1, temperatures=(0.0,), word_timestamps=False)


def repeats_ngram(text: str, longest: int = LOOP_NGRAM, times: int = LOOP_REPEATS) -> bool:
    """True when some run of 1 to `longest` words occurs `times` times in a row ("ja ja ja", "i och i och i och")."""
    words = normalize(text).split()
    for n in range(1, longest + 1):
        for start in range(len(words) - n * times + 1):
            gram = words[start : start + n]
            if all(words[start + k * n : start + (k + 1) * n] == gram for k in range(1, times)):
                return True
    return False


def loops(text: str, compression_threshold: float) -> bool:
    return compression_ratio(text) > compression_threshold or repeats_ngram(text)


def nonspeech_measures(hyps: list[Hypothesis]) -> dict:
    """What a model made of non-speech clips: the share decoded to nothing, and its median P(no speech)."""
    return {
        "nonspeech_clips": len(hyps),
        "nonspeech_empty_share": round(sum(not h.text.strip() for h in hyps) / len(hyps), 4),
        "nonspeech_no_speech_prob_median": round(statistics.median(h.no_speech_prob for h in hyps), 4),
    }


def deletion_rate(references: list[str], hypotheses: list[str]) -> float:
    """Deleted reference words / reference words, on normalised text."""
    out = jiwer.process_words([normalize(r) for r in references], [normalize(h) for h in hypotheses])
    words = out.deletions + out.hits + out.substitutions
    return out.deletions / words if words else 0.0


def recording(clips: list[np.ndarray], seed: int = 0, seconds: float = RECORDING_S) -> tuple[np.ndarray, list[int]]:
    """One recording of about `seconds` from `clips` in a seeded order with pauses of 0.2-1.5 s between them:
    (16 kHz samples, the indices of the clips it holds, in order)."""
    rng = np.random.default_rng(seed)
    parts, used, length = [], [], 0
    for index in rng.permutation(len(clips)):
        if length >= seconds * SAMPLE_RATE:
            break
        pause = np.zeros(int(rng.uniform(*PAUSE_S) * SAMPLE_RATE), dtype=np.float32)
        parts += [pause, clips[index]]
        used.append(int(index))
        length += len(pause) + len(clips[index])
    parts.append(np.zeros(int(PAUSE_S[1] * SAMPLE_RATE), dtype=np.float32))
    return np.concatenate(parts), used


def speech_measures(hyps: list[Hypothesis], greedy: list[Hypothesis], options: DecodeOptions) -> dict:
    """From the test speech decoded as the app decodes (`hyps`) and greedily without fallback (`greedy`)."""
    threshold = options.compression_ratio_threshold
    return {
        "speech_clips": len(hyps),
        "speech_empty_share": round(sum(not h.text.strip() for h in hyps) / len(hyps), 4),
        "loop_share_greedy": round(sum(loops(h.text, threshold) for h in greedy) / len(greedy), 4),
    }


def longform_measures(references: list[str], clip_texts: list[str], longform_text: str) -> dict:
    """Deletions in a long recording's transcript against those of its clips decoded one by one."""
    return {
        "longform_words": len(normalize(" ".join(references)).split()),
        "longform_deletion_rate": round(deletion_rate([" ".join(references)], [longform_text]), 4),
        "clip_deletion_rate": round(deletion_rate(references, clip_texts), 4),
    }


def without_words(options: DecodeOptions) -> DecodeOptions:
    return dataclasses.replace(options, word_timestamps=False)
