"""Run the queued DVC experiments and fail if any of them failed (`dvc queue start` exits 0 either way).

dvc exp run --queue -S train.learning_rate=1e-3      # queue as many as you like
python -m svwhisper.dvc_queue                            # start, wait, report; exit 1 if one failed
python -m svwhisper.dvc_queue --jobs 2 --timeout 7200
"""

import argparse
import subprocess
import sys
import time
from typing import NamedTuple

PENDING = ("Queued", "Running")


class Task(NamedTuple):
    name: str  # the experiment's name; "" when it has none
    status: str  # Queued, Running, Success or Failed

    def label(self, task_id: str) -> str:
        return f"{self.name} (task {task_id})" if self.name else f"task {task_id}"


def parse_status(text: str) -> dict[str, Task]:
    """`dvc queue status` output -> {task id: Task}. Keyed by the task id, which is unique: two experiments may
    share a name (a failed one and its rerun), and neither may hide the other.

    The table's columns (Task, Name, Created, Status) are cut where the header puts them: a task
    without a name has an empty Name cell, and Created may be "09:25 PM" or "Nov 24, 2026".
    """
    tasks: dict[str, Task] = {}
    columns = None
    for line in text.splitlines():
        fields = line.split()
        if fields[:1] == ["Task"] and "Name" in fields and "Created" in fields:
            columns = line.index("Name"), line.index("Created")
            continue
        if columns is None or len(fields) < 3 or fields[-1] not in (*PENDING, "Success", "Failed"):
            continue
        name = line[columns[0] : columns[1]].strip()
        tasks[fields[0]] = Task(name, fields[-1])
    return tasks


def queue_status() -> dict[str, Task]:
    done = subprocess.run(["dvc", "queue", "status"], capture_output=True, text=True, check=True)
    return parse_status(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1, help="experiments run at once (each takes all cores)")
    parser.add_argument("--timeout", type=float, default=24 * 3600, help="seconds to wait for the queue")
    parser.add_argument("--no-start", action="store_true", help="only wait for a queue already started")
    args = parser.parse_args()

    if not args.no_start:
        subprocess.run(["dvc", "queue", "start", "--jobs", str(args.jobs)], check=True)
    deadline = time.monotonic() + args.timeout
    tasks = queue_status()
    while any(task.status in PENDING for task in tasks.values()):
        if time.monotonic() > deadline:
            sys.exit(f"queue: still running after {args.timeout:.0f} s: {tasks}")
        time.sleep(5)
        tasks = queue_status()
    failed = sorted(task_id for task_id, task in tasks.items() if task.status == "Failed")
    print(f"queue: {len(tasks) - len(failed)} succeeded, {len(failed)} failed")
    for task_id in failed:
        shown = tasks[task_id].label(task_id)
        print(f"queue: FAILED {shown}: see `dvc queue logs {task_id}`; `dvc queue remove --failed` clears it")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
