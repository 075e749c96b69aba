"""The backend interface: both backends implement it in their own class, and a call changes no shared state, so
threads that share a backend get the answers they would get one after the other."""

import inspect
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GenerationMixin
from transformers.modeling_outputs import BaseModelOutput

from svwhisper.audio import load_audio
from svwhisper.backend import Backend
from svwhisper.ct2_backend import CTranslate2Backend
from svwhisper.decoding import decode_clips
from svwhisper.export import export
from svwhisper.hf_backend import BeamCache, TransformersBackend
from svwhisper.params import DecodeOptions

pytestmark = pytest.mark.slow  # the tiny_repo fixture runs the pipeline


@pytest.mark.parametrize("cls", [TransformersBackend, CTranslate2Backend])
def test_each_backend_implements_the_interface_in_its_own_class(cls):
    assert issubclass(cls, Backend) and not inspect.isabstract(cls)
    for name in ("encode", "generate", "align"):
        assert name in vars(cls), f"{cls.__name__}.{name} is not its own"
    shared = {name for name, value in vars(cls).items() if callable(value) and not name.startswith("__")}
    other = CTranslate2Backend if cls is TransformersBackend else TransformersBackend
    assert not {n for n in shared if vars(other).get(n) is vars(cls)[n]}  # nothing borrowed by class attribute


def clips_of(memorised, n: int) -> list[np.ndarray]:
    return [load_audio(path) for path, _ in memorised[:n]]


def results(backend, clips, options):
    return [(h.text, h.temperature, h.words) for h in decode_clips(backend, clips, options)]


def in_two_threads(call) -> list:
    out, barrier = [None, None], threading.Barrier(2)

    def run(i):
        barrier.wait()
        out[i] = call()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return out


def test_two_threads_sharing_the_transformers_backend_get_the_serial_answers(tiny_repo, memorised):
    backend = TransformersBackend(tiny_repo / "models/final")
    backend.heads = [(1, 0), (1, 2)]  # the scratch model ships no alignment heads; any of its last layer's will do
    clips = clips_of(memorised, 4)
    # logprob_threshold 0 fails every result: each clip is sampled at every temperature, then timed word by word
    options = DecodeOptions(temperatures=(0.0, 0.5, 1.0), logprob_threshold=0.0, no_speech_threshold=1.0)
    rng = torch.random.get_rng_state()
    attention = backend.model.config._attn_implementation
    serial = results(backend, clips, options)
    assert serial == results(backend, clips, options)  # sampling is seeded per call: the same input, the same text
    assert all(temperature == 1.0 for _, temperature, _ in serial) and all(words for *_, words in serial)
    assert in_two_threads(lambda: results(backend, clips, options)) == [serial, serial]
    assert torch.equal(torch.random.get_rng_state(), rng)  # the global RNG is neither read nor reseeded
    assert backend.model.config._attn_implementation == attention  # the shared model is never switched


def test_two_threads_sharing_the_ctranslate2_backend_get_the_serial_answers(tiny_repo, memorised):
    backend = CTranslate2Backend(tiny_repo / "models/ct2")
    clips = clips_of(memorised, 4)
    options = DecodeOptions(temperatures=(0.0,))  # CTranslate2 seeds its sampling per thread, from the OS
    serial = results(backend, clips, options)
    assert all(words for *_, words in serial)
    assert in_two_threads(lambda: results(backend, clips, options)) == [serial, serial]


def test_an_untrained_model_that_samples_timestamp_tokens_falls_back_without_failing(tiny_repo, memorised):
    backend = TransformersBackend(tiny_repo / "models/base")  # random weights: every result fails the thresholds
    hyps = decode_clips(backend, clips_of(memorised, 8), DecodeOptions(temperatures=(0.0, 0.5, 1.0)))
    assert len(hyps) == 8 and any(h.temperature == 1.0 for h in hyps)
    assert all(all(t < backend.eot for t in h.tokens) for h in hyps)  # text tokens only, whatever was sampled


def ending_at_once(model_dir: Path, out: Path, p_end: float = 0.9) -> Path:
    """`model_dir` changed so that every decoder position gives end of text `p_end` (the decoder's last norm scaled
    to zero leaves its bias as every position's state; the end token's output row is set against it): a model that
    wants every chunk to end before its first word, as a fine-tune on non-speech does, saved with its processor."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(model_dir)
    eot = model.generation_config.eos_token_id
    with torch.no_grad():
        norm, rows = model.model.decoder.layer_norm, model.get_output_embeddings().weight
        norm.weight.zero_()
        others = torch.cat([rows[:eot], rows[eot + 1 :]]) @ norm.bias
        target = torch.logsumexp(others, 0) + math.log(p_end / (1 - p_end))
        rows[eot] = norm.bias * target / norm.bias.dot(norm.bias)
    model.save_pretrained(out / "hf")
    WhisperProcessor.from_pretrained(model_dir).save_pretrained(out / "hf")
    export(out / "hf", out / "ct2", "float32")
    return out


def test_both_backends_score_the_words_of_a_chunk_the_model_wanted_to_end_alike(tiny_repo, memorised, tmp_path):
    """Decoding suppresses end of text at the first position (Whisper's rule: never an empty result), so such a
    model writes a word anyway; both backends score that word under the model's own distribution, where ending had
    0.9: CTranslate2's generate renormalises after the suppression (the word would look ten times likelier and
    escape the no-speech rule), and its backend adds that mass back."""
    changed = ending_at_once(tiny_repo / "models/final", tmp_path)
    hf, ct2 = TransformersBackend(changed / "hf"), CTranslate2Backend(changed / "ct2", compute_type="float32")
    clips = clips_of(memorised, 2)
    ours = [hf.generate(hf.encode(hf.features(clips)), [0, 1], 0.0, 1)]
    ours.append(ct2.generate(ct2.encode(ct2.features(clips)), [0, 1], 0.0, 1))
    for by_hf, by_ct2 in zip(*ours, strict=True):
        assert by_hf.tokens == by_ct2.tokens and len(by_hf.tokens) == 1  # one word, then the end (0.9 each step)
        # the word's own probability under the changed model is at most 0.1: with its end, a mean below log 0.1 / 2
        assert by_hf.avg_logprob < math.log(0.1) / 2 and by_ct2.avg_logprob < math.log(0.1) / 2
        assert by_ct2.avg_logprob == pytest.approx(by_hf.avg_logprob, abs=0.02)


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> dict:
    """Whisper base as released (30 s window, Swedish set), as each backend loads it (the peers stage's layout)."""
    from svwhisper import whisper_base
    from svwhisper.peers import write_released

    ct2, hf = write_released(whisper_base.NAME, tmp_path_factory.mktemp("released"), "sv", "transcribe")
    return {TransformersBackend: hf, CTranslate2Backend: Path(ct2)}


def test_beam_search_that_leaves_the_cross_attention_cache_in_place_finds_transformers_beams(tiny_repo, memorised):
    """BeamCache skips reordering the encoder keys and values: the beams, scores and tokens are still those of
    transformers' own cache (a clip the model knows and noise it does not, beam 5, 16 steps; the small model, as
    the cache logic does not depend on the model's size and Whisper base takes more than a second a step here)."""
    backend = TransformersBackend(tiny_repo / "models/final")
    noise = np.random.default_rng(1).normal(0, 0.1, 3 * 16000).astype(np.float32)
    encoded = BaseModelOutput(last_hidden_state=backend.encode(backend.features([*clips_of(memorised, 1), noise])))

    def beams(**cache):
        with torch.inference_mode():
            return GenerationMixin.generate(
                backend.model,
                encoder_outputs=encoded,
                decoder_input_ids=torch.tensor([backend.prompt] * 2),
                max_length=len(backend.prompt) + 16,
                num_beams=5,
                num_return_sequences=5,
                output_scores=True,
                return_dict_in_generate=True,
                **cache,
            )

    ours, theirs = beams(cache=BeamCache()), beams()
    assert torch.equal(ours.sequences, theirs.sequences)
    assert torch.allclose(ours.sequences_scores, theirs.sequences_scores)
    moved = (ours.beam_indices[:, 1:] != ours.beam_indices[:, :-1]) & (ours.beam_indices[:, 1:] >= 0)
    assert moved.any()  # beams took the places of others: the reorder had work to do


@pytest.mark.parametrize("cls", [TransformersBackend, CTranslate2Backend])
def test_the_no_speech_rule_rejects_speech_free_chunks_that_reach_the_backend(released, cls):
    """Handed to the backend directly (no speech detection before it), noise and a tone come back without text
    because the model says "no speech" and its words are improbable; the backend's own candidates for the same
    chunks (greedy, the cheapest) hold the words the rule withheld. (Digital silence never reaches a backend: the
    silence check stops it.)"""
    n, rng = 3 * 16000, np.random.default_rng(0)
    chunks = [rng.normal(0, 0.1, n), rng.normal(0, 0.003, n)]
    chunks = [c.astype(np.float32) for c in [*chunks, 0.1 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)]]
    backend = cls(released[cls])
    if cls is TransformersBackend:  # a loop fails the compression check long before the 444-token cap: the
        backend.max_new_tokens = 96  # Python decoder need not run it to there at beam 5
    options = DecodeOptions(word_timestamps=False)  # the app's: beam 5, fallback, no-speech threshold 0.6
    for hyp in decode_clips(backend, chunks, options):
        assert hyp.text == "" and hyp.no_speech_prob > options.no_speech_threshold, hyp
        assert hyp.avg_logprob < options.logprob_threshold, hyp
    withheld = backend.generate(backend.encode(backend.features(chunks)), list(range(len(chunks))), 0.0, 1)
    assert all(backend.text(c.tokens).strip() for c in withheld), withheld
