"""Benchmark: long recordings against the same speech clip by clip, word timings, and text out of nothing.

Builds long recordings (about 3 minutes each, seeded) from the test clips with random pauses of
0.2-1.5 s between them, and transcribes each through the app's code path (`transcribe_samples`:
chunker, Whisper's safeguards, word timestamps). The same clips are also transcribed one by one with
the same decoding options. Then 30 s of silence, of low noise and of a steady tone are transcribed.

Targets: longform_wer <= clip_wer + 0.03, first_word_start_mae_s <= 0.3 (each clip's first word start
against where the clip begins in the recording), silence_words == 0. Also first_word_onset_mae_s: the
same against where the clip's voice begins (its start plus its own leading silence, found on the clip
alone: the first 20 ms frame within 30 dB of its loudest; the shipped clips have 0.16 s).

    python benchmarks/longform.py --quick                  # one recording of ~3 min: about 2 minutes of work
    python benchmarks/longform.py                          # three recordings, about 200 of the 300 test clips
    python benchmarks/longform.py --backend ctranslate2 --chunker energy --beam-size 5 --no-fallback

Needs `dvc repro` first (models/final, models/ct2). The last line printed is one JSON object.
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.backend import default_model_dir
from svwhisper.decoding import DecodeOptions, decode_clips
from svwhisper.metrics import error_rates
from svwhisper.paramfile import load_params
from svwhisper.params import BACKENDS, CHUNKERS, Paths
from svwhisper.sources import Clip, Source, iter_clips
from svwhisper.transcribe import load_backend, transcribe_samples

REPO = Path(__file__).resolve().parents[1]

RECORDING_S = 180.0
PAUSE_S = (0.2, 1.5)


def recordings(audio: list[np.ndarray], rng: np.random.Generator, count: int) -> list[tuple[np.ndarray, list]]:
    """Up to `count` recordings of about RECORDING_S: (samples, [(clip index, start sample, end sample)])."""
    out, order, position = [], rng.permutation(len(audio)), 0
    for _ in range(count):
        parts, placed, length = [], [], 0
        while position < len(order) and length < RECORDING_S * SAMPLE_RATE:
            pause = np.zeros(int(rng.uniform(*PAUSE_S) * SAMPLE_RATE), dtype=np.float32)
            clip = audio[order[position]]
            parts += [pause, clip]
            placed.append((int(order[position]), length + len(pause), length + len(pause) + len(clip)))
            length += len(pause) + len(clip)
            position += 1
        if placed:
            parts.append(np.zeros(int(PAUSE_S[1] * SAMPLE_RATE), dtype=np.float32))
            out.append((np.concatenate(parts), placed))
    return out


def leading_silence(clip: np.ndarray) -> int:
    """Samples before the voice: the first 20 ms frame within 30 dB of the clip's loudest frame."""
    hop = SAMPLE_RATE // 50
    frames = clip[: len(clip) // hop * hop].reshape(-1, hop)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) + 1e-10
    return int(np.argmax(20 * np.log10(rms / rms.max()) > -30)) * hop


def first_word_errors(words: list, placed: list, shift: list[int] | None = None) -> tuple[list[float], int]:
    """|first word start - clip start (+ shift samples)| for each placed clip (a word belongs to the clip its middle
    falls in, the pauses split halfway); and how many clips got no word."""
    errors, missing = [], 0
    shift = shift or [0] * len(placed)
    bounds = [(s, e) for _, s, e in placed]
    for i, (start, end) in enumerate(bounds):
        low = (bounds[i - 1][1] + start) / 2 if i else 0
        high = (end + bounds[i + 1][0]) / 2 if i + 1 < len(bounds) else float("inf")
        inside = [w for w in words if low <= (w.start_s + w.end_s) / 2 * SAMPLE_RATE < high]
        if inside:
            errors.append(abs(inside[0].start_s - (start + shift[i]) / SAMPLE_RATE))
        else:
            missing += 1
    return errors, missing


def non_speech(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = 30 * SAMPLE_RATE
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(n) / SAMPLE_RATE)
    return {
        "silence": np.zeros(n, dtype=np.float32),
        "noise": rng.normal(0, 0.003, n).astype(np.float32),  # about -50 dBFS
        "tone": tone.astype(np.float32),
    }


def targets_met(result: dict) -> bool:
    """Long-form WER within 0.03 of clip by clip, first words within 0.3 s of their clip, no words out of nothing."""
    start_mae = result["first_word_start_mae_s"]
    return bool(
        result["longform_wer"] <= result["clip_wer"] + 0.03
        and start_mae is not None
        and start_mae <= 0.3
        and result["silence_words"] == 0
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one recording of ~3 min")
    parser.add_argument("--backend", choices=BACKENDS, default="transformers")
    parser.add_argument("--chunker", choices=CHUNKERS, default="vad")
    parser.add_argument("--beam-size", type=int, default=DecodeOptions.beam_size)
    parser.add_argument("--no-fallback", action="store_true", help="temperature 0 only")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clips", type=int, default=0, help="use only the first N test clips (0: all)")
    parser.add_argument("--tsv", default="test", help="which split of the shipped corpus (tests: train)")
    parser.add_argument("--model-dir", type=Path, help="default: paths.final_model, or paths.exported for ctranslate2")
    return parser.parse_args()


def clip_pass(backend, audio: list[np.ndarray], options: DecodeOptions, batch_size: int) -> tuple[list[str], float]:
    """Each clip decoded on its own, in batches: (texts, wall seconds)."""
    start, texts = time.perf_counter(), []
    for i in range(0, len(audio), batch_size):
        hyps = decode_clips(backend, audio[i : i + batch_size], dataclasses.replace(options, word_timestamps=False))
        texts += [h.text for h in hyps]
    return texts, time.perf_counter() - start


def longform_pass(backend, built, test, audio, options: DecodeOptions, args) -> dict:
    """The recordings transcribed whole: WER inputs, first-word timing errors, wall seconds."""
    start = time.perf_counter()
    refs, hyps, errors, onset_errors, missing = [], [], [], [], 0
    for samples, placed in built:
        segments = transcribe_samples(samples, backend, args.batch_size, options=options, chunker=args.chunker)
        refs.append(" ".join(test[i].sentence for i, _, _ in placed))
        hyps.append(" ".join(s.text for s in segments))
        words = [w for s in segments for w in s.words]
        found, lost = first_word_errors(words, placed)
        errors, missing = errors + found, missing + lost
        onset_errors += first_word_errors(words, placed, [leading_silence(audio[i]) for i, _, _ in placed])[0]
    wall = time.perf_counter() - start
    mae = {name: round(float(np.mean(e)), 3) if e else None for name, e in (("start", errors), ("onset", onset_errors))}
    return {"refs": refs, "hyps": hyps, "mae": mae, "missing": missing, "wall": wall}


def main() -> None:
    args = parse_args()
    model_dir = args.model_dir or default_model_dir(args.backend, load_params(Paths, "paths", REPO / "params.yaml"))
    if not (REPO / model_dir).is_dir():
        sys.exit(f"longform: no model in {model_dir}: run `make repro` (or `dvc repro`) first")
    options = DecodeOptions(
        beam_size=args.beam_size, temperatures=(0.0,) if args.no_fallback else DecodeOptions.temperatures
    )
    backend = load_backend(args.backend, REPO / model_dir)
    test = [c for c in iter_clips(Source(kind="commonvoice", path=str(REPO / "data/sample/sv-SE"), tsv=args.tsv))]
    test = [c for c in test if isinstance(c, Clip)][: args.clips or None]
    audio = [load_audio(c.audio) for c in test]
    built = recordings(audio, np.random.default_rng(args.seed), 1 if args.quick else 3)
    used = [i for _, placed in built for i, _, _ in placed]
    clip_texts, clip_wall = clip_pass(backend, [audio[i] for i in used], options, args.batch_size)
    long = longform_pass(backend, built, test, audio, options, args)
    seconds = sum(len(samples) for samples, _ in built) / SAMPLE_RATE
    silence_words = {
        name: sum(
            len(s.text.split())
            for s in transcribe_samples(samples, backend, args.batch_size, options=options, chunker=args.chunker)
        )
        for name, samples in non_speech(np.random.default_rng(args.seed)).items()
    }
    result = {
        "backend": args.backend,
        "chunker": args.chunker,
        "beam_size": options.beam_size,
        "temperatures": list(options.temperatures),
        "recordings": len(built),
        "clips": len(used),
        "audio_s": round(seconds, 1),
        "clip_wer": round(error_rates([test[i].sentence for i in used], clip_texts)["wer"], 4),
        "longform_wer": round(error_rates(long["refs"], long["hyps"])["wer"], 4),
        "first_word_start_mae_s": long["mae"]["start"],
        "first_word_onset_mae_s": long["mae"]["onset"],
        "first_word_missing": long["missing"],
        "silence_words": sum(silence_words.values()),
        "silence_words_by_input": silence_words,
        "clip_wall_s": round(clip_wall, 1),
        "longform_wall_s": round(long["wall"], 1),
        "longform_audio_s_per_s": round(seconds / long["wall"], 1),
    }
    result["targets_met"] = targets_met(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
