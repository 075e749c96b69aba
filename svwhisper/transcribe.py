"""Transcribe recordings of any length with a saved model, on either backend; write SRT/WebVTT.

    python -m svwhisper.transcribe lecture.m4a --srt lecture.srt --vtt lecture.vtt
    python -m svwhisper.transcribe clip.wav --backend ctranslate2      # the int8 export (models/ct2)

Backends: `transformers` (the `save_pretrained` dir of the train stage) and `ctranslate2` (the
export stage's int8 conversion, same processor). Both decode Swedish/transcribe greedily.
"""

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.longform import Segment, segments_of, speech_chunks, to_srt, to_vtt

BACKENDS = ("transformers", "ctranslate2")
# A chunk never holds more speech than its window: 15 tokens a second is about twice the fastest speech
# (the sample corpus peaks at 8, fast conversational Swedish at about 10), so real text is never cut,
# while a decoder caught in a repetition loop stops after 60 tokens of a 4 s window instead of 444.
MAX_TOKENS_PER_SECOND = 15


def token_cap(window_s: float, decoder_positions: int, prompt_tokens: int) -> int:
    """New tokens allowed for one chunk of a `window_s` window, within the decoder's positions."""
    return min(decoder_positions - prompt_tokens, int(window_s * MAX_TOKENS_PER_SECOND))


class TransformersBackend:
    """A Whisper `save_pretrained` dir, run with transformers' generate."""

    def __init__(self, model_dir: str | Path):
        from svwhisper.decode import PROMPT_TOKENS, load_model

        self.model, self.processor = load_model(model_dir)
        window = self.processor.feature_extractor.chunk_length
        self.max_new_tokens = token_cap(window, self.model.config.max_target_positions, PROMPT_TOKENS)

    def __call__(self, clips: list[np.ndarray]) -> list[str]:
        from svwhisper.decode import generate_text

        features = self.processor.feature_extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="np")
        return generate_text(self.model, self.processor, features.input_features, self.max_new_tokens)


class CTranslate2Backend:
    """The export stage's CTranslate2 conversion (int8 weights), with the same processor files.

    A batch is split across `workers` model replicas of one thread each, run at the same time
    (CTranslate2's inter_threads; faster-whisper's num_workers): on a small model one thread per
    replica beats several threads on one replica, whose per-token decoder steps are too small to
    share. `workers` defaults to the CPU cores this process may use.
    """

    def __init__(self, model_dir: str | Path, compute_type: str = "int8", workers: int = 0):
        import ctranslate2
        from transformers import GenerationConfig, WhisperProcessor

        self.workers = workers or len(os.sched_getaffinity(0))
        self.model = ctranslate2.models.Whisper(
            str(model_dir), device="cpu", compute_type=compute_type, intra_threads=1, inter_threads=self.workers
        )
        self.processor = WhisperProcessor.from_pretrained(model_dir)
        generation = GenerationConfig.from_pretrained(model_dir)  # the language and task the model was saved with
        language = generation.language if generation.language.startswith("<|") else f"<|{generation.language}|>"
        prompt = ["<|startoftranscript|>", language, f"<|{generation.task}|>", "<|notimestamps|>"]
        self.prompt = self.processor.tokenizer.convert_tokens_to_ids(prompt)
        window = self.processor.feature_extractor.chunk_length
        # CTranslate2's Whisper samples at most max_length / 2 new tokens (openai/whisper's sample_len), so the
        # same cap as the transformers backend is twice that, within the decoder's positions
        self.max_length = min(2 * token_cap(window, generation.max_length, len(self.prompt)), generation.max_length)

    def __call__(self, clips: list[np.ndarray]) -> list[str]:
        import ctranslate2

        features = self.processor.feature_extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="np")
        features = np.ascontiguousarray(features.input_features, dtype=np.float32)
        pending = [
            self.model.generate(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(part)),
                [self.prompt] * len(part),
                max_length=self.max_length,
                beam_size=1,
                asynchronous=True,
            )
            for part in np.array_split(features, min(self.workers, len(clips)))
        ]
        decode = self.processor.tokenizer.decode
        return [decode(r.result().sequences_ids[0], skip_special_tokens=True).strip() for part in pending for r in part]


def default_model_dir(backend: str, paths) -> str:
    """Where the pipeline writes the model `backend` runs: the export stage's dir, or the train stage's."""
    return paths.exported if backend == "ctranslate2" else paths.final_model


# the files each backend cannot load without (any one of a tuple)
PROCESSOR = ("processor_config.json", "preprocessor_config.json")
TRANSFORMERS_FILES = (("config.json",), ("model.safetensors", "pytorch_model.bin"), ("tokenizer.json",), PROCESSOR)
CT2_FILES = (("config.json",), ("model.bin",), ("vocabulary.json", "vocabulary.txt"), ("tokenizer.json",), PROCESSOR)


def missing_model(model_dir: str | Path, backend: str) -> str:
    """A message saying what to run when `model_dir` holds no model for `backend`, else ""."""
    needed = CT2_FILES if backend == "ctranslate2" else TRANSFORMERS_FILES
    present = [names for names in needed if any((Path(model_dir) / n).is_file() for n in names)]
    fix = "run `make repro` (builds it) or `dvc pull` (fetches it)"
    if not present:
        return f"no model in {model_dir} for the {backend} backend: {fix}"
    if missing := [" or ".join(names) for names in needed if names not in present]:
        return (
            f"the model in {model_dir} is incomplete (no {', '.join(missing)}): an interrupted `dvc pull` or copy? "
            f"`dvc pull -f` fetches it whole; or {fix}"
        )
    return ""


def load_backend(name: str, model_dir: str | Path):
    """The backend `name` ("transformers" or "ctranslate2") over `model_dir`."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if problem := missing_model(model_dir, name):
        raise FileNotFoundError(problem)
    return TransformersBackend(model_dir) if name == "transformers" else CTranslate2Backend(model_dir)


def transcribe_samples(
    samples: np.ndarray,
    backend,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> list[Segment]:
    """16 kHz mono samples of any length -> timed segments (empty when there is no speech).

    Chunks fit the model window, cut at pauses (see svwhisper.longform); `batch_size` chunks are
    decoded per call; `progress(done, total)` is told after each batch.
    """
    window_s = backend.processor.feature_extractor.chunk_length
    chunks = speech_chunks(samples, window_s=window_s, overlap_s=min(1.0, window_s / 4))
    texts: list[str] = []
    for start in range(0, len(chunks), batch_size):
        batch = chunks[start : start + batch_size]
        texts += backend([samples[c.start : c.end] for c in batch])
        if progress is not None:
            progress(start + len(batch), len(chunks))
    return segments_of(chunks, texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio", type=Path, help="any file libsndfile or FFmpeg can decode")
    parser.add_argument("--backend", choices=BACKENDS, default="transformers")
    parser.add_argument("--model-dir", help="default: paths.final_model, or paths.exported for ctranslate2")
    parser.add_argument("--srt", type=Path, help="write SubRip subtitles here")
    parser.add_argument("--vtt", type=Path, help="write WebVTT subtitles here")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    if args.model_dir is None:
        from svwhisper.params import Paths, load_params

        args.model_dir = default_model_dir(args.backend, load_params(Paths, "paths"))
    try:
        backend = load_backend(args.backend, args.model_dir)
        segments = transcribe_samples(load_audio(args.audio), backend, args.batch_size)
    except (FileNotFoundError, ValueError) as err:  # AudioError is a ValueError
        sys.exit(f"transcribe: {err}")
    print(" ".join(s.text for s in segments))
    if args.srt:
        args.srt.write_text(to_srt(segments), encoding="utf-8")
    if args.vtt:
        args.vtt.write_text(to_vtt(segments), encoding="utf-8")


if __name__ == "__main__":
    main()
