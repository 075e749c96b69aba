import dataclasses

import numpy as np
import pytest
import torch

from conftest import REPO
from svwhisper.modeling import LANGUAGE_TOKENS, N_TIMESTAMPS, SPECIAL_TOKENS, build_local, set_language_and_task
from svwhisper.params import ModelParams
from svwhisper.text import normalize

SENTENCES = [
    normalize(s) for s in (REPO / "data/sample/sv-sentences-cc0.txt").read_text(encoding="utf-8").splitlines()[:800]
]
SIZES = ModelParams(
    name="scratch", chunk_length_s=2, vocab_size=300, d_model=32, encoder_layers=1, decoder_layers=1, attention_heads=2
)
SIZES = dataclasses.replace(SIZES, ffn_dim=64, max_target_positions=32, seed=0)


@pytest.fixture(scope="module")
def local():
    model, processor = build_local(SENTENCES, SIZES)
    set_language_and_task(model, processor, "sv", "transcribe")
    return model, processor


def test_tokenizer_has_whispers_special_tokens_in_whispers_order(local):
    _, processor = local
    tok = processor.tokenizer
    ids = tok.convert_tokens_to_ids(SPECIAL_TOKENS)
    assert ids == list(range(ids[0], ids[0] + len(SPECIAL_TOKENS)))  # contiguous, after the BPE vocab
    assert ids[0] == 300 and len(LANGUAGE_TOKENS) == 100
    assert tok.all_special_ids[-1] == tok.convert_tokens_to_ids("<|notimestamps|>")
    first, last = tok.convert_tokens_to_ids(["<|0.00|>", "<|30.00|>"])
    assert first == ids[-1] + 1 and last == first + N_TIMESTAMPS - 1
    assert len(tok) == 300 + len(SPECIAL_TOKENS) + N_TIMESTAMPS
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"


def test_labels_carry_the_swedish_transcribe_prefix_and_round_trip(local):
    _, processor = local
    tok = processor.tokenizer
    text = "jaså står det till på det viset é"
    ids = tok(text).input_ids
    prefix = tok.convert_tokens_to_ids(["<|startoftranscript|>", "<|sv|>", "<|transcribe|>", "<|notimestamps|>"])
    assert ids[:4] == prefix and ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert len(ids) < len(text)  # the BPE merges common Swedish pairs


def test_generate_uses_swedish_and_transcribe_from_the_generation_config(local):
    model, processor = local
    config = model.generation_config
    assert config.language == "sv" and config.task == "transcribe" and config.forced_decoder_ids is None
    assert config.lang_to_id["<|sv|>"] == processor.tokenizer.convert_tokens_to_ids("<|sv|>")
    features = processor.feature_extractor(
        [np.zeros(16000, dtype=np.float32)], sampling_rate=16000, return_tensors="pt"
    ).input_features
    assert features.shape == (1, 80, 200)  # a 2 s window at 100 frames/s
    with torch.no_grad():
        out = model.generate(features, max_new_tokens=3, return_dict_in_generate=True)
    # the prompt generate starts from: Swedish and transcribe, taken from the generation config
    prefix = ["<|startoftranscript|>", "<|sv|>", "<|transcribe|>", "<|notimestamps|>"]
    assert out.sequences[0, :4].tolist() == processor.tokenizer.convert_tokens_to_ids(prefix)
    assert out.sequences.shape[1] <= 4 + 3  # max_new_tokens


def test_saved_model_dir_loads_back_with_the_same_tokenizer_and_config(local, tmp_path):
    from svwhisper.hf_backend import load_model

    model, processor = local
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = load_model(tmp_path)
    assert loaded.generation_config.language == "sv"
    assert loaded_processor.tokenizer("hej då").input_ids == processor.tokenizer("hej då").input_ids
    assert loaded_processor.feature_extractor.chunk_length == 2
