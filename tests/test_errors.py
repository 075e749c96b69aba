"""evaluate's error analysis (svwhisper.errors): per speaker, per sentence length, the worst clips."""

import pandas as pd
import pytest

from svwhisper.errors import error_analysis

CLIPS = pd.DataFrame(
    [  # id, speaker, reference, hypothesis
        ("c1", "aaaaaaaaffff", "Det är bra.", "det är bra"),  # 0 errors / 3 words
        ("c2", "aaaaaaaaffff", "Hej hej!", "Hej."),  # 1 deletion / 2 words
        ("c3", "bbbbbbbbffff", "En två tre fyra fem sex sju.", "En två tre."),  # 4 deletions / 7 words
        (
            "c4",
            "bbbbbbbbffff",
            "Ett, två, tre, fyra, fem, sex, sju, åtta, nio, tio.",
            "Ett två tre fyra fem sex sju åtta nio tio",
        ),
        ("c5", "", "Vem vet?", "Vem vet vad?"),  # 1 insertion / 2 words, speaker unknown
    ],
    columns=["id", "speaker", "reference", "hypothesis"],
)


def test_errors_per_speaker_are_corpus_rates_over_their_clips_worst_first():
    by_speaker = error_analysis(CLIPS)["by_speaker"]
    assert [(s["speaker"], s["clips"], s["words"], s["errors"], s["wer"]) for s in by_speaker] == [
        ("", 1, 2, 1, 0.5),
        ("bbbbbbbb", 2, 17, 4, 0.2353),
        ("aaaaaaaa", 2, 5, 1, 0.2),
    ]
    assert by_speaker[1]["cer"] == pytest.approx(17 / 68, abs=1e-4)  # " fyra fem sex sju" lost, of 27 + 41 characters


def test_errors_per_sentence_length_and_the_worst_clips_with_their_text_as_written():
    analysis = error_analysis(CLIPS)
    assert [(b["length"], b["clips"], b["wer"]) for b in analysis["by_length"]] == [
        ("1-3", 3, round(2 / 7, 4)),
        ("7-9", 1, round(4 / 7, 4)),
        ("10+", 1, 0.0),
    ]
    worst = analysis["worst"]
    assert [w["id"] for w in worst] == ["c3", "c2", "c5", "c1", "c4"]  # 4/7, then 1/2 with ties by id, then 0
    assert worst[0] == {
        "id": "c3",
        "speaker": "bbbbbbbb",
        "wer": 0.5714,
        "errors": 4,
        "reference": "En två tre fyra fem sex sju.",
        "hypothesis": "En två tre.",
    }


def test_a_hypothesis_for_a_reference_without_words_counts_its_words_as_errors():
    clips = pd.DataFrame([("x", "s", "…", "hallå där")], columns=["id", "speaker", "reference", "hypothesis"])
    assert error_analysis(clips)["worst"][0]["errors"] == 2
