"""Speech detection with Silero VAD (the ONNX model inside the faster-whisper package, run by onnxruntime, offline).

`vad_chunks` finds the speech regions of a recording and turns them into chunks for the model: each
region padded by a little context (never into the next region), a region longer than the window
split at its quietest point by Silero's own rule. One region per chunk, never several merged to fill the
window: the model was fine-tuned on single utterances. Chunks have the same shape as the energy
chunker's (svwhisper.longform.Chunk).
"""

import numpy as np

from svwhisper.audio import SAMPLE_RATE
from svwhisper.longform import Chunk

PAD_S = 0.2  # context kept before and after each speech region
MIN_SILENCE_MS = 300  # a pause shorter than this does not end a speech region
MIN_SPEECH_MS = 150  # a burst shorter than this (a click, a breath) is not a speech region
THRESHOLD = 0.5  # Silero's speech probability above which a 32 ms frame is speech


def speech_regions(samples: np.ndarray, max_region_s: float) -> list[tuple[int, int]]:
    """(start, end) sample of each speech region, none longer than `max_region_s`."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        threshold=THRESHOLD,
        min_silence_duration_ms=MIN_SILENCE_MS,
        speech_pad_ms=0,
        max_speech_duration_s=max_region_s,
        min_speech_duration_ms=MIN_SPEECH_MS,
    )
    return [(r["start"], r["end"]) for r in get_speech_timestamps(samples, options, sampling_rate=SAMPLE_RATE)]


def vad_chunks(samples: np.ndarray, window_s: float) -> list[Chunk]:
    """Chunks of at most `window_s` covering the speech Silero VAD finds in `samples` (none: no chunks): one per
    speech region, padded by PAD_S but never past halfway to the next region."""
    pad, window = int(PAD_S * SAMPLE_RATE), int(window_s * SAMPLE_RATE)
    regions = speech_regions(samples, max(0.5, window_s - 2 * PAD_S))
    chunks = []
    for i, (first, last) in enumerate(regions):
        before = regions[i - 1][1] if i else 0
        after = regions[i + 1][0] if i + 1 < len(regions) else len(samples)
        start = max(first - pad, (before + first) // 2, 0)
        end = min(last + pad, (last + after) // 2, len(samples), start + window)
        chunks.append(Chunk(start, end, first, last, False))
    return chunks
