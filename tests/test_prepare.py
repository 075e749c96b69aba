import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import SAMPLE
from stages.prepare import PrepareParams, overlaps, prepare_split
from svwhisper.audio import load_audio
from svwhisper.commonvoice import ManifestError, read_tsv

HEADER = "client_id\tpath\tsentence_id\tsentence\tup_votes\tdown_votes\tage\tgender\tlocale\tnew_column"


def cv_tree(tmp_path, rows: list[str]):
    """A Common Voice layout with `rows` as train.tsv; clips named good*.mp3 are copied real ones."""
    clips = tmp_path / "clips"
    clips.mkdir()
    real = sorted((SAMPLE / "clips").glob("*.mp3"))
    for i, name in enumerate(["good1.mp3", "good2.mp3"]):
        shutil.copy(real[i], clips / name)
    (clips / "empty.mp3").write_bytes(b"")
    (clips / "text.mp3").write_text("not audio", encoding="utf-8")
    sf.write(clips / "short.wav", np.zeros(800, dtype=np.float32), 16000)  # 0.05 s
    sf.write(clips / "long.wav", np.full(16000 * 6, 0.1, dtype=np.float32), 16000)  # 6 s
    (tmp_path / "train.tsv").write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return tmp_path


def row(path, sentence, up=2, down=0):
    return f"c1\t{path}\tsid\t{sentence}\t{up}\t{down}\t\t\tsv-SE\textra"


def test_read_tsv_keeps_quotes_extra_columns_and_normalises_to_nfc(tmp_path):
    tsv = cv_tree(tmp_path, [row("good1.mp3", '"Tårta på tårta", sa han.'), row("good2.mp3", "a\u030ar")])
    frame, malformed = read_tsv(tsv / "train.tsv")
    assert malformed == []
    assert frame["sentence"].tolist() == ['"Tårta på tårta", sa han.', "år"]
    assert "new_column" in frame.columns and frame["up_votes"].tolist() == [2, 2]


def test_read_tsv_names_file_and_line_for_bad_encoding_and_missing_columns(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(HEADER.encode() + b"\n" + row("a.mp3", "ok").encode() + b"\nc\tb.mp3\ts\t\xff\xfe\t1\t0\n")
    with pytest.raises(ManifestError, match=r"bad\.tsv:3: not valid UTF-8"):
        read_tsv(bad)
    (tmp_path / "cols.tsv").write_text("client_id\tpath\nc\ta.mp3\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"cols\.tsv:1: missing required column\(s\) sentence"):
        read_tsv(tmp_path / "cols.tsv")


def test_prepare_split_keeps_good_clips_and_counts_every_drop_reason(tmp_path):
    rows = [
        row("good1.mp3", "Akka fick ett drygt arbete."),
        row("good2.mp3", "Det säger allt."),
        row("missing.mp3", "Finns inte."),
        row("empty.mp3", "Tom fil."),
        row("text.mp3", "Ingen ljudfil."),
        row("short.wav", "Kort."),
        row("long.wav", "Lång."),
        row("good1.mp3", "   "),
        row("good2.mp3", "Nedröstad.", up=0, down=2),
        "c1\tgood1.mp3\tonly four fields\t2",  # line 11: the wrong number of fields
        row("good1.mp3", "x" * 300),
        row("half.mp3", "Akka fick ett drygt arbete, sade han och log."),
        row("good2.mp3", "Ja."),  # 3 characters in about two seconds: 1.6 chars/s
    ]
    source = cv_tree(tmp_path, rows)
    full = (source / "clips/good1.mp3").read_bytes()
    (source / "clips/half.mp3").write_bytes(full[: len(full) // 3])  # truncated: decodes, but short
    params = PrepareParams(source_dir=str(source), train_tsvs=("train",), min_duration_s=0.3, max_duration_s=4.0)
    table, report = prepare_split(source, "train", params)
    assert table["sentence"].tolist() == ["Akka fick ett drygt arbete.", "Det säger allt."]
    assert report["kept"] == 2
    assert report["dropped"] == {
        "malformed_row": 1,
        "empty_sentence": 1,
        "sentence_too_long": 1,
        "down_votes": 1,
        "test_speaker": 0,
        "missing_clip": 1,
        "undecodable_clip": 2,
        "too_short": 1,
        "too_long": 1,
        "chars_per_second": 2,
    }
    assert report["dropped_examples"]["missing_clip"] == [str(source / "clips" / "missing.mp3")]
    assert report["dropped_examples"]["malformed_row"] == [f"{source / 'train'}.tsv:11"]
    assert sorted(report["dropped_examples"]["chars_per_second"]) == [
        str(source / "clips" / "good2.mp3"),
        str(source / "clips" / "half.mp3"),
    ]
    assert report["hours"] == pytest.approx(table["duration_s"].sum() / 3600, abs=1e-4)
    # the stored audio is the decoded clip at 16 kHz
    np.testing.assert_allclose(load_audio(table["audio"][0]), load_audio(source / "clips/good1.mp3"), atol=1e-4)


def test_test_speakers_can_be_excluded_from_train_and_overlaps_are_counted(tmp_path):
    rows = [row("good1.mp3", "Akka fick ett drygt arbete."), row("good2.mp3", "Det säger allt.").replace("c1", "c2", 1)]
    source = cv_tree(tmp_path, rows)
    params = PrepareParams(source_dir=str(source), max_duration_s=4.0)
    train, report = prepare_split(source, "train", params, excluded_speakers=frozenset({"c1"}))
    assert train["client_id"].tolist() == ["c2"] and report["dropped"]["test_speaker"] == 1
    test = pd.DataFrame({"sentence": ["det säger ALLT!", "Nytt."], "client_id": ["c2", "c9"]})
    counts = overlaps({"train": train, "dev": test.iloc[1:], "test": test})
    assert counts["sentences_train_test"] == 1  # compared after normalising
    assert counts["speakers_train_test"] == 1
    assert counts["sentences_train_dev"] == 0 and counts["speakers_dev_test"] == 1
