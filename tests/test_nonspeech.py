import numpy as np
import pytest

from conftest import prepared_sample
from svwhisper.audio import SAMPLE_RATE
from svwhisper.data import FeatureSplit, SpeechCollator
from svwhisper.featurize import featurize_split, nonspeech_table, training_nonspeech
from svwhisper.nonspeech import corpus_edges, count_for, generate, silent_edges, target_ids
from svwhisper.params import NONSPEECH_KINDS, FeaturizeParams, NonspeechParams
from svwhisper.text import TextParams


def voice(seconds: float, lead_s: float = 0.3, tail_s: float = 0.3) -> np.ndarray:
    """A loud harmonic stand-in for a voice, with near-silent stretches before and after it."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    sound = 0.3 * np.sin(2 * np.pi * 150 * t) + 0.1 * np.sin(2 * np.pi * 450 * t)
    hiss = lambda s: 1e-4 * rng.standard_normal(int(s * SAMPLE_RATE))  # noqa: E731
    return np.concatenate([hiss(lead_s), sound, hiss(tail_s)]).astype(np.float32)


def test_the_same_seed_gives_the_same_clips_and_the_held_out_sets_other_ones():
    edges = silent_edges(voice(1.0))
    first = generate("train", 24, seed=0, window_s=4.0, edges=edges)
    again = generate("train", 24, seed=0, window_s=4.0, edges=edges)
    assert [i for i, _, _ in first] == [i for i, _, _ in again]
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(first, again, strict=True))
    other_seed = generate("train", 24, seed=1, window_s=4.0, edges=edges)
    assert not any(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(first, other_seed, strict=True))
    test = generate("test", 24, seed=0, window_s=4.0, edges=edges, full_window=True)
    train_clips = [s for _, _, s in first]
    assert not any(np.array_equal(s, t) for _, _, s in test for t in train_clips if len(s) == len(t))


def test_every_kind_is_bounded_finite_audio_and_a_held_out_set_takes_each_in_turn():
    held_out = generate("test", 2 * len(NONSPEECH_KINDS), 0, 4.0, edges=silent_edges(voice(1.0)), full_window=True)
    assert [kind for _, kind, _ in held_out] == list(NONSPEECH_KINDS) * 2
    for clip_id, kind, samples in held_out:
        assert clip_id.startswith("nonspeech-test-") and clip_id.endswith(kind)
        assert samples.dtype == np.float32 and len(samples) == 4 * SAMPLE_RATE
        assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.0
        if kind != "dither":
            assert np.abs(samples).max() > 1e-6 or kind == "corpus", kind  # not silence by accident
    lengths = [len(s) for _, _, s in generate("train", 40, 0, 4.0, edges=[])]
    assert min(lengths) >= 0.5 * SAMPLE_RATE and max(lengths) <= 4 * SAMPLE_RATE and len(set(lengths)) > 30


def test_noise_colours_have_their_spectral_slopes():
    def slope(kind: str) -> float:
        (_, _, samples), *_ = [c for c in generate("test", 12, 3, 4.0, full_window=True) if c[1] == kind]
        power = np.abs(np.fft.rfft(samples)) ** 2
        freqs = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
        band = (freqs > 100) & (freqs < 6000)
        return np.polyfit(np.log10(freqs[band]), np.log10(power[band] + 1e-20), 1)[0]

    assert slope("white") == pytest.approx(0, abs=0.3)
    assert slope("pink") == pytest.approx(-1, abs=0.3)
    assert slope("brown") == pytest.approx(-2, abs=0.3)
    assert slope("blue") == pytest.approx(1, abs=0.3)


def test_silent_edges_hold_no_voice_and_a_clip_without_silence_gives_none():
    clip = voice(1.0, lead_s=0.3, tail_s=0.4)
    head, tail = silent_edges(clip)
    assert 0.2 * SAMPLE_RATE <= len(head) <= 0.3 * SAMPLE_RATE and 0.3 * SAMPLE_RATE <= len(tail) <= 0.4 * SAMPLE_RATE
    assert max(np.abs(head).max(), np.abs(tail).max()) < 1e-3  # the hiss, not the voice at 0.3
    assert silent_edges(voice(1.0, lead_s=0.0, tail_s=0.0)) == []


def test_the_corpus_kind_needs_silent_edges():
    kinds = [kind for _, kind, _ in generate("train", 60, 0, 4.0, edges=[])]
    assert "corpus" not in kinds and len(set(kinds)) == len(NONSPEECH_KINDS) - 1
    with pytest.raises(ValueError, match="no clip has silence"):
        generate("train", 3, 0, 4.0, kinds=("corpus",), edges=[])
    corpus = generate("train", 3, 0, 4.0, kinds=("corpus",), edges=silent_edges(voice(1.0)))
    assert all(np.abs(s).max() < 1e-3 for _, _, s in corpus)  # joined from the hiss only


def test_the_share_counts_the_mix():
    assert count_for(900, 0.1) == 100 and count_for(8, 0.5) == 8 and count_for(4000, 0.0) == 0


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """12 prepared clips of the shipped corpus, and a local processor for them."""
    path, _, processor = prepared_sample(tmp_path_factory.mktemp("prepared"), 12, "train.parquet")
    return path, processor


def test_training_rows_get_the_no_speech_target_at_the_share(prepared, tmp_path):
    path, processor = prepared
    tokenizer = processor.tokenizer
    params = NonspeechParams(share=0.25)
    extra = training_nonspeech(path, params, processor)
    assert len(extra) == 4  # 12 speech clips + 4 = a quarter
    out = tmp_path / "train"
    featurize_split(path, out, processor, FeaturizeParams(num_proc=1), TextParams(), 64, extra=extra)
    split = FeatureSplit(out)
    rows = split.table[split.table["id"].str.startswith("nonspeech-train-")]
    assert len(split) == 16 and len(rows) == 4 and (rows["sentence"] == "").all()
    start, no_speech = tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|nospeech|>"])
    assert split[int(rows.index[0])]["labels"].tolist() == target_ids(tokenizer)
    # Whisper's target: what the loss sees after the start of transcript is the no-speech token, then the end of text
    batch = SpeechCollator(400, start)([split[i] for i in rows.index])
    assert batch["labels"].tolist() == [tokenizer.convert_tokens_to_ids(["<|nospeech|>", "<|endoftext|>"])] * 4
    assert training_nonspeech(path, NonspeechParams(share=0.0), processor) is None


def test_held_out_rows_fill_the_window_with_every_kind_and_corpus_edges_come_from_the_split(prepared):
    path, processor = prepared
    assert corpus_edges(path)  # the shipped clips have silence at their ends
    table = nonspeech_table(path, "dev", 12, NonspeechParams(kinds=("white",)), processor, held_out=True)
    kinds = [clip_id.rsplit("-", 1)[1] for clip_id in table["id"]]
    assert kinds == list(NONSPEECH_KINDS)  # a held-out set ignores the training kinds: all of them, in turn
    assert (table["duration_s"] == 4.0).all()
    again = nonspeech_table(path, "dev", 12, NonspeechParams(kinds=("white",)), processor, held_out=True)
    assert again["features"].tolist() == table["features"].tolist()


def test_the_no_speech_token_is_found_by_either_name(prepared):
    _, processor = prepared
    ids = target_ids(processor.tokenizer)
    assert processor.tokenizer.convert_ids_to_tokens(ids) == ["<|startoftranscript|>", "<|nospeech|>", "<|endoftext|>"]

    class OldVocabulary:  # Whisper's multilingual vocabularies before large-v3 call it <|nocaptions|>
        unk_token_id = 0
        ids = {"<|startoftranscript|>": 5, "<|nocaptions|>": 7, "<|endoftext|>": 3}

        def convert_tokens_to_ids(self, tokens):
            if isinstance(tokens, list):
                return [self.ids[t] for t in tokens]
            return self.ids.get(tokens, 0)

    assert target_ids(OldVocabulary()) == [5, 7, 3]
    OldVocabulary.ids = {"<|startoftranscript|>": 5, "<|endoftext|>": 3}
    with pytest.raises(ValueError, match="no no-speech token"):
        target_ids(OldVocabulary())
