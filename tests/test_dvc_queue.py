"""A queued sweep: every experiment runs, and a failed one fails the check instead of hiding."""

import shutil
import subprocess
import sys

import pytest

from conftest import run
from svwhisper.dvc_queue import Task, parse_status

STATUS = """Task     Name        Created    Status
1ccd2a2  bad         09:25 PM   Failed
87797e4  lr-1e-3     09:25 PM   Success
9a0b1c2  lr-3e-3     Nov 24, 2026   Running

Worker status: 1 active, 0 idle
"""


def test_queue_status_is_parsed_by_task_with_its_experiment_name():
    expected = {"1ccd2a2": Task("bad", "Failed"), "87797e4": Task("lr-1e-3", "Success"),
                "9a0b1c2": Task("lr-3e-3", "Running")}  # fmt: skip
    assert parse_status(STATUS) == expected


# a failed experiment and its rerun under the same name: both are kept, the failure is not hidden
RERUN = """Task     Name     Created    Status
1ccd2a2  lr-bad   09:25 PM   Failed
2dde3b3  lr-bad   09:40 PM   Success
"""


def test_a_failed_experiment_is_not_hidden_by_a_later_one_of_the_same_name():
    assert parse_status(RERUN) == {"1ccd2a2": Task("lr-bad", "Failed"), "2dde3b3": Task("lr-bad", "Success")}


# unnamed tasks from an earlier day: the Name cell is empty and Created has spaces in it
EARLIER = """Task     Name     Created       Status
5d8e1f0           Nov 24, 2026  Failed
6a7b8c9           Nov 24, 2026  Running
7f0e1d2           Nov 24, 2026  Success
8c9d0e1  sweep-a  09:25 PM      Queued

Worker status: 1 active, 0 idle
"""


def test_unnamed_tasks_of_an_earlier_day_are_told_apart_by_task_id():
    expected = {"5d8e1f0": Task("", "Failed"), "6a7b8c9": Task("", "Running"), "7f0e1d2": Task("", "Success"),
                "8c9d0e1": Task("sweep-a", "Queued")}  # fmt: skip
    assert parse_status(EARLIER) == expected


@pytest.mark.slow
def test_a_sweep_with_a_failing_experiment_is_reported_and_exits_1(tiny_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo, symlinks=True)  # its run is committed: an experiment re-runs what it changes
    run(["dvc", "exp", "run", "--queue", "-n", "eval-batch-4", "-S", "evaluate.batch_size=4"], repo)  # evaluate only
    run(["dvc", "exp", "run", "--queue", "-n", "lr-bad", "-S", "train.learning_rate=-1"], repo)
    done = subprocess.run(
        [sys.executable, "-m", "svwhisper.dvc_queue", "--timeout", "600"], cwd=repo, capture_output=True, text=True
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 succeeded, 1 failed" in done.stdout and "FAILED lr-bad (task " in done.stdout
    shown = run(["dvc", "exp", "show", "--no-pager", "--csv"], repo).stdout
    assert "eval-batch-4" in shown and "Success" in shown
