"""Whisper as released, the model a user runs instead of fine-tuning: the peers stage's settings and decoders.

The `peers` block of params.yaml is typed here, not in svwhisper.params: the peers stage depends on none of the
training code, and a new knob for it must not rerun training (params.py is a code dep of every stage).
`write_released` lays the released model out as each decoder loads it: Systran's CTranslate2 files (sha256-verified,
for faster-whisper and our CTranslate2 backend) and a transformers save_pretrained dir (our transformers backend,
transformers' pipeline), both with Swedish/transcribe set and the same processor files.
"""

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from svwhisper import whisper_base
from svwhisper.decoding import decode_clips
from svwhisper.metrics import error_rates
from svwhisper.modeling import load_pretrained, set_language_and_task
from svwhisper.paramfile import ParamsRangeError, at_least, one_of
from svwhisper.params import QUANTIZATIONS, SAFE_PATH, DecodeOptions
from svwhisper.robustness import GREEDY, nonspeech_measures, speech_measures

RELEASED_WINDOW_S = 30
DECODERS = ("faster_whisper", "transformers")  # metrics keys and TSV columns
# OpenAI's released checkpoints, whose size is also the name faster-whisper fetches Systran's conversion by
RELEASED = re.compile(r"openai/whisper-(?:(?:tiny|base|small|medium)(?:\.en)?|large(?:-v[123])?|large-v3-turbo)")


@dataclass(frozen=True)
class PeersParams:
    model: str = whisper_base.NAME  # the released model (openai/whisper-<size> needs the hub)
    faster_whisper_compute_type: str = "int8"  # faster-whisper's weights, as it runs on a CPU
    batch_size: int = 8  # clips per call of our transformers backend
    max_clips: int = 0  # 0 = the whole test split; a number = its first clips, and of the non-speech set (quick runs)
    transformers_max_clips: int = 40  # our Python decoder runs each of the released model's loops to the token cap
    metrics: str = "metrics/peers.json"
    predictions: str = "reports/peers.tsv"

    def check(self) -> None:
        at_least(self, 1, "batch_size")
        at_least(self, 0, "max_clips", "transformers_max_clips")
        one_of(self, "faster_whisper_compute_type", QUANTIZATIONS)
        if self.model != whisper_base.NAME and not RELEASED.fullmatch(self.model):
            sizes = "tiny, base, small, medium (each also .en), large, large-v1..v3, large-v3-turbo"
            raise ParamsRangeError(
                "model", f"must be {whisper_base.NAME} or openai/whisper-<size> ({sizes}), got {self.model!r}"
            )
        for key in ("metrics", "predictions"):  # pasted into dvc.yaml's command
            if not SAFE_PATH.fullmatch(getattr(self, key)) or ".." in Path(getattr(self, key)).parts:
                raise ParamsRangeError(key, "must be a path of letters, digits and . _ + - / without '..'")


def load_released(name: str, language: str, task: str):
    """The released `name` in memory, `language` and `task` set: (model, processor)."""
    model, processor = whisper_base.load_whisper_base() if name == whisper_base.NAME else load_pretrained(name)
    if processor.feature_extractor.chunk_length != RELEASED_WINDOW_S:
        raise ValueError(f"{name} has a {processor.feature_extractor.chunk_length} s window, not as released")
    set_language_and_task(model, processor, language, task)
    return model, processor


def write_released(name: str, folder: Path, language: str, task: str) -> tuple[str, Path]:
    """The released `name` in `folder`: (what faster_whisper.WhisperModel loads: the CTranslate2 dir, or for a hub
    id the size, which faster-whisper fetches as Systran's conversion; the transformers dir)."""
    model, processor = load_released(name, language, task)
    model.save_pretrained(folder / "hf")
    processor.save_pretrained(folder / "hf")
    if name != whisper_base.NAME:
        return name.removeprefix("openai/whisper-"), folder / "hf"
    (folder / "ct2").mkdir(parents=True, exist_ok=True)
    for file, content in whisper_base.verified_files().items():
        (folder / "ct2" / file).write_bytes(content)
    processor.save_pretrained(folder / "ct2")  # our CTranslate2 backend reads the processor and generation config
    model.generation_config.save_pretrained(folder / "ct2")
    return str(folder / "ct2"), folder / "hf"


def by_faster_whisper(model: str, clips, options: DecodeOptions, language: str, task: str, compute_type: str):
    """Each clip's text from faster-whisper's `WhisperModel.transcribe` with `options` (its defaults otherwise)."""
    from faster_whisper import WhisperModel

    whisper = WhisperModel(model, device="cpu", compute_type=compute_type)
    texts = []
    for clip in tqdm(clips, desc="peers faster-whisper", unit="clip"):
        segments, _ = whisper.transcribe(
            clip,
            language=language,
            task=task,
            beam_size=options.beam_size,
            temperature=list(options.temperatures),
            compression_ratio_threshold=options.compression_ratio_threshold,
            log_prob_threshold=options.logprob_threshold,
            no_speech_threshold=options.no_speech_threshold,
        )
        texts.append(" ".join(s.text.strip() for s in segments).strip())
    return texts


def by_transformers(backend, clips, options: DecodeOptions, batch_size: int, name: str = "transformers") -> list:
    """Each clip's Hypothesis from our transformers backend (svwhisper.decoding, as evaluate decodes)."""
    hyps = []
    for start in tqdm(range(0, len(clips), batch_size), desc=f"peers {name}", unit="batch"):
        hyps += decode_clips(backend, clips[start : start + batch_size], options)
    return hyps


def released_robustness(backend, nonspeech, speech_hyps, speech, options: DecodeOptions, batch_size: int) -> dict:
    """svwhisper.robustness's measures of the released model through our decoder: the held-out `nonspeech` clips
    decoded with `options` (no VAD), and the `speech` clips whose `options` results are `speech_hyps`, greedily."""
    silent = by_transformers(backend, nonspeech, options, batch_size, "non-speech")
    greedy = by_transformers(backend, speech, GREEDY, batch_size, "greedy")
    return nonspeech_measures(silent) | speech_measures(speech_hyps, greedy, options)


def scores(references: list[str], hyps: list[str]) -> dict:
    normalised, orthographic = error_rates(references, hyps), error_rates(references, hyps, normalized=False)
    return {
        "wer": round(normalised["wer"], 4),
        "cer": round(normalised["cer"], 4),
        "wer_orthographic": round(orthographic["wer"], 4),
        "cer_orthographic": round(orthographic["cer"], 4),
        "n_utterances": len(references),
    }


def metrics_of(references: list[str], texts: dict[str, list[str]], name: str, options: DecodeOptions) -> dict:
    """Each decoder's scores over the clips it decoded (the first ones of `references`), and faster-whisper's over
    the clips both decoded."""
    metrics: dict = {"model": name, "window_s": RELEASED_WINDOW_S}
    for decoder, hyps in texts.items():
        metrics[decoder] = scores(references[: len(hyps)], hyps)
    both = min(len(hyps) for hyps in texts.values())
    metrics["faster_whisper_on_the_same_clips"] = scores(references[:both], texts["faster_whisper"][:both])
    return metrics | {"decoding": dataclasses.asdict(options), "n_utterances": len(references)}
