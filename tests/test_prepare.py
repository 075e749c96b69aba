import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from conftest import SAMPLE
from svwhisper.audio import load_audio
from svwhisper.params import PrepareParams, Sources
from svwhisper.prepare import overlaps, prepare_split
from svwhisper.sources import Source

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


def train_source(tree) -> Source:
    return Source(kind="commonvoice", path=str(tree), tsv="train")


def filters(tree, **overrides) -> PrepareParams:
    """PrepareParams with the train TSV of `tree` as every split (only the filters matter here)."""
    source = (train_source(tree),)
    return PrepareParams(Sources(source, source, source), local_data=str(tree), **overrides)


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
        row("good1.mp3", "Samma klipp igen."),  # the same clip id twice in one split
        row("half.mp3", "Akka fick ett drygt arbete, sade han och log."),
        row("slow.mp3", "Ja."),  # 3 characters in about two seconds: 1.6 chars/s
        row("novotes.mp3", "Röster okända.", up="", down=""),  # a release without votes: kept, no vote filter
        row("good1.mp3", "Trasiga röster.", up="två", down=0),  # line 17: not a count
    ]
    source = cv_tree(tmp_path, rows)
    full = (source / "clips/good1.mp3").read_bytes()
    (source / "clips/half.mp3").write_bytes(full[: len(full) // 3])  # truncated: decodes, but short
    shutil.copy(source / "clips/good2.mp3", source / "clips/slow.mp3")
    shutil.copy(source / "clips/good2.mp3", source / "clips/novotes.mp3")
    params = filters(source, min_duration_s=0.3, max_duration_s=4.0)
    meta, report = prepare_split([train_source(source)], params, tmp_path / "out" / "train.parquet")
    table = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert meta.equals(table.drop(columns="audio"))
    assert table["sentence"].tolist() == ["Akka fick ett drygt arbete.", "Det säger allt.", "Röster okända."]
    assert report["kept"] == 3
    assert report["dropped"] == {
        "malformed_row": 2,
        "control_characters": 0,
        "missing_transcript": 0,
        "unreadable_transcript": 0,
        "empty_sentence": 1,
        "sentence_too_long": 1,
        "down_votes": 1,
        "duplicate_clip": 1,
        "test_speaker": 0,
        "outside_data": 0,
        "missing_clip": 1,
        "undecodable_clip": 2,
        "too_short": 1,
        "too_long": 1,
        "chars_per_second": 2,
        "outside_subset": 0,
    }
    assert report["dropped_examples"]["missing_clip"] == [str(source / "clips" / "missing.mp3")]
    assert report["dropped_examples"]["malformed_row"] == [
        f"{source / 'train'}.tsv:11 (4 fields, the header has 10)",
        f"{source / 'train'}.tsv:17 (up_votes 'två' is not a count)",
    ]
    # a dropped clip keeps what went wrong: the decoder's message, the measured speaking rate
    assert sorted(report["dropped_examples"]["undecodable_clip"]) == [
        f"{source / 'clips' / 'empty.mp3'} ({source / 'clips' / 'empty.mp3'}: the file is empty)",
        f"{source / 'clips' / 'text.mp3'} ({source / 'clips' / 'text.mp3'}: not an audio file this reads (wav, flac, "
        "mp3, ogg/opus, m4a/mp4/aac, webm, aiff))",
    ]
    assert all("characters a second" in where for where in report["dropped_examples"]["chars_per_second"])
    assert report["rows"] == report["kept"] + sum(report["dropped"].values())
    assert sorted(where.split(" (")[0] for where in report["dropped_examples"]["chars_per_second"]) == [
        str(source / "clips" / "half.mp3"),
        str(source / "clips" / "slow.mp3"),
    ]
    assert report["hours"] == pytest.approx(table["duration_s"].sum() / 3600, abs=1e-4)
    # the stored audio is the decoded clip at 16 kHz
    np.testing.assert_allclose(load_audio(table["audio"][0]), load_audio(source / "clips/good1.mp3"), atol=1e-4)


def test_test_speakers_can_be_excluded_from_train_and_overlaps_are_counted(tmp_path):
    rows = [row("good1.mp3", "Akka fick ett drygt arbete."), row("good2.mp3", "Det säger allt.").replace("c1", "c2", 1)]
    source = cv_tree(tmp_path, rows)
    out = tmp_path / "train.parquet"
    train, report = prepare_split([train_source(source)], filters(source), out, excluded_speakers=frozenset({"c1"}))
    assert train["client_id"].tolist() == ["c2"] and report["dropped"]["test_speaker"] == 1
    test = pd.DataFrame({"id": ["good2", "x"], "sentence": ["det säger ALLT!", "Nytt."], "client_id": ["c2", "c9"]})
    counts = overlaps({"train": train, "dev": test.iloc[1:], "test": test})
    assert counts["clips_train_test"] == 1 and counts["clips_train_dev"] == 0
    assert counts["sentences_train_test"] == 1  # compared after normalising
    assert counts["speakers_train_test"] == 1
    assert counts["sentences_train_dev"] == 0 and counts["speakers_dev_test"] == 1


def test_prepared_split_is_written_in_bounded_row_groups_and_is_deterministic(tmp_path):
    source = Source(kind="commonvoice", path=str(SAMPLE), tsv="train")
    params = filters(SAMPLE, max_duration_s=4.0, max_clips_per_split=300)
    prepare_split([source], params, tmp_path / "a.parquet")
    prepare_split([source], params, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    groups = pq.ParquetFile(tmp_path / "a.parquet")
    assert [groups.metadata.row_group(i).num_rows for i in range(groups.num_row_groups)] == [256, 44]
