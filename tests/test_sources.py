"""Each kind of data source, read from local data the tests create (no hub)."""

import json
import shutil

import pytest

from conftest import SAMPLE, SCRATCH_MODEL, copy_repo, new_repo, run, sample_rows
from svwhisper.paramfile import ParamsError, load_params
from svwhisper.params import PrepareParams
from svwhisper.sources import BadRow, Clip, ManifestError, Source, iter_clips

CV_HEADER = "client_id\tpath\tsentence_id\tsentence\tup_votes\tdown_votes\tage\tgender\tlocale\tnew_column"


def clips_of(source: Source) -> tuple[list[Clip], list[BadRow]]:
    items = list(iter_clips(source))
    return [i for i in items if isinstance(i, Clip)], [i for i in items if isinstance(i, BadRow)]


def test_commonvoice_tsv_keeps_quotes_extra_columns_and_normalises_to_nfc(tmp_path):
    rows = [
        'c1\ta.mp3\tsid\t"Tårta på tårta", sa han.\t2\t0\t\t\tsv-SE\tx',
        "c2\tb.mp3\tsid\ta\u030ar\t3\t1\t\t\tsv-SE\tx",
        "c1\tc.mp3\tonly four fields\t2",  # line 4: the wrong number of fields
    ]
    (tmp_path / "train.tsv").write_text("\n".join([CV_HEADER, *rows]) + "\n", encoding="utf-8")
    clips, bad = clips_of(Source(kind="commonvoice", path=str(tmp_path), tsv="train"))
    assert [c.sentence for c in clips] == ['"Tårta på tårta", sa han.', "år"]
    assert [c.vote_margin for c in clips] == [2, 2] and [c.speaker for c in clips] == ["c1", "c2"]
    assert clips[0].audio == tmp_path / "clips" / "a.mp3" and clips[0].id == "a"
    assert bad == [BadRow(f"{tmp_path / 'train.tsv'}:4", reason_text="4 fields, the header has 10")]


def test_bad_encoding_and_missing_columns_name_the_file_and_line(tmp_path):
    bad_file = tmp_path / "train.tsv"
    bad_file.write_bytes(
        CV_HEADER.encode() + b"\nc\ta.mp3\ts\tok\t1\t0\t\t\tsv\tx\nc\tb.mp3\ts\t\xff\xfe\t1\t0\t\t\tsv\tx\n"
    )
    clips, bad = clips_of(Source(kind="commonvoice", path=str(tmp_path), tsv="train"))  # one bad line costs one row
    assert [c.id for c in clips] == ["a"] and bad == [BadRow(f"{bad_file}:3", reason_text="not valid UTF-8")]
    (tmp_path / "mine.csv").write_text("file,sentence\na.wav,hej\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"mine\.csv:1: missing required column\(s\) path"):
        list(iter_clips(Source(kind="manifest", path=str(tmp_path / "mine.csv"))))


def test_csv_and_tsv_manifests_resolve_paths_beside_the_manifest(tmp_path):
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "one.wav").write_bytes(b"")
    (tmp_path / "list.csv").write_text(
        'path,sentence,speaker\nrec/one.wav,"Hej, hej på dig.",\nrec/two.wav,"Två, tre",anna\nrec/x.wav,a,b,c\n',
        encoding="utf-8",
    )
    clips, bad = clips_of(Source(kind="manifest", path=str(tmp_path / "list.csv")))
    assert [(c.id, c.sentence, c.speaker) for c in clips] == [
        (f"{tmp_path}/rec/one", "Hej, hej på dig.", ""),  # the file's path as the params give it: unique
        (f"{tmp_path}/rec/two", "Två, tre", "anna"),
    ]
    assert clips[0].audio == tmp_path / "rec" / "one.wav"
    assert bad == [BadRow(f"{tmp_path / 'list.csv'}:4", reason_text="4 fields, the header has 3")]
    (tmp_path / "list.tsv").write_text('path\tsentence\nrec/one.wav\t"Citat" sa hon.\n', encoding="utf-8")
    clips, _ = clips_of(Source(kind="manifest", path=str(tmp_path / "list.tsv")))
    assert clips[0].sentence == '"Citat" sa hon.'


def test_folder_pairs_each_clip_with_its_transcript_and_names_speakers_by_subfolder(tmp_path):
    (tmp_path / "anna").mkdir()
    for name in ("anna/a1.mp3", "b.wav", "no_text.flac"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "anna/a1.txt").write_text("Första meningen.\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("Andra.", encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored", encoding="utf-8")
    clips, bad = clips_of(Source(kind="folder", path=str(tmp_path)))
    assert [(c.id, c.sentence, c.speaker) for c in clips] == [
        (f"{tmp_path}/anna/a1", "Första meningen.", "anna"),
        (f"{tmp_path}/b", "Andra.", ""),
    ]
    assert bad == [BadRow(str(tmp_path / "no_text.flac"), "missing_transcript")]


@pytest.mark.parametrize("streaming", [False, True])
def test_hf_source_reads_a_local_parquet_dataset_through_datasets(tmp_path, monkeypatch, streaming):
    from datasets import Audio, Dataset

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    rows = sample_rows(3)
    audio = [{"bytes": (SAMPLE / "clips" / p).read_bytes(), "path": p} for _, p, _ in rows]
    table = {"audio": audio, "transcription": [s for _, _, s in rows], "speaker_id": [c for c, _, _ in rows]}
    Dataset.from_dict(table).cast_column("audio", Audio()).to_parquet(tmp_path / "sv.parquet")
    source = Source(
        kind="hf",
        name="parquet",
        path=str(tmp_path / "sv.parquet"),
        text_column="transcription",
        speaker_column="speaker_id",
        streaming=streaming,
    )
    clips, bad = clips_of(source)
    assert bad == []
    assert [(c.sentence, c.speaker) for c in clips] == [(s, c) for c, _, s in rows]
    assert clips[1].audio == audio[1]["bytes"] and clips[1].id == f"parquet/train/{tmp_path}/sv.parquet#00000001"
    with pytest.raises(ManifestError, match="no column 'sentence'.*transcription"):
        clips_of(Source(kind="hf", name="parquet", path=str(tmp_path / "sv.parquet"), streaming=streaming))


@pytest.mark.parametrize(
    "entry, message",
    [
        ("{kind: zip, path: x}", "kind 'zip' is not one of commonvoice"),
        ("{kind: commonvoice, path: data/sample/sv-SE}", "a commonvoice source needs 'tsv'"),
        ("{kind: manifest, path: data/sample/m.csv, streaming: true}", "streaming only apply to hf"),
        ("{kind: hf, name: parquet, colums: x}", "sources.train\\[0\\].colums: unknown key"),
        ("{kind: manifest, path: /elsewhere/m.csv}", "outside local_data"),
    ],
)
def test_bad_source_entries_are_errors_naming_the_line_and_the_entry(tmp_path, monkeypatch, entry, message):
    monkeypatch.chdir(tmp_path)
    text = (
        "prepare:\n  local_data: data/sample\n  sources:\n"
        f"    train:\n      - {entry}\n    dev: [{{kind: folder, path: data/sample}}]\n"
        "    test: [{kind: folder, path: data/sample}]\n"
    )
    (tmp_path / "params.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ParamsError, match=r"params\.yaml(:5)?: prepare\.?.*" + message):
        load_params(PrepareParams, "prepare", tmp_path / "params.yaml")


def test_every_split_needs_a_source(tmp_path):
    text = "prepare:\n  sources:\n    train: [{kind: folder, path: data/sample}]\n    dev: []\n    test: []\n"
    (tmp_path / "params.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ParamsError, match="split 'dev' has no sources"):
        load_params(PrepareParams, "prepare", tmp_path / "params.yaml")


def write_sources(root) -> None:
    """Under `root`: a CV-layout tree, a CSV manifest (with one corrupt clip), a folder and two
    Parquet datasets, 4 shipped clips each, plus a TSV manifest for test."""
    from datasets import Audio, Dataset

    rows = iter(sample_rows(24))

    def take(n):
        return [next(rows) for _ in range(n)]

    (root / "cv/clips").mkdir(parents=True)
    lines = [CV_HEADER, "broken\trow"]
    for client, clip, sentence in take(4):
        shutil.copy(SAMPLE / "clips" / clip, root / "cv/clips" / clip)
        lines.append(f"{client}\t{clip}\tsid\t{sentence}\t2\t0\t\t\tsv-SE\tx")
    (root / "cv/train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "mine/rec").mkdir(parents=True)
    manifest = ["path,sentence,speaker"]
    for client, clip, sentence in take(4):
        shutil.copy(SAMPLE / "clips" / clip, root / "mine/rec" / clip)
        manifest.append(f'rec/{clip},"{sentence}",{client}')
    (root / "mine/rec/corrupt.mp3").write_bytes(b"\x00" * 100)
    manifest.append('rec/corrupt.mp3,"Trasig fil.",x')
    (root / "mine/train.csv").write_text("\n".join(manifest) + "\n", encoding="utf-8")
    test = ["path\tsentence"]
    for _, clip, sentence in take(4):
        shutil.copy(SAMPLE / "clips" / clip, root / "mine/rec" / clip)
        test.append(f"rec/{clip}\t{sentence}")
    (root / "mine/test.tsv").write_text("\n".join(test) + "\n", encoding="utf-8")
    for _, clip, sentence in take(4):
        (root / "folder/speaker1").mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / "clips" / clip, root / "folder/speaker1" / clip)
        (root / "folder/speaker1" / clip).with_suffix(".txt").write_text(sentence, encoding="utf-8")
    (root / "hf").mkdir()
    for split in ("train", "dev"):
        chosen = take(4)
        table = {
            "audio": [{"bytes": (SAMPLE / "clips" / c).read_bytes(), "path": c} for _, c, _ in chosen],
            "sentence": [s for _, _, s in chosen],
        }
        Dataset.from_dict(table).cast_column("audio", Audio()).to_parquet(root / "hf" / f"{split}.parquet")


@pytest.mark.slow
def test_every_kind_of_source_runs_through_dvc_repro(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    hf = {"kind": "hf", "name": "parquet"}
    overrides = {
        "prepare": {
            "local_data": "data/sources",
            "sources": {
                "train": [
                    {"kind": "commonvoice", "path": "data/sources/cv", "tsv": "train"},
                    {"kind": "manifest", "path": "data/sources/mine/train.csv"},
                    {"kind": "folder", "path": "data/sources/folder"},
                    {**hf, "path": "data/sources/hf/train.parquet"},
                ],
                "dev": [{**hf, "path": "data/sources/hf/dev.parquet", "streaming": True}],
                "test": [{"kind": "manifest", "path": "data/sources/mine/test.tsv"}],
            },
        },
        "model": SCRATCH_MODEL,  # the sources are under test, not the model
        "train": {"max_steps": 10, "warmup_steps": 2, "batch_size": 8, "eval_steps": 10, "save_steps": 10},
        "evaluate": {"batch_size": 8},
    }
    repo = tmp_path / "repo"
    repo.mkdir()
    write_sources(copy_repo(repo) / "data/sources")
    repo = new_repo(repo, overrides)
    run(["dvc", "repro", "evaluate"], repo)  # prepare to evaluate (peers and export do not read the sources)

    report = json.loads((repo / "reports/prepare.json").read_text(encoding="utf-8"))
    assert report["sources"]["train"] == [
        "commonvoice:data/sources/cv/train.tsv",
        "manifest:data/sources/mine/train.csv",
        "folder:data/sources/folder",
        "hf:parquet/train/data/sources/hf/train.parquet",
    ]
    kept = {split: report["splits"][split]["kept"] for split in ("train", "dev", "test")}
    assert kept == {"train": 16, "dev": 4, "test": 4}
    dropped = report["splits"]["train"]["dropped"]
    assert dropped["malformed_row"] == 1 and dropped["undecodable_clip"] == 1
    (corrupt,) = report["splits"]["train"]["dropped_examples"]["undecodable_clip"]
    assert corrupt.startswith("data/sources/mine/rec/corrupt.mp3 (") and "not an audio file" in corrupt, corrupt
    assert json.loads((repo / "metrics/eval.json").read_text())["n_utterances"] == 4
    again = run(["dvc", "repro", "evaluate"], repo).stdout
    assert "Running stage" not in again, again
    # a change to a local source reruns prepare
    (repo / "data/sources/folder/speaker1/extra.txt").write_text("Ingen ljudfil här.", encoding="utf-8")
    assert "prepare" in run(["dvc", "status"], repo).stdout
