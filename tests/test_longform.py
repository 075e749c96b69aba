"""Long recordings: chunks fit the window and are cut in pauses; overlaps are stitched; subtitles are valid."""

import re

import numpy as np
import pytest

from svwhisper.audio import SAMPLE_RATE
from svwhisper.longform import Segment, segments_of, speech_chunks, stitch, to_srt, to_vtt


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def test_chunks_are_cut_in_pauses_fit_the_window_and_time_the_speech():
    # speech 0.5-2.5 s, pause, 3.5-6.0 s, pause, 7.0-7.8 s
    audio = np.concatenate([silence(0.5), tone(2.0), silence(1.0), tone(2.5), silence(1.0), tone(0.8), silence(0.5)])
    chunks = speech_chunks(audio, window_s=4, overlap_s=1.0)
    assert [(round(c.start_s, 2), round(c.end_s, 2)) for c in chunks] == [(0.5, 2.5), (3.5, 6.0), (7.0, 7.8)]
    assert all((c.end - c.start) <= 4 * SAMPLE_RATE for c in chunks)
    assert not any(c.overlap_before for c in chunks)
    # the model hears a little of the pause around the speech, never the neighbouring speech
    assert chunks[1].start < chunks[1].speech_start and chunks[1].start >= int(3.0 * SAMPLE_RATE)


def test_speech_longer_than_the_window_is_cut_hard_with_overlap():
    chunks = speech_chunks(tone(10.0), window_s=4, overlap_s=1.0)
    assert len(chunks) == 3 and [c.overlap_before for c in chunks] == [False, True, True]
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start < before.end  # they share a second of audio
    assert chunks[-1].end == 10 * SAMPLE_RATE


def test_silence_gives_no_chunks():
    assert speech_chunks(silence(5.0), window_s=4, overlap_s=1.0) == []


@pytest.mark.parametrize(
    "previous, text, expected",
    [
        ("vi ses i morgon bitti", "i morgon bitti klockan nio", "klockan nio"),
        ("hej", "hej hej", "hej"),
        ("något helt annat", "klockan nio", "klockan nio"),
    ],
)
def test_stitch_drops_the_words_heard_twice_across_an_overlap(previous, text, expected):
    assert stitch(previous, text) == expected


def test_segments_skip_empty_text_and_stitch_only_hard_cuts():
    chunks = speech_chunks(tone(10.0), window_s=4, overlap_s=1.0)
    segments = segments_of(chunks, ["ett två tre", "tre fyra fem", ""])
    assert [s.text for s in segments] == ["ett två tre", "fyra fem"]


def test_srt_and_vtt_cues():
    segments = [Segment(0.14, 2.5, "Hej på dig."), Segment(3661.5, 3663.0, "En timme senare.")]
    srt = to_srt(segments)
    assert srt.startswith("1\n00:00:00,140 --> 00:00:02,500\nHej på dig.\n\n2\n01:01:01,500 --> 01:01:03,000\n")
    assert re.fullmatch(r"(\d+\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n.+\n\n?)+", srt)
    vtt = to_vtt(segments)
    assert vtt.startswith("WEBVTT\n\n00:00:00.140 --> 00:00:02.500\nHej på dig.\n")
