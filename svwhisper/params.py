"""Every setting of svwhisper, in one place: one frozen dataclass per block of `params.yaml`.

Each default is the value `params.yaml` ships (a test loads every block and compares), so code that
builds `TrainParams()` runs what a user runs. Stages, the app, the CLIs and the benchmarks read their
block with `svwhisper.paramfile.load_params(Block, "name")`; values are coerced to the field types and each
block's `check()` refuses what makes no sense, naming the file, line and key.
"""

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from svwhisper.paramfile import ParamsRangeError, at_least, one_of, within

SPLITS = ("train", "dev", "test")
HELD_OUT_NONSPEECH = {"dev": "dev_nonspeech", "test": "test_nonspeech"}  # feature dirs of the non-speech sets
PACKAGED_BASE = "packaged:openai/whisper-base"  # model.name of OpenAI Whisper base from the verified packages
BACKENDS = ("transformers", "ctranslate2")
CHUNKERS = ("vad", "energy")
EVALUATE_DECODING = ("app", "greedy")
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32")
# the launchers the train stage's command may start with, options only: no shell syntax reaches dvc.yaml's cmd
LAUNCHER = re.compile(r"(python3?|torchrun|accelerate launch)( --[a-z][a-z0-9_-]*([= ][A-Za-z0-9_.:/-]+)?)*")
# a path of the `paths` block, pasted into dvc.yaml's shell commands: no spaces, quotes, `$`, `;`, nor a leading `-`
SAFE_PATH = re.compile(r"/?[A-Za-z0-9_][A-Za-z0-9_.+/-]*")
TSV_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a Common Voice TSV's name, without folders
# the fields each kind of data source needs (besides `kind`); fields of other kinds must be left unset
KIND_FIELDS = {"commonvoice": {"path", "tsv"}, "manifest": {"path"}, "folder": {"path"}, "hf": {"name"}}
HF_ONLY = ("name", "config", "split", "revision", "streaming", "audio_column", "text_column", "speaker_column")


@dataclass(frozen=True)
class Paths:
    """The `paths` block: every file and dir the stages and the app share (dvc.yaml uses ${paths.*})."""

    prepared: str = "data/prepared"
    prepare_report: str = "reports/prepare.json"
    base_model: str = "models/base"
    features: str = "data/features"
    final_model: str = "models/final"
    exported: str = "models/ct2"
    checkpoints: str = "checkpoints"
    train_log: str = "dvclive"
    metrics: str = "metrics/eval.json"
    predictions: str = "reports/predictions.tsv"
    errors: str = "reports/errors.json"

    def check(self) -> None:
        for key, value in dataclasses.asdict(self).items():  # each is pasted into dvc.yaml's shell commands
            if not SAFE_PATH.fullmatch(value) or ".." in Path(value).parts:
                raise ParamsRangeError(
                    key, f"must be a path of letters, digits and . _ + - / without '..', got {value!r}"
                )


@dataclass(frozen=True)
class Source:
    """One entry of `prepare.sources.<split>`."""

    kind: str  # commonvoice | manifest | folder | hf
    path: str = ""  # commonvoice: locale dir; manifest: .csv/.tsv file; folder: dir; hf: local data files (glob)
    tsv: str = ""  # commonvoice: train, dev, test, validated, other, ...
    name: str = ""  # hf: hub id (fixie-ai/common_voice_17_0) or a file builder (parquet, csv, audiofolder)
    config: str = ""  # hf: configuration, e.g. sv-SE
    split: str = "train"  # hf: split of that dataset
    revision: str = ""  # hf: commit or tag to pin, so that a rerun reads the same data
    streaming: bool = False  # hf: read rows as they download instead of caching the whole set first
    audio_column: str = "audio"  # hf: column holding audio ({bytes, path} or a path)
    text_column: str = "sentence"  # hf: column holding the transcript
    speaker_column: str = ""  # hf: column naming the speaker ("" = unknown)

    def check(self) -> None:
        if self.kind not in KIND_FIELDS:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(KIND_FIELDS)}")
        for field in KIND_FIELDS[self.kind]:
            if not getattr(self, field):
                raise ValueError(f"a {self.kind} source needs {field!r}")
        if self.tsv and self.kind != "commonvoice":
            raise ValueError(f"'tsv' is for commonvoice sources, not {self.kind}")
        if self.tsv and not TSV_NAME.fullmatch(self.tsv):
            raise ValueError(f"'tsv' is the name of a TSV of the release (train, dev, test, ...), got {self.tsv!r}")
        defaults = Source(kind=self.kind)
        stray = [f for f in HF_ONLY if self.kind != "hf" and getattr(self, f) != getattr(defaults, f)]
        if stray:
            raise ValueError(f"{', '.join(stray)} only apply to hf sources, not {self.kind}")

    def describe(self) -> str:
        """A short name for logs and the report, e.g. `commonvoice:data/cv/sv-SE/train.tsv`."""
        if self.kind == "commonvoice":
            return f"commonvoice:{Path(self.path) / self.tsv}.tsv"
        if self.kind == "hf":
            parts = [self.name, self.config, self.split, self.path]
            return "hf:" + "/".join(p for p in parts if p)
        return f"{self.kind}:{self.path}"

    def local_paths(self) -> list[Path]:
        """Files or dirs on this machine that the source reads (none for a hub dataset)."""
        if not self.path:
            return []
        if self.kind == "commonvoice":
            return [Path(self.path), Path(self.path) / f"{self.tsv}.tsv"]
        return [Path(self.path.split("*")[0] or ".")]  # a glob's fixed prefix


def _sample(tsv: str) -> tuple[Source, ...]:
    return (Source(kind="commonvoice", path="data/sample/sv-SE", tsv=tsv),)


@dataclass(frozen=True)
class Sources:
    """`prepare.sources`: for each split, the sources whose clips it merges, in order."""

    train: tuple[Source, ...] = _sample("train")
    dev: tuple[Source, ...] = _sample("dev")
    test: tuple[Source, ...] = _sample("test")

    def check(self) -> None:
        for split in SPLITS:
            if not getattr(self, split):
                raise ValueError(f"split {split!r} has no sources")


@dataclass(frozen=True)
class PrepareParams:
    sources: Sources = Sources()
    local_data: str = "data/sample"  # the dir DVC watches; every local source must lie inside it
    min_duration_s: float = 0.3
    max_duration_s: float = 4.0
    max_sentence_chars: int = 250
    min_chars_per_second: float = 2.0
    max_chars_per_second: float = 30.0
    min_vote_margin: int = 0
    drop_test_speakers_from_train: bool = False
    max_clips_per_split: int = 0
    decode_threads: int = 2  # clips decoded at once (libsndfile, FFmpeg and soxr release the GIL)
    train_fraction: float = 1.0  # keep this share of the training clips (a learning curve); dev and test stay whole
    subset_seed: int = 0  # which clips the share keeps: a smaller share's clips are inside a larger one's

    def check(self) -> None:
        at_least(self, 1, "decode_threads")
        at_least(self, 0, "subset_seed")
        if not 0 < self.train_fraction <= 1:
            raise ParamsRangeError("train_fraction", f"must be in (0, 1], got {self.train_fraction}")
        if not 0 <= self.min_duration_s < self.max_duration_s:
            raise ValueError("need 0 <= min_duration_s < max_duration_s")
        if not 0 <= self.min_chars_per_second < self.max_chars_per_second:
            raise ValueError("need 0 <= min_chars_per_second < max_chars_per_second")
        if self.max_clips_per_split < 0 or self.max_sentence_chars < 1:
            raise ValueError("max_clips_per_split must be >= 0 (0 = all) and max_sentence_chars >= 1")
        watched = Path(self.local_data).resolve()
        for split in SPLITS:
            for index, source in enumerate(getattr(self.sources, split)):
                for local in source.local_paths():
                    if not local.resolve().is_relative_to(watched):
                        raise ValueError(
                            f"sources.{split}[{index}]: {local} is outside local_data ({self.local_data}), "
                            "so DVC would not notice when it changes; move it there or set local_data to a dir "
                            "holding all local sources"
                        )


@dataclass(frozen=True)
class TextParams:
    normalize_labels: bool = False  # train on normalize(sentence) instead of the sentence as written


@dataclass(frozen=True)
class ModelParams:
    name: str = PACKAGED_BASE  # PACKAGED_BASE, scratch, a hub id or a local dir
    language: str = "sv"
    task: str = "transcribe"
    chunk_length_s: int = 4  # audio window: a pretrained encoder is cut to it (30 = as released)
    vocab_size: int = 320  # the rest shapes the scratch model only
    num_mel_bins: int = 80
    d_model: int = 160
    encoder_layers: int = 2
    decoder_layers: int = 2
    attention_heads: int = 4
    ffn_dim: int = 640
    max_target_positions: int = 64
    seed: int = 0

    def check(self) -> None:
        if not self.name.strip():
            raise ValueError(f"name must be scratch, {PACKAGED_BASE}, a hub id or a local dir")
        if not 1 <= self.chunk_length_s <= 30:
            window = self.chunk_length_s
            raise ParamsRangeError("chunk_length_s", f"must be 1..30 s (Whisper's window is 30), got {window}")
        one_of(self, "task", ("transcribe", "translate"))
        if self.vocab_size <= 256:
            raise ParamsRangeError("vocab_size", f"must exceed the 256 byte tokens, got {self.vocab_size}")
        at_least(self, 1, "num_mel_bins", "d_model", "encoder_layers", "decoder_layers", "attention_heads", "ffn_dim")
        at_least(self, 8, "max_target_positions")  # the prompt alone takes 4
        at_least(self, 0, "seed")
        if self.d_model % self.attention_heads:
            raise ParamsRangeError("d_model", f"({self.d_model}) must be a multiple of attention_heads")


AUGMENTATIONS = ("tempo", "noise", "telephone", "gain")  # the order they are applied in, whatever the list's
# kinds of non-speech clip (svwhisper.nonspeech): noise colours, mains hum, tones, clicks, music-like chords, room tone,
# breaths, dithered digital silence, and the speech-free edges of the split's own clips
NONSPEECH_KINDS = ("white", "pink", "brown", "blue", "hum", "tone", "clicks", "chords", "room", "breath", "dither")
NONSPEECH_KINDS += ("corpus",)


def _range(params, key: str, low: float, high: float) -> None:
    """`key` must be a [min, max] pair with low <= min <= max <= high."""
    value = getattr(params, key)
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ParamsRangeError(key, f"must be [min, max] with {low} <= min <= max <= {high}, got {list(value)}")


@dataclass(frozen=True)
class AugmentParams:
    """`featurize.augment`: augmented copies of the training clips (svwhisper.augment); dev and test never."""

    transforms: tuple[str, ...] = ()  # any of AUGMENTATIONS; () = off
    copies: int = 1  # augmented copies of each training clip, written beside the clean one
    seed: int = 0  # with the clip id and copy number, seeds every random draw
    tempo: tuple[float, ...] = (0.9, 1.1)  # time-stretch rate range (pitch kept)
    noise_snr_db: tuple[float, ...] = (10.0, 30.0)  # coloured noise (white to brown), signal-to-noise ratio range
    telephone_hz: tuple[float, ...] = (3000.0, 3800.0)  # low-pass cutoff range, after a 300 Hz high-pass
    gain_db: tuple[float, ...] = (-12.0, 6.0)  # loudness change range

    def check(self) -> None:
        unknown = sorted(set(self.transforms) - set(AUGMENTATIONS))
        if unknown:
            raise ParamsRangeError("transforms", f"unknown {unknown}: choose from {list(AUGMENTATIONS)}")
        at_least(self, 1, "copies")
        at_least(self, 0, "seed")
        _range(self, "tempo", 0.5, 2.0)
        _range(self, "noise_snr_db", -20.0, 80.0)
        _range(self, "telephone_hz", 500.0, 7900.0)
        _range(self, "gain_db", -40.0, 20.0)


@dataclass(frozen=True)
class NonspeechParams:
    """`featurize.nonspeech`: non-speech clips with Whisper's no-speech target in training, and held-out sets."""

    share: float = 0.1  # of the training rows (0 = none); each clip's target is <|nocaptions|>
    kinds: tuple[str, ...] = NONSPEECH_KINDS  # which kinds the training clips are drawn from
    seed: int = 0  # with the split and the clip's index, seeds every clip
    eval_clips: int = 30  # held-out clips for dev and for test (every kind in turn, the whole window long)

    def check(self) -> None:
        unknown = sorted(set(self.kinds) - set(NONSPEECH_KINDS))
        if unknown or not self.kinds:
            raise ParamsRangeError("kinds", f"unknown {unknown or 'none given'}: choose from {list(NONSPEECH_KINDS)}")
        within(self, 0.0, 0.5, "share")
        at_least(self, 0, "seed")
        at_least(self, 1, "eval_clips")


@dataclass(frozen=True)
class FeaturizeParams:
    shard_size: int = 2000  # clips per output shard
    num_proc: int = 2  # worker processes computing log-mel
    augment: AugmentParams = AugmentParams()
    nonspeech: NonspeechParams = NonspeechParams()

    def check(self) -> None:
        at_least(self, 1, "shard_size", "num_proc")


@dataclass(frozen=True)
class TrainParams:
    learning_rate: float = 1e-4
    lr_scheduler: str = "linear"
    warmup_steps: int = 10
    max_steps: int = 120
    batch_size: int = 16
    weight_decay: float = 0.01
    dropout: float = 0.0
    spec_augment: bool = False
    mask_time_prob: float = 0.05
    mask_feature_prob: float = 0.05
    eval_steps: int = 60
    save_steps: int = 60
    logging_steps: int = 10
    generation_max_length: int = 64
    eval_batch_size: int = 32
    ctc_weight: float = 0.0
    precision: str = "auto"
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    eval_max_samples: int = 0
    freeze_encoder: bool = False
    freeze_encoder_layers: int = 0  # > 0: the convolutional front end and this many lowest encoder layers are frozen
    lora_rank: int = 0
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")
    launcher: str = "python"
    dataloader_workers: int = 0  # processes loading batches (0 = the main process: enough for in-memory features)
    seed: int = 42

    def check(self) -> None:
        from transformers import SchedulerType

        if not self.learning_rate > 0:
            raise ParamsRangeError("learning_rate", f"must be > 0, got {self.learning_rate}")
        within(self, 0.0, 1.0, "ctc_weight", "dropout", "lora_dropout", high_open=True)
        within(self, 0.0, 1.0, "mask_time_prob", "mask_feature_prob")
        at_least(self, 1, "max_steps", "batch_size", "eval_steps", "save_steps", "logging_steps")
        at_least(self, 1, "gradient_accumulation_steps", "eval_batch_size", "generation_max_length")
        at_least(self, 0, "dataloader_workers")
        at_least(self, 0, "warmup_steps", "weight_decay", "eval_max_samples", "lora_rank", "seed")
        at_least(self, 0, "freeze_encoder_layers")
        if not self.lora_alpha > 0:
            raise ParamsRangeError("lora_alpha", f"must be > 0, got {self.lora_alpha}")
        one_of(self, "precision", ("auto", "fp32", "fp16", "bf16"))
        one_of(self, "lr_scheduler", [s.value for s in SchedulerType])
        if not LAUNCHER.fullmatch(self.launcher):
            raise ParamsRangeError(
                "launcher",
                f"must be python, torchrun or accelerate launch followed by --options only (it becomes part of a "
                f"shell command), got {self.launcher!r}",
            )
        if self.freeze_encoder_layers and (self.freeze_encoder or self.lora_rank):
            raise ValueError(
                "freeze_encoder_layers freezes part of the encoder: set freeze_encoder: false, lora_rank: 0"
            )
        if self.lora_rank and (self.freeze_encoder or self.ctc_weight):
            # LoRA already freezes every base weight; these flags belong to full fine-tuning
            raise ValueError("lora_rank > 0 trains adapters only: set freeze_encoder: false and ctc_weight: 0")
        if self.freeze_encoder and self.ctc_weight:
            raise ValueError("ctc_weight > 0 trains the encoder through a CTC head: it needs freeze_encoder: false")
        if self.save_steps % self.eval_steps:
            # the best checkpoint by WER can only be one that was evaluated
            raise ValueError(f"save_steps ({self.save_steps}) must be a multiple of eval_steps ({self.eval_steps})")


@dataclass(frozen=True)
class ExportParams:
    quantization: str = "int8"  # CTranslate2 weight type

    def check(self) -> None:
        one_of(self, "quantization", QUANTIZATIONS)


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int = 32  # clips decoded per call
    decoding: str = "app"  # app = the app's decoding options (app.decoding); greedy = one pass, no fallback

    def check(self) -> None:
        at_least(self, 1, "batch_size")
        one_of(self, "decoding", EVALUATE_DECODING)


@dataclass(frozen=True)
class RemoteParams:
    name: str = ""  # DVC remote for checkpoints; "" = the default remote (`dvc remote default`)
    push_checkpoints: bool = True  # mirror each complete checkpoint while training (no remote: they stay local)
    check_timeout_s: float = 60.0  # the reachability check gives up after this long
    close_timeout_s: float = 600.0  # at the end of training, the last checkpoint upload is waited for this long
    fetch_timeout_s: float = 1800.0  # before step 0, fetching checkpoints from the remote takes at most this long

    def check(self) -> None:
        for key in ("check_timeout_s", "close_timeout_s", "fetch_timeout_s"):
            if not getattr(self, key) > 0:
                raise ParamsRangeError(key, f"must be > 0, got {getattr(self, key)}")


@dataclass(frozen=True)
class PublishParams:
    license: str = "apache-2.0"  # the model's licence on the Hub (openai/whisper-* are apache-2.0)
    dataset_name: str = ""  # test set name in the card; "" = derived from the prepare sources
    commit_message: str = "svwhisper model"


@dataclass(frozen=True)
class DecodeOptions:
    """How each chunk is decoded (svwhisper.decoding): `app.decoding` of params.yaml, and the CLI's flags of the
    same names (`decoding.add_flags`)."""

    beam_size: int = 5  # beams at temperature 0 (1 = greedy); sampling never uses beams
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # tried in order until a result passes
    compression_ratio_threshold: float = 2.4  # text whose gzip ratio is above this is a loop: decode again
    logprob_threshold: float = -1.0  # mean token log-probability below this: decode again
    no_speech_threshold: float = 0.6  # P(<|nocaptions|>) above this, with an improbable text: no speech
    word_timestamps: bool = True  # word start and end times from the alignment heads

    def check(self) -> None:
        at_least(self, 1, "beam_size")
        if not self.temperatures or any(not 0 <= t <= 1 for t in self.temperatures) or self.temperatures[0] != 0:
            raise ParamsRangeError("temperatures", f"must start at 0 and stay within [0, 1], got {self.temperatures}")
        if not self.compression_ratio_threshold > 1:
            raise ParamsRangeError("compression_ratio_threshold", "must be > 1 (2.4 is Whisper's)")
        if not self.logprob_threshold <= 0:
            raise ParamsRangeError("logprob_threshold", "must be <= 0 (a mean log-probability; -1.0 is Whisper's)")
        within(self, 0.0, 1.0, "no_speech_threshold")


GREEDY = DecodeOptions(beam_size=1, temperatures=(0.0,), word_timestamps=False)  # one pass, no fallback


@dataclass(frozen=True)
class LiveParams:
    """Live captions (svwhisper.streaming): `app.live` of params.yaml, and `svwhisper live`'s flags."""

    step_s: float = 0.5  # the open speech region is decoded again after this much new audio
    beam_size: int = 1  # beams for those decodes (a region that has ended is decoded with app.decoding)
    max_sessions: int = 2  # live sessions the page serves at once; one more is told the server is busy
    max_session_s: float = 3600.0  # a live session ends after this much audio
    idle_s: float = 30.0  # a session that sends no audio for this long is ended and its place freed
    vad: bool = True  # Silero VAD keeps non-speech from the model; False: every step decodes, the no-speech rule alone

    def check(self) -> None:
        within(self, 0.1, 2.0, "step_s")
        at_least(self, 1, "beam_size", "max_sessions")
        for key in ("max_session_s", "idle_s"):
            if not getattr(self, key) > 0:
                raise ParamsRangeError(key, f"must be > 0, got {getattr(self, key)}")


@dataclass(frozen=True)
class AppParams:
    host: str = "127.0.0.1"
    port: int = 7860
    backend: str = "transformers"
    model: str = ""  # a folder or a Hub id (owner/name[@revision]); "" = paths.final_model (paths.exported for ct2)
    max_duration_s: float = 3 * 3600.0
    max_file_mb: float = 500.0
    max_upload_storage_mb: float = 2000.0
    batch_size: int = 8
    chunker: str = "vad"  # vad (Silero, one speech region per chunk) or energy (cut at the loudness's pauses)
    decoding: DecodeOptions = DecodeOptions()  # how each chunk is decoded (the CLI's flags have the same names)
    live: LiveParams = LiveParams()  # the Live tab and `svwhisper live`

    def check(self) -> None:
        one_of(self, "backend", BACKENDS)
        for key in ("max_duration_s", "max_file_mb", "max_upload_storage_mb"):
            if not getattr(self, key) > 0:
                raise ParamsRangeError(key, f"must be > 0, got {getattr(self, key)}")
        at_least(self, 1, "batch_size")
        within(self, 1, 65535, "port")
        if not self.host.strip():
            raise ParamsRangeError("host", "must be an address, e.g. 127.0.0.1")
        one_of(self, "chunker", CHUNKERS)


BLOCKS = {  # params.yaml block -> its settings class
    "paths": Paths,
    "prepare": PrepareParams,
    "text": TextParams,
    "model": ModelParams,
    "featurize": FeaturizeParams,
    "train": TrainParams,
    "export": ExportParams,
    "evaluate": EvaluateParams,
    "remote": RemoteParams,
    "publish": PublishParams,
    "app": AppParams,
}
