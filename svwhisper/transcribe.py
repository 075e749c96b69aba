"""Transcribe recordings of any length with a saved model, on either backend; write SRT/WebVTT/JSON.

    python -m svwhisper.transcribe lecture.m4a --srt lecture.srt --vtt lecture.vtt --json lecture.json
    python -m svwhisper.transcribe clip.wav --backend ctranslate2      # the int8 export (models/ct2)
    python -m svwhisper.transcribe talk.mp3 --srt talk.srt --words-per-cue 7 --beam-size 1

Backends: `transformers` (the `save_pretrained` dir of the train stage) and `ctranslate2` (the
export stage's int8 conversion, same processor), both Swedish/transcribe. Speech is found with
Silero VAD (or the energy chunker); each chunk is decoded with Whisper's safeguards (beam search,
temperature fallback, no-speech detection: svwhisper.decoding) and timed word by word. It prints
one line per segment, each word with its start and end in seconds.
"""

import argparse
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from svwhisper.audio import HOP_LENGTH, SAMPLE_RATE, load_audio
from svwhisper.decoding import (
    DecodeOptions,
    Hypothesis,
    Word,
    alignment_path,
    decode_with_fallback,
    words_from_path,
)
from svwhisper.longform import Segment, segments_of, speech_chunks, to_json, to_srt, to_vtt
from svwhisper.model_files import missing_groups
from svwhisper.params import BACKENDS, CHUNKERS, AppParams

# A chunk never holds more speech than its window: 15 tokens a second is about twice the fastest speech
# (the sample corpus peaks at 8, fast conversational Swedish at about 10), so real text is never cut,
# while a decoder caught in a repetition loop stops after 60 tokens of a 4 s window instead of 444.
MAX_TOKENS_PER_SECOND = 15


def token_cap(window_s: float, decoder_positions: int, prompt_tokens: int) -> int:
    """New tokens allowed for one chunk of a `window_s` window, within the decoder's positions."""
    return min(decoder_positions - prompt_tokens, int(window_s * MAX_TOKENS_PER_SECOND))


def token_pieces(decode, tokens: list[int]) -> list[str]:
    """Each token's share of the decoded text; a character split over several byte tokens (å, ä, ö can be) goes
    to the first of them, the others get "" (as openai/whisper's split_tokens_on_unicode)."""
    pieces, group = [], []
    for token in tokens:
        group.append(token)
        text = decode(group)
        if "\ufffd" not in text:
            pieces += [text] + [""] * (len(group) - 1)
            group = []
    if group:
        pieces += [decode(group)] + [""] * (len(group) - 1)
    return pieces


def positions_of(clip: np.ndarray, window_positions: int) -> int:
    """Encoder positions that hold the clip's audio (the rest of the window is padding)."""
    return max(1, min(window_positions, -(-len(clip) // (2 * HOP_LENGTH))))


class TransformersBackend:
    """A Whisper `save_pretrained` dir, run with transformers (generate, then one teacher-forced pass for the
    scores the safeguards need and, with word timestamps, the alignment heads' cross-attention)."""

    def __init__(self, model_dir: str | Path):
        from svwhisper.decode import PROMPT_TOKENS, load_model

        self.model, self.processor = load_model(model_dir)
        window = self.processor.feature_extractor.chunk_length
        self.max_new_tokens = token_cap(window, self.model.config.max_target_positions, PROMPT_TOKENS)
        self.prompt, self.eot, self.no_speech = special_ids(self.processor.tokenizer, self.model.generation_config)
        self.heads = getattr(self.model.generation_config, "alignment_heads", None) or []
        self.workers = 1
        # the attention implementation is the model's, shared by every thread that decodes with it: one thread at a
        # time switches it to eager for the alignment pass (others' generate calls are right with either)
        self.attention_lock = threading.Lock()

    def __call__(self, clips: list[np.ndarray], options: DecodeOptions | None = None) -> list[str]:
        """The transcript of each clip (no word timestamps unless `options` ask for them)."""
        return [h.text for h in decode_clips(self, clips, options or DecodeOptions(word_timestamps=False))]

    def features(self, clips: list[np.ndarray]) -> np.ndarray:
        features = self.processor.feature_extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="np")
        return np.ascontiguousarray(features.input_features, dtype=np.float32)

    def text(self, tokens: list[int]) -> str:
        return self.processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    def encode(self, features: np.ndarray):
        import torch

        with torch.inference_mode():
            return self.model.model.encoder(torch.as_tensor(features, dtype=self.model.dtype)).last_hidden_state

    def _teacher_forced(self, encoded, token_lists: list[list[int]], attentions: bool = False):
        import torch

        rows = [self.prompt + t + [self.eot] for t in token_lists]
        width = max(map(len, rows))
        ids = torch.tensor([r + [self.eot] * (width - len(r)) for r in rows])
        with torch.inference_mode():
            return self.model(encoder_outputs=(encoded,), decoder_input_ids=ids, output_attentions=attentions)

    def generate(self, encoded, rows: list[int], temperature: float, beam_size: int) -> list[Hypothesis]:
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        encoded = encoded[rows]
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else {}
        if temperature > 0:
            torch.manual_seed(len(rows))  # repeatable: the same input gives the same transcript
        with torch.inference_mode():
            sequences = self.model.generate(
                encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
                max_length=self.max_new_tokens + len(self.prompt),
                num_beams=beam_size,
                **sampling,
            )
        token_lists = [text_tokens(s, self.eot) for s in sequences.tolist()]
        logits = self._teacher_forced(encoded, token_lists).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        no_speech = torch.softmax(logits[:, 0], dim=-1)[:, self.no_speech]
        start = len(self.prompt) - 1  # the position that predicts the first text token
        hyps = []
        for b, tokens in enumerate(token_lists):
            targets = torch.tensor([*tokens, self.eot])
            total = logprobs[b, start : start + len(targets)].gather(1, targets[:, None]).sum().item()
            hyps.append(Hypothesis(tokens, total / len(targets), float(no_speech[b])))
        return hyps

    def words(self, encoded, hyps: list[Hypothesis], positions: list[int], offsets: list[float]) -> list[list[Word]]:
        out: list[list[Word]] = [[] for _ in hyps]
        rows = [i for i, h in enumerate(hyps) if h.tokens]
        if not rows or not self.heads:
            return out
        with self.attention_lock:
            before = self.model.config._attn_implementation
            self.model.set_attn_implementation("eager")  # sdpa does not return attention weights
            try:
                attentions = self._teacher_forced(encoded[rows], [hyps[i].tokens for i in rows], True).cross_attentions
            finally:
                self.model.set_attn_implementation(before)
        heads = np.stack([attentions[layer][:, head].float().numpy() for layer, head in self.heads], axis=1)
        first = len(self.prompt) - 1
        for b, i in enumerate(rows):
            tokens = hyps[i].tokens
            path = alignment_path(heads[b, :, first : first + len(tokens) + 1], positions[i])
            pieces = token_pieces(self.processor.tokenizer.decode, tokens)
            out[i] = words_from_path(pieces, *path, offsets[i])
        return out


def text_tokens(sequence: list[int], eot: int) -> list[int]:
    """The text tokens of a generated sequence: up to the end of text, without special tokens."""
    tokens = sequence[: sequence.index(eot)] if eot in sequence else sequence
    return [t for t in tokens if t < eot]


def special_ids(tokenizer, generation) -> tuple[list[int], int, int]:
    """(prompt ids: start, language, task, no timestamps; end of text; the no-speech token) of a saved model."""
    language = generation.language if generation.language.startswith("<|") else f"<|{generation.language}|>"
    prompt = ["<|startoftranscript|>", language, f"<|{generation.task}|>", "<|notimestamps|>"]
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    no_speech = tokenizer.convert_tokens_to_ids("<|nospeech|>")
    if no_speech in (None, eot, tokenizer.unk_token_id):  # older multilingual vocabularies name it so
        no_speech = tokenizer.convert_tokens_to_ids("<|nocaptions|>")
    return tokenizer.convert_tokens_to_ids(prompt), eot, no_speech


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

    features = TransformersBackend.features
    text = TransformersBackend.text
    __call__ = TransformersBackend.__call__  # the same: decode_clips over this backend's encode/generate/words

    def encode(self, features: np.ndarray) -> np.ndarray:
        import ctranslate2

        encoded = self.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)), to_cpu=True)
        return np.array(encoded)

    def generate(self, encoded: np.ndarray, rows: list[int], temperature: float, beam_size: int) -> list[Hypothesis]:
        import ctranslate2

        results = self.model.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded[rows])),
            [self.prompt] * len(rows),
            max_length=self.max_length,
            beam_size=beam_size,
            sampling_temperature=max(temperature, 1e-6) if temperature > 0 else 1.0,
            sampling_topk=0 if temperature > 0 else 1,
            return_scores=True,
            return_no_speech_prob=True,
        )
        hyps = []
        for result in results:
            tokens = text_tokens(result.sequences_ids[0], self.eot)
            # CTranslate2's score is the sum of log-probabilities divided by the length (length_penalty 1)
            total = result.scores[0] * max(1, len(tokens))
            hyps.append(Hypothesis(tokens, total / (len(tokens) + 1), result.no_speech_prob))
        return hyps

    def words(self, encoded, hyps: list[Hypothesis], positions: list[int], offsets: list[float]) -> list[list[Word]]:
        import ctranslate2

        out: list[list[Word]] = [[] for _ in hyps]
        rows = [i for i, h in enumerate(hyps) if h.tokens]
        if not rows:
            return out
        alignments = self.model.align(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded[rows])),
            self.prompt[:3],  # start, language, task: CTranslate2 adds <|notimestamps|> itself
            [hyps[i].tokens for i in rows],
            [2 * positions[i] for i in rows],
        )
        for i, result in zip(rows, alignments, strict=True):
            path = np.array([p[0] for p in result.alignments]), np.array([p[1] for p in result.alignments])
            pieces = token_pieces(self.processor.tokenizer.decode, hyps[i].tokens)
            out[i] = words_from_path(pieces, *path, offsets[i])
        return out


def usable_cores() -> int:
    """The CPU cores this process may use (Linux: its affinity), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def decode_clips(backend, clips: list[np.ndarray], options: DecodeOptions, offsets: list[float] | None = None):
    """Hypotheses (with `.words`) for 16 kHz `clips`: the safeguards of `options`, split over the backend's workers
    (each part encoded once; generate, fallbacks and alignment reuse that)."""
    offsets = offsets if offsets is not None else [0.0] * len(clips)
    window = backend.processor.feature_extractor.nb_max_frames // 2

    def part(indices: list[int]) -> list[Hypothesis]:
        encoded = backend.encode(backend.features([clips[i] for i in indices]))
        hyps = decode_with_fallback(backend, encoded, len(indices), options)
        if options.word_timestamps:
            positions = [positions_of(clips[i], window) for i in indices]
            timed = backend.words(encoded, hyps, positions, [offsets[i] for i in indices])
            for hyp, words in zip(hyps, timed, strict=True):
                hyp.words = words
        else:
            for hyp in hyps:
                hyp.words = []
        return hyps

    parts = [list(p) for p in np.array_split(np.arange(len(clips)), min(backend.workers, len(clips))) if len(p)]
    if len(parts) <= 1:
        return part(parts[0]) if parts else []
    with ThreadPoolExecutor(len(parts)) as pool:  # CTranslate2 releases the GIL: one replica per part
        return [hyp for hyps in pool.map(part, parts) for hyp in hyps]


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


def load_backend(name: str, model_dir: str | Path):
    """The backend `name` ("transformers" or "ctranslate2") over `model_dir`."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if problem := missing_model(model_dir, name):
        raise FileNotFoundError(problem)
    return TransformersBackend(model_dir) if name == "transformers" else CTranslate2Backend(model_dir)


def chunks_of(samples: np.ndarray, window_s: float, chunker: str) -> list:
    """The chunks `chunker` cuts `samples` into: Silero VAD's speech regions, or the energy chunker's phrases."""
    if chunker == "vad":
        from svwhisper.vad import vad_chunks

        return vad_chunks(samples, window_s)
    return speech_chunks(samples, window_s=window_s, overlap_s=min(1.0, window_s / 4))


def transcribe_samples(
    samples: np.ndarray,
    backend,
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
    for chunk, hyp in zip(chunks, hyps, strict=True):
        if hyp.words:  # the alignment cannot place the first word's start within the audio before it: the voice
            first = hyp.words[0]  # onset the chunker found is where it starts
            start = min(max(first.start_s, round(chunk.speech_start / SAMPLE_RATE, 2)), first.end_s)
            hyp.words[0] = Word(start, first.end_s, first.text)
    return segments_of(chunks, [h.text for h in hyps], [h.words for h in hyps])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio", type=Path, help="any file libsndfile or FFmpeg can decode")
    parser.add_argument("--backend", choices=BACKENDS, default=AppParams().backend)
    parser.add_argument("--model-dir", help="default: paths.final_model, or paths.exported for ctranslate2")
    parser.add_argument("--srt", type=Path, help="write SubRip subtitles here")
    parser.add_argument("--vtt", type=Path, help="write WebVTT subtitles here")
    parser.add_argument("--json", type=Path, help="write the segments with every word's start and end here")
    parser.add_argument("--words-per-cue", type=int, default=0, help="SRT/VTT cues of at most N words (0: a segment)")
    app = AppParams()  # the app's settings are the CLI's defaults
    parser.add_argument("--batch-size", type=int, default=app.batch_size)
    parser.add_argument("--chunker", choices=CHUNKERS, default=app.chunker)
    defaults = app.decoding()
    parser.add_argument("--beam-size", type=int, default=defaults.beam_size)
    parser.add_argument(
        "--temperatures", type=float, nargs="+", default=list(defaults.temperatures), help="0 alone: no fallback"
    )
    parser.add_argument("--compression-ratio-threshold", type=float, default=defaults.compression_ratio_threshold)
    parser.add_argument("--logprob-threshold", type=float, default=defaults.logprob_threshold)
    parser.add_argument("--no-speech-threshold", type=float, default=defaults.no_speech_threshold)
    parser.add_argument("--no-word-timestamps", action="store_true", help="skip word timings (a little faster)")
    args = parser.parse_args()
    options = DecodeOptions(
        beam_size=args.beam_size,
        temperatures=tuple(args.temperatures),
        compression_ratio_threshold=args.compression_ratio_threshold,
        logprob_threshold=args.logprob_threshold,
        no_speech_threshold=args.no_speech_threshold,
        word_timestamps=not args.no_word_timestamps,
    )
    if args.model_dir is None:
        from svwhisper.paramfile import load_params
        from svwhisper.params import Paths

        args.model_dir = default_model_dir(args.backend, load_params(Paths, "paths"))
    try:
        backend = load_backend(args.backend, args.model_dir)
        samples = load_audio(args.audio)
        segments = transcribe_samples(samples, backend, args.batch_size, options=options, chunker=args.chunker)
    except (FileNotFoundError, ValueError) as err:  # AudioError is a ValueError
        sys.exit(f"transcribe: {err}")
    for segment in segments:
        timed = " ".join(f"{w.text}[{w.start_s:.2f}-{w.end_s:.2f}]" for w in segment.words)
        print(f"[{segment.start_s:8.2f} -> {segment.end_s:8.2f}] {timed or segment.text}")
    if args.srt:
        args.srt.write_text(to_srt(segments, args.words_per_cue), encoding="utf-8")
    if args.vtt:
        args.vtt.write_text(to_vtt(segments, args.words_per_cue), encoding="utf-8")
    if args.json:
        args.json.write_text(to_json(segments), encoding="utf-8")


if __name__ == "__main__":
    main()
