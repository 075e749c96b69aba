"""Whisper's decoding safeguards, word alignment, word-level subtitles and speech detection, without a model."""

import json

import numpy as np
import pytest

from conftest import SAMPLE, sample_rows
from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.decoding import Candidate, DecodeOptions, compression_ratio, decode_with_fallback
from svwhisper.longform import Segment, cues_of, to_json, to_srt, to_vtt
from svwhisper.timing import Word, alignment_path, dtw, token_pieces, word_spans, words_from_path

LOOP = "ja ja ja ja ja ja ja ja ja ja ja ja ja ja ja ja ja ja ja ja"


class ScriptedBackend:
    """Answers generate() from a script: {temperature: (text, avg_logprob, no_speech_prob)} per row."""

    def __init__(self, script: list[dict]):
        self.script, self.calls = script, []

    def generate(self, encoded, rows, temperature, beam_size):
        self.calls.append((list(rows), temperature, beam_size))
        hyps = []
        for row in rows:
            text, logprob, no_speech = self.script[row].get(temperature, self.script[row]["last"])
            hyps.append(Candidate(tuple(ord(c) for c in text), logprob, no_speech))
        return hyps

    def text(self, tokens):
        return "".join(map(chr, tokens))


def test_compression_ratio_tells_a_loop_from_a_sentence():
    assert compression_ratio(LOOP) > 2.4
    assert compression_ratio("Min far ska betala räkningen i morgon.") < 1.5
    assert compression_ratio("") == 0.0


def test_a_loop_or_an_improbable_text_is_decoded_again_at_the_next_temperature():
    script = [
        {0.0: (LOOP, -0.2, 0.0), 0.2: ("Hej då.", -0.3, 0.0), "last": ("x", -9, 0)},  # a loop at 0
        {0.0: ("Bra.", -0.1, 0.0), "last": ("never", -9, 0)},  # fine at 0
        {0.0: ("Vad?", -1.8, 0.0), 0.2: ("Vadå?", -1.5, 0.0), 0.4: ("Vad då.", -0.4, 0.0), "last": ("x", -9, 0)},
    ]
    backend = ScriptedBackend(script)
    hyps = decode_with_fallback(backend, None, 3, DecodeOptions(beam_size=5))
    assert [(h.text, h.temperature) for h in hyps] == [("Hej då.", 0.2), ("Bra.", 0.0), ("Vad då.", 0.4)]
    # beams at temperature 0 only; each retry decodes only the rows that failed
    assert backend.calls == [([0, 1, 2], 0.0, 5), ([0, 2], 0.2, 1), ([2], 0.4, 1)]


def test_no_speech_gives_no_text_and_no_retry_and_every_temperature_failing_keeps_the_last():
    script = [
        {0.0: ("Tack för att ni tittade.", -1.4, 0.9), "last": ("x", -9, 0)},  # silence, improbable text
        {0.0: ("Tack.", -0.2, 0.9), "last": ("x", -9, 0)},  # no-speech token likely, but the text is probable
        {"last": ("Hmm.", -2.0, 0.1)},  # improbable at every temperature
    ]
    backend = ScriptedBackend(script)
    options = DecodeOptions(temperatures=(0.0, 0.5, 1.0))
    hyps = decode_with_fallback(backend, None, 3, options)
    assert [(h.text, h.tokens == (), h.temperature) for h in hyps] == [
        ("", True, 0.0),
        ("Tack.", False, 0.0),
        ("Hmm.", False, 1.0),
    ]
    assert [rows for rows, _, _ in backend.calls] == [[0, 1, 2], [2], [2]]


def test_dtw_follows_the_cheapest_monotonic_path():
    cost = np.full((3, 6), 5.0)
    for row, cols in enumerate(((0, 1), (2, 3), (4, 5))):
        cost[row, list(cols)] = 0.0
    tokens, frames = dtw(cost)
    assert list(zip(tokens, frames, strict=True)) == [(0, 0), (0, 1), (1, 2), (1, 3), (2, 4), (2, 5)]


def test_words_get_the_time_where_the_attention_reaches_their_first_token():
    # row r is the decoder position that predicts token r (" Hej", " på", " dig", ".", then the end of text): its
    # cross-attention looks at the audio of that token
    starts = [0, 30, 55, 70, 90]
    heads = np.zeros((2, 5, 100))
    for row, start in enumerate(starts):
        end = starts[row + 1] if row + 1 < len(starts) else 100
        heads[:, row, start:end] = 1.0
    path = alignment_path(heads, positions=100)
    words = words_from_path([" Hej", " på", " dig", "."], *path, offset_s=1.0)
    assert [w.text for w in words] == ["Hej", "på", "dig."]
    # a word starts where the path reaches its first token's row: positions 0, 30, 55 at 20 ms each, plus the offset
    assert [w.start_s for w in words] == pytest.approx([1.0, 1.6, 2.1], abs=0.05)
    assert all(a.end_s == pytest.approx(b.start_s) for a, b in zip(words, words[1:], strict=False))


def test_characters_split_over_byte_tokens_are_one_piece_and_words_split_at_spaces():
    vocab = {1: b" H", 2: b"\xc3", 3: b"\xa5r", 4: b" p", 5: b"\xc3\xa5", 6: b"."}  # " Hår på."

    def decode(tokens):
        return b"".join(vocab[t] for t in tokens).decode("utf-8", errors="replace")

    pieces = token_pieces(decode, [1, 2, 3, 4, 5, 6])
    assert pieces == [" H", "år", "", " p", "å", "."] and "".join(pieces) == " Hår på."
    assert word_spans(pieces) == [(0, 3), (3, 6)]


def test_word_level_cues_and_the_json_output():
    text = "Det här är en mening till"
    words = tuple(Word(round(0.5 + i * 0.4, 2), round(0.8 + i * 0.4, 2), w) for i, w in enumerate(text.split()))
    segments = [Segment(0.5, 2.8, "Det här är en mening till", words), Segment(3.0, 4.0, "Utan ord.")]
    cues = cues_of(segments, words_per_cue=4)
    assert [c.text for c in cues] == ["Det här är en", "mening till", "Utan ord."]
    assert (cues[0].start_s, cues[0].end_s) == (0.5, pytest.approx(2.0))
    assert to_srt(segments, 4).count(" --> ") == 3 and to_srt(segments).count(" --> ") == 2
    assert "00:00:02.100 --> 00:00:02.800\nmening till" in to_vtt(segments, 4)
    data = json.loads(to_json(segments))
    assert data["text"] == "Det här är en mening till Utan ord."
    assert data["segments"][0]["words"][1] == {"start": 0.9, "end": 1.2, "word": "här"}
    assert data["segments"][1]["words"] == []


def test_speech_detection_finds_speech_and_nothing_in_silence_noise_or_a_tone():
    from svwhisper.vad import PAD_S, vad_chunks

    n = 30 * SAMPLE_RATE
    rng = np.random.default_rng(0)
    for quiet in (np.zeros(n), rng.normal(0, 0.003, n), 0.1 * np.sin(2 * np.pi * 440 * np.arange(n) / SAMPLE_RATE)):
        assert vad_chunks(quiet.astype(np.float32), window_s=4) == []
    clips = [load_audio(SAMPLE / "clips" / name) for _, name, _ in sample_rows(2)]
    gap = np.zeros(SAMPLE_RATE, dtype=np.float32)
    recording = np.concatenate([gap, clips[0], gap, clips[1], gap])
    chunks = vad_chunks(recording, window_s=4)
    assert len(chunks) == 2
    second = 2 * SAMPLE_RATE + len(clips[0])
    for chunk, start in zip(chunks, (SAMPLE_RATE, second), strict=True):
        assert abs(chunk.speech_start - start) < 0.25 * SAMPLE_RATE  # the voice starts just after the clip does
        assert chunk.end - chunk.start <= 4 * SAMPLE_RATE and chunk.start >= chunk.speech_start - PAD_S * SAMPLE_RATE


def test_decoding_params_map_onto_the_options_and_bad_ones_are_refused(tmp_path):
    import app
    from svwhisper.paramfile import ParamsError, load_params

    (tmp_path / "params.yaml").write_text("app:\n  decoding:\n    beam_size: 3\n    temperatures: [0, 0.5]\n")
    params = load_params(app.AppParams, "app", tmp_path / "params.yaml")
    assert params.decoding == DecodeOptions(beam_size=3, temperatures=(0.0, 0.5))
    for line, key in [
        ("decoding:\n    temperatures: [0.2, 0.4]", "decoding.temperatures"),
        ("decoding:\n    temperatures: [0.0, 1.5]", "decoding.temperatures"),
        ("decoding:\n    beam_size: 0", "decoding.beam_size"),
        ("chunker: silero", "chunker"),
        ("decoding:\n    compression_ratio_threshold: 0.5", "decoding.compression_ratio_threshold"),
        ("decoding:\n    no_speech_threshold: 2", "decoding.no_speech_threshold"),
    ]:
        (tmp_path / "params.yaml").write_text(f"app:\n  {line}\n", encoding="utf-8")
        at = 2 + line.count("\n")
        with pytest.raises(ParamsError, match=rf"params\.yaml:{at}: app\.{key}"):
            load_params(app.AppParams, "app", tmp_path / "params.yaml")


def test_the_cli_flags_are_the_decoding_options_fields_checked_as_params_are():
    import argparse
    import dataclasses

    from svwhisper.decoding import add_flags, from_flags

    parser = argparse.ArgumentParser()
    add_flags(parser, DecodeOptions(beam_size=3))
    flags = {a.dest for a in parser._actions} - {"help"}
    assert flags == {f.name for f in dataclasses.fields(DecodeOptions)}
    assert from_flags(parser.parse_args([])) == DecodeOptions(beam_size=3)
    given = from_flags(parser.parse_args(["--temperatures", "0", "--no-word-timestamps", "--beam-size", "1"]))
    assert given == DecodeOptions(beam_size=1, temperatures=(0.0,), word_timestamps=False)
    with pytest.raises(ValueError, match=r"--beam-size must be >= 1"):
        from_flags(parser.parse_args(["--beam-size", "0"]))
    with pytest.raises(ValueError, match=r"--temperatures must start at 0"):
        from_flags(parser.parse_args(["--temperatures", "0.5"]))
