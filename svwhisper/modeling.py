"""Build the base model: a small Whisper made locally (offline), or a pretrained one loaded.

Either way the result is a normal `save_pretrained` directory (model, feature extractor,
tokenizer, generation config with language and task set), so later stages know nothing else.
"""

import json
from collections.abc import Iterable

import torch
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)
from transformers.models.whisper.modeling_whisper import sinusoids
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from svwhisper.audio import HOP_LENGTH, N_FFT, SAMPLE_RATE
from svwhisper.params import ModelParams

N_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|> in 0.02 s steps, as in every Whisper vocabulary
LANGUAGE_TOKENS = [f"<|{code}|>" for code in LANGUAGES]
# Whisper's special tokens in Whisper's order; timestamps follow as ordinary added tokens.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    *LANGUAGE_TOKENS,
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
]


def train_tokenizer(sentences: Iterable[str], vocab_size: int) -> WhisperTokenizer:
    """A byte-level BPE trained on `sentences`, with all of Whisper's special and timestamp tokens.

    `vocab_size` counts the 256 byte tokens and the merges; special tokens come on top.
    """
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(sentences, trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    tokenizer = WhisperTokenizer(vocab=state["vocab"], merges=merges, pad_token="<|endoftext|>")
    specials = [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    timestamps = [f"<|{i * 0.02:.2f}|>" for i in range(N_TIMESTAMPS)]
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in timestamps])
    return tokenizer


def local_feature_extractor(chunk_length_s: int, num_mel_bins: int) -> WhisperFeatureExtractor:
    """Whisper's log-mel front end with a `chunk_length_s`-second window."""
    return WhisperFeatureExtractor(
        feature_size=num_mel_bins,
        sampling_rate=SAMPLE_RATE,
        hop_length=HOP_LENGTH,
        chunk_length=chunk_length_s,
        n_fft=N_FFT,
    )


def generation_config_for(
    tokenizer: WhisperTokenizer, max_length: int, language_tokens: list[str] = LANGUAGE_TOKENS, **pretrained
) -> GenerationConfig:
    """A Whisper generation config for `tokenizer` (what openai/whisper-* ship).

    `pretrained` carries what a pretrained model's own files say (alignment_heads, suppress_tokens,
    begin_suppress_tokens, ...); a locally built model suppresses nothing but a leading space or end.
    """
    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    space = tokenizer(" ", add_special_tokens=False).input_ids
    settings = {
        "begin_suppress_tokens": [*space, eot],  # as Whisper: never start with a space or end at once
        "suppress_tokens": [],
        **pretrained,
    }
    return GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=max_length,
        is_multilingual=True,
        lang_to_id={t: ids(t) for t in language_tokens},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        **settings,
    )


def build_local(
    sentences: Iterable[str], params: ModelParams
) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """A randomly initialised Whisper-architecture model of the sizes `params` name, and its processor (a tokenizer
    trained on `sentences`), built offline."""
    tokenizer = train_tokenizer(sentences, params.vocab_size)
    feature_extractor = local_feature_extractor(params.chunk_length_s, params.num_mel_bins)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=params.num_mel_bins,
        d_model=params.d_model,
        encoder_layers=params.encoder_layers,
        decoder_layers=params.decoder_layers,
        encoder_attention_heads=params.attention_heads,
        decoder_attention_heads=params.attention_heads,
        encoder_ffn_dim=params.ffn_dim,
        decoder_ffn_dim=params.ffn_dim,
        # the encoder's conv stack halves the frame rate: window * 100 frames/s / 2
        max_source_positions=feature_extractor.nb_max_frames // 2,
        max_target_positions=params.max_target_positions,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
    )
    torch.manual_seed(params.seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = generation_config_for(tokenizer, params.max_target_positions)
    return model, WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def load_pretrained(name: str) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """A pretrained Whisper (hub id or local dir) and its processor."""
    return WhisperForConditionalGeneration.from_pretrained(name), WhisperProcessor.from_pretrained(name)


def set_language_and_task(model: WhisperForConditionalGeneration, processor, language: str, task: str) -> None:
    """Make `generate()` default to `language`/`task`, with no stale forced_decoder_ids."""
    model.generation_config.language = language
    model.generation_config.task = task
    model.generation_config.forced_decoder_ids = None
    model.config.forced_decoder_ids = None
    processor.tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)


POSITIONS_PER_SECOND = 50  # encoder positions: 100 log-mel frames a second, halved by the second conv


def set_audio_window(model: WhisperForConditionalGeneration, processor: WhisperProcessor, seconds: int) -> None:
    """Fit the encoder to a `seconds` window: its positional embeddings, `max_source_positions` and the feature
    extractor's window agree afterwards (self-attention costs fall with the square of the window).

    Cutting keeps the first positions, which are all a clip shorter than the window ever uses. Growing (a
    model trained on a cut window, put back to Whisper's 30 s) keeps every position it has, fine-tuned or
    not, and continues the table with Whisper's sinusoids, which is what a Whisper encoder starts from.
    """
    positions = seconds * POSITIONS_PER_SECOND
    table = model.model.encoder.embed_positions
    if positions != table.num_embeddings:
        resized = torch.nn.Embedding(positions, table.embedding_dim)
        kept = min(positions, table.num_embeddings)
        resized.weight.data[:kept] = table.weight.data[:kept]
        if positions > kept:
            resized.weight.data[kept:] = sinusoids(positions, table.embedding_dim)[kept:]
        resized.weight.requires_grad_(table.weight.requires_grad)
        model.model.encoder.embed_positions = resized
        model.config.max_source_positions = positions
    processor.feature_extractor = local_feature_extractor(seconds, processor.feature_extractor.feature_size)
