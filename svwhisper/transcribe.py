"""Transcribe recordings of any length with a saved model, on either backend; write SRT/WebVTT/JSON.

    python -m svwhisper.transcribe lecture.m4a --srt lecture.srt --vtt lecture.vtt --json lecture.json
    python -m svwhisper.transcribe clip.wav --backend ctranslate2      # the int8 export (models/ct2)
    python -m svwhisper.transcribe talk.mp3 --srt talk.srt --words-per-cue 7 --beam-size 1
    python -m svwhisper.transcribe clip.wav --model you/svwhisper-small-sv   # a published model, by its Hub id

Backends: `transformers` (the `save_pretrained` dir of the train stage) and `ctranslate2` (the
export stage's int8 conversion, same processor), both Swedish/transcribe. Speech is found with
Silero VAD (or the energy chunker); each chunk is decoded with Whisper's safeguards (beam search,
temperature fallback, no-speech detection: svwhisper.decoding) and timed word by word. It prints
one line per segment, each word with its start and end in seconds.
"""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.backend import Backend, default_model_dir, missing_model
from svwhisper.decoding import DecodeOptions, Hypothesis, add_flags, decode_clips, from_flags
from svwhisper.hub import ModelError, resolve
from svwhisper.longform import Segment, segments_of, speech_chunks, to_json, to_srt, to_vtt
from svwhisper.params import BACKENDS, CHUNKERS, AppParams
from svwhisper.timing import Word


def load_backend(name: str, model_dir: str | Path) -> Backend:
    """The backend `name` ("transformers" or "ctranslate2") over `model_dir`."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if problem := missing_model(model_dir, name):
        raise FileNotFoundError(problem)
    if name == "transformers":
        from svwhisper.hf_backend import TransformersBackend

        return TransformersBackend(model_dir)
    from svwhisper.ct2_backend import CTranslate2Backend

    return CTranslate2Backend(model_dir)


def chunks_of(samples: np.ndarray, window_s: float, chunker: str) -> list:
    """The chunks `chunker` cuts `samples` into: Silero VAD's speech regions, or the energy chunker's phrases."""
    if chunker == "vad":
        from svwhisper.vad import vad_chunks

        return vad_chunks(samples, window_s)
    return speech_chunks(samples, window_s=window_s, overlap_s=min(1.0, window_s / 4))


def transcribe_samples(
    samples: np.ndarray,
    backend: Backend,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    options: DecodeOptions | None = None,
    chunker: str = "vad",
) -> list[Segment]:
    """16 kHz mono samples of any length -> timed segments (empty when there is no speech).

    Chunks fit the model window (see `chunks_of`); `batch_size` chunks are decoded per call, with
    Whisper's safeguards and word timestamps as `options` say; `progress(done, total)` is told after
    each batch.
    """
    options = options or DecodeOptions()
    window_s = backend.processor.feature_extractor.chunk_length
    chunks = chunks_of(samples, window_s, chunker)
    hyps: list[Hypothesis] = []
    for start in range(0, len(chunks), batch_size):
        batch = chunks[start : start + batch_size]
        clips = [samples[c.start : c.end] for c in batch]
        hyps += decode_clips(backend, clips, options, [c.start / SAMPLE_RATE for c in batch])
        if progress is not None:
            progress(start + len(batch), len(chunks))
    words = [onset_first(h.words, chunk) for chunk, h in zip(chunks, hyps, strict=True)]
    return segments_of(chunks, [h.text for h in hyps], words)


def onset_first(words: tuple[Word, ...], chunk) -> tuple[Word, ...]:
    """`words` with the first one starting no earlier than the voice onset the chunker found: the alignment's path
    always starts at the chunk's first frame, so it cannot place that word within the audio before it."""
    if not words:
        return words
    first = words[0]
    start = min(max(first.start_s, round(chunk.speech_start / SAMPLE_RATE, 2)), first.end_s)
    return (Word(start, first.end_s, first.text), *words[1:])


def main() -> None:
    app = AppParams()  # the app's settings are the CLI's defaults
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio", type=Path, help="any file libsndfile or FFmpeg can decode")
    parser.add_argument("--backend", choices=BACKENDS, default=app.backend)
    parser.add_argument(
        "--model",
        "--model-dir",
        help="a model folder or a Hub id (owner/name[@revision]); default: paths.final_model (paths.exported for "
        "ctranslate2)",
    )
    parser.add_argument("--srt", type=Path, help="write SubRip subtitles here")
    parser.add_argument("--vtt", type=Path, help="write WebVTT subtitles here")
    parser.add_argument("--json", type=Path, help="write the segments with every word's start and end here")
    parser.add_argument("--words-per-cue", type=int, default=0, help="SRT/VTT cues of at most N words (0: a segment)")
    parser.add_argument("--batch-size", type=int, default=app.batch_size)
    parser.add_argument("--chunker", choices=CHUNKERS, default=app.chunker)
    add_flags(parser, app.decoding)
    args = parser.parse_args()
    if args.model is None:
        from svwhisper.paramfile import load_params
        from svwhisper.params import Paths

        args.model = default_model_dir(args.backend, load_params(Paths, "paths"))
    try:
        options = from_flags(args)
        backend = load_backend(args.backend, resolve(args.model, args.backend).path)
        samples = load_audio(args.audio)
        segments = transcribe_samples(samples, backend, args.batch_size, options=options, chunker=args.chunker)
    except (FileNotFoundError, ValueError, ModelError) as err:  # AudioError is a ValueError
        sys.exit(f"transcribe: {err}")
    for segment in segments:
        timed = " ".join(f"{w.text}[{w.start_s:.2f}-{w.end_s:.2f}]" for w in segment.words)
        print(f"[{segment.start_s:8.2f} -> {segment.end_s:8.2f}] {timed or segment.text}")
    for path, text in ((args.srt, to_srt), (args.vtt, to_vtt)):
        if path:
            path.write_text(text(segments, args.words_per_cue), encoding="utf-8")
    if args.json:
        args.json.write_text(to_json(segments), encoding="utf-8")


if __name__ == "__main__":
    main()
