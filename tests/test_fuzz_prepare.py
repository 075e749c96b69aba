"""A fuzz test of prepare: hundreds of randomly broken manifest rows and clip files through the real stage.

Whatever the rows and bytes, the stage finishes, and every row it read is either kept or counted under a
reason: kept + dropped = rows, where the rows are counted here from the bytes written, independently of the
stage's own reader. Seeded, so a failure reproduces.
"""

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SAMPLE, sample_rows

SEEDS = (0, 1, 2)
ROWS = 120  # per seed and per manifest: 2 manifests x 3 seeds = 720 rows
CV_HEADER = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents"
CONTROL = ["\x00", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "\r", "\x7f", "\ufeff"]


def broken_clips(rng: random.Random, clips: Path, good: list[str]) -> list[str]:
    """Clip files under `clips`: the good ones and broken copies of them; their names."""
    names = list(good)
    for i, name in enumerate(good[:8]):
        data = (clips / name).read_bytes()
        variants = {
            f"trunc{i}.mp3": data[: rng.randrange(1, len(data))],
            f"zeros{i}.mp3": b"\0" * rng.randrange(1, 5000),
            f"random{i}.wav": rng.randbytes(rng.randrange(1, 5000)),
            f"empty{i}.flac": b"",
            f"wrongext{i}.wav": data,  # mp3 bytes named .wav
            f"header{i}.mp3": data[:64] + rng.randbytes(2000),
            f"riff{i}.wav": b"RIFF" + rng.randbytes(100),
        }
        for variant, content in variants.items():
            (clips / variant).write_bytes(content)
        names += list(variants)
    return names


def mutate(rng: random.Random, fields: list[str], sentence_at: int, path_at: int) -> str:
    """One row with one or two random mutations of its fields (or none)."""
    fields = list(fields)
    for _ in range(rng.choice((0, 1, 1, 2))):
        kind = rng.randrange(11)
        if kind == 0:
            fields.pop(rng.randrange(len(fields)))
        elif kind == 1:
            fields.insert(rng.randrange(len(fields) + 1), "extra")
        elif kind == 2:
            text = fields[sentence_at]
            cut = rng.randrange(len(text) + 1)
            fields[sentence_at] = text[:cut] + '"' + text[cut:]
        elif kind == 3:
            text = fields[sentence_at]
            cut = rng.randrange(len(text) + 1)
            fields[sentence_at] = text[:cut] + rng.choice(CONTROL) + text[cut:]
        elif kind == 4:
            fields[sentence_at] = "x" * rng.choice((300, 140_000))
        elif kind == 5:
            fields[path_at] = rng.choice(("../../../../etc/hostname", "/etc/hostname", "", "nope.mp3", "."))
        elif kind == 6:
            fields[sentence_at] = rng.choice(("", "   ", "\t", "ÅÄÖ" * 3))
        elif kind == 7:
            fields[sentence_at] = "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(1, 40)))
        elif kind == 8:
            fields[sentence_at] += "\udcff"  # written with surrogateescape: a byte that is not UTF-8
        elif kind == 9 and len(fields) > 6:
            fields[5], fields[6] = rng.choice((("-3", "9"), ("x", "y"), ("1e9", ""), ("2", "0")))
        elif kind == 10:
            fields[path_at] = fields[path_at].upper()
    return fields


def write_rows(path: Path, header: str, rows: list[list[str]], sep: str) -> None:
    lines = [header, *(sep.join(r) for r in rows)]
    path.write_bytes("\n".join(lines).encode("utf-8", errors="surrogateescape") + b"\n")


def rows_in(path: Path) -> int:
    """Data rows of a written table by its bytes: lines ended by \\n, \\r\\n or \\r, not empty, after the header."""
    lines = [line for line in re.split(rb"\r\n|\r|\n", path.read_bytes()) if line]
    return len(lines) - 1


def fuzz_repo(root: Path, seed: int) -> tuple[Path, dict]:
    rng = random.Random(seed)
    data = root / "data"
    clips = data / "cv" / "clips"
    clips.mkdir(parents=True)
    samples = sample_rows(16)
    for _, name, _ in samples:
        shutil.copy(SAMPLE / "clips" / name, clips / name)
    names = broken_clips(rng, clips, [name for _, name, _ in samples])
    cv_rows, csv_rows = [], []
    for i in range(ROWS):
        client, _, sentence = rng.choice(samples)
        clip = rng.choice(names)
        fields = [client, clip, f"s{i}", sentence, "", "2", "0", "", "", ""]
        cv_rows.append(mutate(rng, fields, sentence_at=3, path_at=1))
        row = mutate(rng, [f"cv/clips/{rng.choice(names)}", rng.choice(samples)[2], client], 1, 0)
        csv_rows.append([field.replace(",", " ") for field in row])  # unquoted: a quote in it is unbalanced
    write_rows(data / "cv" / "train.tsv", CV_HEADER, cv_rows, "\t")
    write_rows(data / "list.csv", "path,sentence,speaker", csv_rows, ",")
    good = [[client, name, "s", sentence, "", "2", "0", "", "", ""] for client, name, sentence in samples[:4]]
    write_rows(data / "cv" / "good.tsv", CV_HEADER, good, "\t")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["prepare"].update(
        local_data="data",
        max_duration_s=30.0,
        sources={
            "train": [
                {"kind": "commonvoice", "path": "data/cv", "tsv": "train"},
                {"kind": "manifest", "path": "data/list.csv"},
            ],
            "dev": [{"kind": "commonvoice", "path": "data/cv", "tsv": "good"}],
            "test": [{"kind": "commonvoice", "path": "data/cv", "tsv": "good"}],
        },
    )
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    written = {"rows": rows_in(data / "cv" / "train.tsv") + rows_in(data / "list.csv")}
    written["sentences"] = {r[3] for r in cv_rows if len(r) > 3} | {r[1] for r in csv_rows if len(r) > 1}
    return root, written


@pytest.mark.parametrize("seed", SEEDS)
def test_prepare_finishes_and_accounts_for_every_row_whatever_the_input(tmp_path, seed):
    repo, written = fuzz_repo(tmp_path, seed)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "stages.prepare", "--out", "out", "--report", "report.json"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    train = json.loads((repo / "report.json").read_text(encoding="utf-8"))["splits"]["train"]
    assert train["rows"] == written["rows"], train
    assert train["kept"] + sum(train["dropped"].values()) == train["rows"], train
    assert 0 < train["kept"] < train["rows"], train  # some rows survive the mutations, some do not
    import pandas as pd

    kept = pd.read_parquet(repo / "out" / "train.parquet", columns=["sentence"])["sentence"]
    assert set(kept) <= {s.strip() for s in written["sentences"]}  # no row swallowed another
    assert not kept.str.contains(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]").any()
