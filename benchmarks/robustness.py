"""Robustness of any model folder, either backend: non-speech without VAD, speech flagged as no speech, loops, and
words lost in a long recording (svwhisper.robustness, the measures `evaluate` writes for the fine-tuned model).

The held-out non-speech clips are the featurize stage's test set, generated again from `featurize.nonspeech`'s
seed (every kind in turn, the whole window long); the speech is the prepared test split. Each clip is decoded
from its 16 kHz audio through the backend's own feature extractor, as the app decodes a chunk (`app.decoding`,
no VAD), then greedily without fallback for the loop count; the long recording goes through the app's chunker.
The same non-speech clips, one after another, go through live captions with VAD switched off (`app.live`, `vad:
false`), fed a tenth of a second at a time: the words it commits, and the most tentative words it showed at once.
A 30 s model (Whisper as released) gets 4 s clips padded to its window, as it would from the page.

    python benchmarks/robustness.py --model-dir models/base                        # Whisper base as released, 4 s
    python benchmarks/robustness.py --backend ctranslate2 --model-dir models/ct2   # the fine-tuned int8 export
    python benchmarks/robustness.py --model-dir models/final --clips 60 --no-longform

Needs `dvc repro` (data/prepared, the model). The last line printed is one JSON object.
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.decoding import decode_clips
from svwhisper.nonspeech import corpus_edges, generate
from svwhisper.paramfile import load_params
from svwhisper.params import BACKENDS, AppParams, FeaturizeParams, LiveParams, ModelParams, Paths
from svwhisper.robustness import (
    GREEDY,
    longform_measures,
    nonspeech_measures,
    recording,
    speech_measures,
    without_words,
)
from svwhisper.streaming import StreamingTranscriber
from svwhisper.transcribe import load_backend, transcribe_samples


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=BACKENDS, default="transformers")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=0, help="the first N test speech clips (0: all)")
    parser.add_argument("--no-longform", action="store_true", help="skip the long recording")
    parser.add_argument("--no-live", action="store_true", help="skip live captions on the non-speech clips")
    parser.add_argument("--batch-size", type=int, default=8)
    return parser.parse_args()


def decoded(backend, clips: list, options, batch_size: int) -> list:
    return [
        h for i in range(0, len(clips), batch_size) for h in decode_clips(backend, clips[i : i + batch_size], options)
    ]


def live_without_vad(backend, clips: list, live: LiveParams, options) -> dict:
    """Live captions (VAD off) over `clips` played one after another, fed 0.1 s at a time."""
    transcriber = StreamingTranscriber(backend, dataclasses.replace(live, vad=False), options)
    samples, piece = np.concatenate(clips), SAMPLE_RATE // 10
    committed, shown = 0, 0
    for first in range(0, len(samples), piece):
        update = transcriber.feed(samples[first : first + piece])
        committed, shown = committed + len(update.committed), max(shown, len(update.tentative))
    committed += len(transcriber.finish().committed)
    return {
        "live_nonspeech_s": round(len(samples) / SAMPLE_RATE, 1),
        "live_nonspeech_decodes": transcriber.decodes,
        "live_nonspeech_words": committed,
        "live_nonspeech_most_tentative_words": shown,
        "live_nonspeech_text": " ".join(transcriber.lines()),
    }


def main() -> None:
    args = parse_args()
    paths, app = load_params(Paths, "paths"), load_params(AppParams, "app")
    nonspeech_params = load_params(FeaturizeParams, "featurize").nonspeech
    options = without_words(app.decoding)
    test_file = Path(paths.prepared) / "test.parquet"
    test = pd.read_parquet(test_file, columns=["id", "sentence", "audio"])
    speech = [load_audio(a, name=i) for a, i in zip(test["audio"], test["id"], strict=True)]
    window_s = load_params(ModelParams, "model").chunk_length_s  # as featurize makes them (a 30 s model pads them)
    held_out = generate(
        "test",
        nonspeech_params.eval_clips,
        nonspeech_params.seed,
        window_s,
        edges=corpus_edges(test_file),
        full_window=True,
    )
    backend = load_backend(args.backend, args.model_dir)
    start = time.perf_counter()
    nonspeech = decoded(backend, [samples for _, _, samples in held_out], options, args.batch_size)
    chosen = speech[: args.clips or None]
    hyps = decoded(backend, chosen, options, args.batch_size)
    result = {"backend": args.backend, "model_dir": str(args.model_dir)}
    result["window_s"] = backend.processor.feature_extractor.chunk_length
    result |= nonspeech_measures(nonspeech) | speech_measures(
        hyps, decoded(backend, chosen, GREEDY, args.batch_size), options
    )
    result["nonspeech_texts"] = {
        clip_id: h.text for (clip_id, _, _), h in zip(held_out, nonspeech, strict=True) if h.text
    }
    if not args.no_live:
        result |= live_without_vad(backend, [samples for _, _, samples in held_out], app.live, app.decoding)
    if not args.no_longform:
        long, used = recording(speech)
        segments = transcribe_samples(long, backend, args.batch_size, options=options, chunker=app.chunker)
        clip_texts = [h.text for h in decoded(backend, [speech[i] for i in used], options, args.batch_size)]
        texts = " ".join(s.text for s in segments)
        result |= longform_measures([test["sentence"].iloc[i] for i in used], clip_texts, texts)
        result["longform_audio_s"] = round(len(long) / SAMPLE_RATE, 1)
    result["decoding"] = dataclasses.asdict(options)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, ensure_ascii=False))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
