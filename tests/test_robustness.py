import numpy as np
import pytest

from svwhisper.audio import SAMPLE_RATE
from svwhisper.decoding import Hypothesis
from svwhisper.params import DecodeOptions
from svwhisper.robustness import (
    deletion_rate,
    longform_measures,
    loops,
    nonspeech_measures,
    recording,
    repeats_ngram,
    speech_measures,
)


def hyp(text: str, no_speech: float = 0.0) -> Hypothesis:
    return Hypothesis((1,) if text else (), text, -0.3, no_speech, 0.0, 1.0)


@pytest.mark.parametrize(
    "text, looping",
    [
        ("Han behöver inte tvångsinläggas.", False),
        ("Ja, ja, det gör jag.", False),  # twice is speech
        ("ja ja ja", True),
        ("i och i och i och", True),
        ("det var det var det var en gång", True),
        ("", False),
    ],
)
def test_a_repeated_ngram_is_a_loop(text, looping):
    assert repeats_ngram(text) is looping


def test_a_loop_is_also_what_compresses_too_well():
    repeated = "Folk svälter ihjäl i stan och " * 6
    assert loops(repeated, 2.4) and not loops("Folk svälter ihjäl.", 2.4)


def test_nonspeech_and_speech_measures_count_the_empty_and_the_looping():
    measures = nonspeech_measures([hyp(""), hyp("", 0.9), hyp("Taj hemma.", 0.1), hyp("", 0.8)])
    assert measures == {
        "nonspeech_clips": 4,
        "nonspeech_empty_share": 0.75,
        "nonspeech_no_speech_prob_median": pytest.approx(0.45),
    }
    speech = speech_measures(
        [hyp("Hej."), hyp(""), hyp("Folk svälter.")], [hyp("Hej."), hyp("ja ja ja ja"), hyp("Folk.")], DecodeOptions()
    )
    assert speech == {"speech_clips": 3, "speech_empty_share": 0.3333, "loop_share_greedy": 0.3333}


def test_deletions_are_reference_words_missing_from_the_transcript():
    assert deletion_rate(["folk svälter ihjäl", "i min jacka"], ["Folk svälter ihjäl.", "I jacka"]) == pytest.approx(
        1 / 6
    )
    assert deletion_rate(["a b"], ["a b c d"]) == 0.0  # insertions are not deletions
    measures = longform_measures(
        ["Folk svälter ihjäl.", "I min jacka."], ["folk svälter ihjäl", "i min jacka"], "folk i min"
    )
    assert measures == {"longform_words": 6, "longform_deletion_rate": 0.5, "clip_deletion_rate": 0.0}


def test_a_recording_is_seeded_and_holds_its_clips_in_order_with_pauses():
    clips = [np.full(SAMPLE_RATE, i + 1, dtype=np.float32) for i in range(10)]
    samples, used = recording(clips, seed=3, seconds=4.0)
    again, used_again = recording(clips, seed=3, seconds=4.0)
    assert used == used_again and np.array_equal(samples, again)
    assert len(set(used)) == len(used) < 10  # stops once 4 s are placed, each clip once
    assert len(samples) - int(1.5 * SAMPLE_RATE) >= 4 * SAMPLE_RATE
    values = [int(v) for v in np.unique(samples) if v]
    assert sorted(values) == sorted(i + 1 for i in used)
    order = [int(v) for i, v in enumerate(samples) if v and (i == 0 or samples[i - 1] != v)]
    assert order == [i + 1 for i in used]
    assert len(samples) > len(used) * (SAMPLE_RATE + 0.2 * SAMPLE_RATE)  # a pause before every clip
