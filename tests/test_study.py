"""The improvement study's bookkeeping (svwhisper.study): results read from experiment refs, resumed, tabulated."""

import json
import os
import subprocess

import pytest

from svwhisper import study

FILES = {  # what an experiment's commit holds that the study reads
    "metrics/eval.json": {"wer": 0.0912, "cer": 0.029, "wer_orthographic": 0.11, "cer_orthographic": 0.033},
    "dvclive/metrics.json": {"train": {"runtime": 598.04}, "eval": {"wer": 0.15}},
    "reports/prepare.json": {"splits": {"train": {"hours": 1.2345}}},
}


def git(repo, *args, env=None):
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env)
    return done.stdout.strip()


def commit_experiment(repo, ref, wer, dev_wers, hour):
    for path, content in FILES.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        data = json.loads(json.dumps(content))
        if path == "metrics/eval.json":
            data["wer"] = wer
        (repo / path).write_text(json.dumps(data))
    curve = repo / "dvclive/plots/metrics/eval/wer.tsv"
    curve.parent.mkdir(parents=True, exist_ok=True)
    curve.write_text("step\twer\n" + "".join(f"{40 * (i + 1)}\t{w}\n" for i, w in enumerate(dev_wers)))
    git(repo, "add", "-A")
    date = {"GIT_COMMITTER_DATE": f"2026-12-01T{hour:02d}:00:00", "PATH": os.environ["PATH"], "HOME": str(repo)}
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", ref, "--allow-empty", env=date)
    git(repo, "update-ref", ref, "HEAD")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    git(tmp_path, "init", "-q")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_results_come_from_each_experiments_commit_and_the_newest_of_a_name_wins(repo):
    commit_experiment(repo, "refs/exps/ab/cdef0123/study-baseline-s42", 0.2, [0.3, 0.25, 0.26], 10)
    commit_experiment(repo, "refs/exps/12/3456789a/study-baseline-s42", 0.0912, [0.31, 0.17, 0.18], 11)
    commit_experiment(repo, "refs/exps/12/3456789a/study-lr-3x-s43", 0.08, [0.2], 12)
    commit_experiment(repo, "refs/exps/12/3456789a/not-the-study", 0.5, [0.5], 13)
    rows = study.collect(study.experiment_refs())
    assert [(r["variant"], r["seed"]) for r in rows] == [("baseline", 42), ("lr-3x", 43)]  # VARIANTS order
    assert rows[0] == {
        "variant": "baseline",
        "seed": 42,
        "experiment": "study-baseline-s42",
        "baseline": "1234567",
        "train_hours": 1.2345,
        "train_runtime_s": 598.0,
        "dev_wer": 0.17,  # the best checkpoint's, which became the final model; not the last evaluation's
        "wer": 0.0912,
        "cer": 0.029,
        "wer_orthographic": 0.11,
        "cer_orthographic": 0.033,
    }
    study.write_results(rows, repo / "study.tsv")
    assert [r["wer"] for r in study.read_results(repo / "study.tsv")] == [0.0912, 0.08]


def row(variant, seed, wer, dev=0.15, hours=0.9):
    values = {"train_hours": hours, "train_runtime_s": 600.0, "dev_wer": dev, "cer": wer / 3, "cer_orthographic": 0}
    return {"variant": variant, "seed": seed, "experiment": "", "baseline": "", **values, "wer": wer,
            "wer_orthographic": wer + 0.02}  # fmt: skip


def test_the_table_gives_mean_and_range_over_seeds_and_the_difference_from_the_baseline():
    rows = [row("lr-3x", 42, 0.08), row("baseline", 42, 0.10), row("baseline", 43, 0.12), row("lr-3x", 43, 0.09)]
    rows.append(row("data-25", 42, 0.3, hours=0.25))
    lines = study.markdown(rows).splitlines()
    assert lines[2].startswith("| baseline | the default recipe | 2 | 0.90 | 600 | 0.150 | 0.110 (0.100-0.120) |  |")
    assert lines[3].startswith(
        "| lr-3x | peak learning rate 3e-4 | 2 | 0.90 | 600 | 0.150 | 0.085 (0.080-0.090) | -0.025 |"
    )
    assert lines[4].startswith("| data-25 | 25 % of the training clips | 1 | 0.25 | 600 | 0.150 | 0.300 | +0.190 |")


def test_a_damaged_results_file_names_its_line(tmp_path):
    path = tmp_path / "study.tsv"
    study.write_results([row("baseline", 42, 0.1), row("baseline", 43, 0.1)], path)
    good = path.read_text()
    path.write_text(good.replace("baseline\t43", "lr-9x\t43"))
    with pytest.raises(SystemExit, match=r"study.tsv:3: unknown variant 'lr-9x'"):
        study.read_results(path)
    path.write_text(good.replace("0.1\t", "n/a\t", 1))
    with pytest.raises(SystemExit, match=r"study.tsv:2: wer is not a number: 'n/a'"):
        study.read_results(path)
    path.write_text(good.replace("baseline\t43", "baseline\tforty-three"))
    with pytest.raises(SystemExit, match=r"study.tsv:3: seed is not a whole number: 'forty-three'"):
        study.read_results(path)
    with pytest.raises(SystemExit, match="run `svwhisper study run` first"):
        study.read_results(tmp_path / "none.tsv")


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("baseline\t43", "baseline\t4²", r"study.tsv:3: seed is not a whole number: '4²'"),  # isdigit() says yes
        ("baseline\t43", "baseline\t44", r"study.tsv:3: seed 44 is not one of the study's seeds"),
        ("0.1\t", "nan\t", r"study.tsv:2: wer is not a finite number: 'nan'"),
        ("0.1\t", "inf\t", r"study.tsv:2: wer is not a finite number: 'inf'"),
    ],
)
def test_a_results_row_with_an_odd_seed_or_a_nan_is_refused_with_its_line(tmp_path, old, new, message):
    path = tmp_path / "study.tsv"
    study.write_results([row("baseline", 42, 0.1), row("baseline", 43, 0.1)], path)
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(SystemExit, match=message):
        study.read_results(path)


def test_the_results_file_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "study.tsv"
    study.write_results([row("baseline", 42, 0.1)], path)
    before = path.read_text()

    def killed(*args):  # the process dies after writing the new rows, before they are in place
        raise OSError("killed")

    monkeypatch.setattr("svwhisper.atomic.os.replace", killed)
    with pytest.raises(OSError, match="killed"):
        study.write_results([row("baseline", 42, 0.1), row("baseline", 43, 0.2)], path)
    assert path.read_text() == before


def test_a_run_resumes_past_finished_experiments_and_goes_on_after_a_failure(tmp_path, monkeypatch):
    done = {"study-baseline-s42": "refs/exps/ab/cd/study-baseline-s42"}
    ran = []

    def fake_run(cmd, **kwargs):
        name = cmd[cmd.index("--name") + 1]
        ran.append(name)
        if name != "study-lr-3x-s42":
            done[name] = f"refs/exps/ab/cd/{name}"
        return subprocess.CompletedProcess(cmd, 1 if name == "study-lr-3x-s42" else 0)

    monkeypatch.setattr(study.subprocess, "run", fake_run)
    monkeypatch.setattr(study, "experiment_refs", lambda: dict(done))
    monkeypatch.setattr(study, "collect", lambda refs: [row(n.split("-s4")[0][6:], 42, 0.1) for n in refs])
    assert study.run(["baseline", "lr-3x", "cosine"], tmp_path / "study.tsv") == 1
    assert ran == ["study-lr-3x-s42", "study-cosine-s42", "study-baseline-s43", "study-lr-3x-s43", "study-cosine-s43"]
    assert len(study.read_results(tmp_path / "study.tsv")) == 5  # every finished run, the failed one not
    ran.clear()
    assert study.run(["baseline", "lr-3x", "cosine"], tmp_path / "study.tsv", runs=1) == 1  # lr-3x-s42 again: fails
    assert study.run(["baseline", "lr-3x", "cosine"], tmp_path / "study.tsv", runs=0) == 0  # collects, runs nothing
    assert ran == ["study-lr-3x-s42"]
    with pytest.raises(SystemExit, match="unknown variants \\['lr-9x'\\]"):
        study.plan(["lr-9x"])


def test_a_resumed_study_keeps_the_recorded_rows_whose_experiments_are_gone(tmp_path, monkeypatch):
    results = tmp_path / "study.tsv"
    recorded = [row("baseline", 42, 0.104), row("lr-3x", 42, 0.193), row("baseline", 43, 0.122)]
    for r in recorded:
        r["experiment"] = study.experiment_name(r["variant"], r["seed"])
    study.write_results(recorded, results)
    done, ran = {}, []

    def fake_run(cmd, **kwargs):
        name = cmd[cmd.index("--name") + 1]
        ran.append(name)
        done[name] = f"refs/exps/ab/cd/{name}"
        return subprocess.CompletedProcess(cmd, 0)

    def fake_collect(refs):
        return [{**row(n[6:-4], int(n[-2:]), 0.2), "experiment": n} for n in refs]

    monkeypatch.setattr(study.subprocess, "run", fake_run)
    monkeypatch.setattr(study, "experiment_refs", lambda: dict(done))
    monkeypatch.setattr(study, "collect", fake_collect)
    assert study.run(["baseline", "lr-3x"], results, keep_recorded=True) == 0
    assert ran == ["study-lr-3x-s43"]  # the three recorded runs are not run again
    rows = study.read_results(results)
    assert [(r["experiment"], r["wer"]) for r in rows] == [
        ("study-baseline-s42", 0.104),
        ("study-baseline-s43", 0.122),
        ("study-lr-3x-s42", 0.193),
        ("study-lr-3x-s43", 0.2),
    ]
    assert study.run(["baseline"], results) == 0  # without the flag the file is rebuilt from experiments alone
    assert ran[1:] == ["study-baseline-s42", "study-baseline-s43"]
    assert {r["experiment"] for r in study.read_results(results)} == set(done)
    results.write_text(results.read_text().replace("study-baseline-s42", "study-baseline-s43", 1))
    with pytest.raises(SystemExit, match="'study-baseline-s43' is not run baseline seed 42"):
        study.run(["baseline"], results, keep_recorded=True)


def test_the_learning_curve_orders_its_runs_by_training_hours_and_is_drawn(tmp_path):
    rows = [row("baseline", 42, 0.10, hours=1.0), row("data-25", 42, 0.30, hours=0.25), row("lr-3x", 42, 0.05)]
    rows += [row("data-50", 43, 0.18, hours=0.5), row("data-25", 43, 0.32, hours=0.25)]
    points = study.learning_curve(rows)
    assert [(p["variant"], p["seed"], p["wer"]) for p in points] == [
        ("data-25", 42, 0.30),
        ("data-25", 43, 0.32),
        ("data-50", 43, 0.18),
        ("baseline", 42, 0.10),
    ]  # lr-3x is not a point of it: another recipe
    png = study.plot(rows, tmp_path / "curve.tsv")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (tmp_path / "curve.tsv").read_text().splitlines()[
        1
    ] == "data-25\t42\t0.25\t0.3\t0.09999999999999999"  # cer = wer / 3 here
    with pytest.raises(SystemExit, match="nothing to plot"):
        study.plot([row("lr-3x", 42, 0.05)], tmp_path / "none.tsv")
