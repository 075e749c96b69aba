"""The improvement study of the default recipe: model- and data-centric variants, each trained with two seeds.

    svwhisper study run                 # run every variant x seed not run yet, one `dvc exp run --temp` each
    svwhisper study run --only lr-3x cosine       # some variants (their missing seeds)
    svwhisper study run --runs 4        # at most 4 runs this time (0: only collect finished experiments' rows)
    svwhisper study run --keep-recorded # resume from reports/study.tsv's rows where their experiments are gone
    svwhisper study table               # mean and spread per variant, from reports/study.tsv
    svwhisper study plot                # the learning curve: reports/learning_curve.{tsv,png} (`dvc plots show`)
    svwhisper study plan                # the runs and their -S overrides, without running anything

Every variant is the default pipeline (params.yaml: Whisper base, 4 s window, 120 steps) with one thing changed,
run through `evaluate` as a DVC experiment named `study-<variant>-s<seed>` in a temporary copy of the repo
(`--temp`: the workspace is left as it is). Seeds set `train.seed` (data order, dropout, adapter init); two
seeds of the same variant show how far a result moves by chance. After each run the experiment's metrics are
collected from its git ref into reports/study.tsv (one row a run), so a study cut short resumes where it
stopped: a run whose experiment exists is not run again. The runs go one at a time: each takes both cores.
"""

import argparse
import csv
import io
import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path

from svwhisper.atomic import write_text_atomic

RESULTS = Path("reports/study.tsv")
CURVE = Path("reports/learning_curve.tsv")  # declared in dvc.yaml's plots: `dvc plots show` draws it
LEARNING_CURVE = ("data-25", "data-50", "baseline")  # the same recipe on a growing share of the training clips
SEEDS = (42, 43)
MODEL_CENTRIC = {
    "baseline": ("the default recipe", []),
    "lr-0.3x": ("peak learning rate 3e-5", ["train.learning_rate=3e-5"]),
    "lr-3x": ("peak learning rate 3e-4", ["train.learning_rate=3e-4"]),
    "cosine": ("cosine decay instead of linear", ["train.lr_scheduler=cosine"]),
    "lora-32": (
        "LoRA rank 32 on the attention projections, lr 1e-3 (adapters want a higher rate)",
        ["train.lora_rank=32", "train.learning_rate=1e-3"],
    ),
    "frozen-encoder": ("encoder frozen, decoder trained", ["train.freeze_encoder=true"]),
    "specaug": (
        "SpecAugment at Whisper's default masking (time 0.05, no feature masks)",
        ["train.spec_augment=true", "train.mask_time_prob=0.05", "train.mask_feature_prob=0"],
    ),
    "specaug-strong": (
        "SpecAugment, strong (time 0.5, features 0.1)",
        ["train.spec_augment=true", "train.mask_time_prob=0.5", "train.mask_feature_prob=0.1"],
    ),
    "dropout-0.1": ("dropout 0.1", ["train.dropout=0.1"]),
    "window-8s": ("8 s audio window", ["model.chunk_length_s=8"]),
    # more learning per CPU minute
    "half-batch": (
        "batch 8 for 240 steps: the same clips, twice the updates (warm-up and evals at the same share)",
        ["train.batch_size=8", "train.max_steps=240", "train.warmup_steps=20"]
        + ["train.eval_steps=80", "train.save_steps=80", "train.logging_steps=20"],
    ),
    "freeze-low": (
        "the convolutional front end and the 2 lowest of 6 encoder layers frozen",
        ["train.freeze_encoder_layers=2"],
    ),
    "dev-3-evals": (
        "dev WER at steps 40, 80 and 120 (the schedule before the default's 60 and 120)",
        ["train.eval_steps=40", "train.save_steps=40"],
    ),
}
DATA_CENTRIC = {
    "aug-tempo": ("+ a time-stretched copy of each clip (0.9-1.1)", ["featurize.augment.transforms=[tempo]"]),
    "aug-noise": ("+ a copy with coloured noise at 10-30 dB SNR", ["featurize.augment.transforms=[noise]"]),
    "aug-gain": ("+ a copy at another level (-12 to +6 dB)", ["featurize.augment.transforms=[gain]"]),
    "aug-telephone": ("+ a copy through a telephone band", ["featurize.augment.transforms=[telephone]"]),
    "aug-all": (
        "+ a copy with all four at once",
        ["featurize.augment.transforms=[tempo,noise,telephone,gain]"],
    ),
    "data-25": ("25 % of the training clips", ["prepare.train_fraction=0.25"]),
    "data-50": ("50 % of the training clips", ["prepare.train_fraction=0.5"]),
    "labels-normalised": ("labels lower-cased, no punctuation", ["text.normalize_labels=true"]),
    "no-nonspeech": (
        "no non-speech clips in training (the recipe before they were added)",
        ["featurize.nonspeech.share=0"],
    ),
}
VARIANTS = MODEL_CENTRIC | DATA_CENTRIC
# one row of reports/study.tsv a run: what ran, and what came out (test split: normalised and orthographic)
FIELDS = ("variant", "seed", "experiment", "baseline", "train_hours", "train_runtime_s", "dev_wer")
FIELDS += ("wer", "cer", "wer_orthographic", "cer_orthographic")
# what the model does without speech (metrics/eval.json's robustness block): empty in rows of runs made before it
ROBUSTNESS = ("nonspeech_empty_share", "nonspeech_no_speech_prob_median", "speech_empty_share", "loop_share_greedy")


def experiment_name(variant: str, seed: int) -> str:
    return f"study-{variant}-s{seed}"


def overrides_of(variant: str, seed: int) -> list[str]:
    """The `-S` values of one run: the variant's changes, and its seed."""
    return [*VARIANTS[variant][1], f"train.seed={seed}"]


def run_command(variant: str, seed: int) -> list[str]:
    sets = [arg for override in overrides_of(variant, seed) for arg in ("-S", override)]
    return ["dvc", "exp", "run", "--temp", "--name", experiment_name(variant, seed), *sets, "evaluate"]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def experiment_refs() -> dict[str, str]:
    """Experiment name -> its newest git ref (`refs/exps/<baseline>/<name>`), over every baseline commit."""
    refs: dict[str, str] = {}
    for ref in git("for-each-ref", "--sort=committerdate", "--format=%(refname)", "refs/exps/").split():
        refs[ref.rsplit("/", 1)[-1]] = ref  # sorted oldest first: the newest of a name wins
    return refs


def row_of(variant: str, seed: int, ref: str) -> dict:
    """The results of one finished experiment, read from its commit."""

    def file(path: str) -> str:
        return git("show", f"{ref}:{path}")

    evaluation = json.loads(file("metrics/eval.json"))
    trained = json.loads(file("dvclive/metrics.json"))
    dev = [float(line.split("\t")[1]) for line in file("dvclive/plots/metrics/eval/wer.tsv").splitlines()[1:]]
    prepared = json.loads(file("reports/prepare.json"))
    return {
        "variant": variant,
        "seed": seed,
        "experiment": experiment_name(variant, seed),
        "baseline": ref.split("/")[2] + ref.split("/")[3][:5],  # refs/exps/ab/cdef.../name: the commit it ran on
        "train_hours": prepared["splits"]["train"]["hours"],
        "train_runtime_s": round(trained["train"]["runtime"], 1),
        "dev_wer": round(min(dev), 4),  # the best checkpoint's: the one kept as the final model
        **{
            key: finite_number(evaluation[key], f"study: {experiment_name(variant, seed)}: metrics/eval.json {key}")
            for key in ("wer", "cer", "wer_orthographic", "cer_orthographic")
        },
        **{
            key: finite_number(evaluation["robustness"][key], f"study: {experiment_name(variant, seed)}: {key}")
            for key in ROBUSTNESS
            if key in evaluation.get("robustness", {})
        },
    }


def collect(refs: dict[str, str]) -> list[dict]:
    return [
        row_of(variant, seed, refs[experiment_name(variant, seed)])
        for variant in VARIANTS
        for seed in SEEDS
        if experiment_name(variant, seed) in refs
    ]


def write_results(rows: list[dict], path: Path = RESULTS) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, FIELDS + ROBUSTNESS, delimiter="\t", lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, out.getvalue())  # a run cut off mid-write must not lose the rows already there


def finite_number(text: str | float, where: str) -> float:
    """`text` as a float; SystemExit naming `where` when it is not a finite number (nan and inf included)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise SystemExit(f"{where} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise SystemExit(f"{where} is not a finite number: {text!r}")
    return value


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        raise SystemExit(f"study: {path} does not exist: run `svwhisper study run` first")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if rows and set(FIELDS) - set(rows[0]):
        raise SystemExit(f"study: {path} lacks the columns {sorted(set(FIELDS) - set(rows[0]))}")
    for line, row in enumerate(rows, start=2):
        if row["variant"] not in VARIANTS:
            raise SystemExit(f"study: {path}:{line}: unknown variant {row['variant']!r}")
        if not re.fullmatch(r"[0-9]{1,9}", row["seed"]):  # isdigit() takes "²", which int() refuses
            raise SystemExit(f"study: {path}:{line}: seed is not a whole number: {row['seed']!r}")
        row["seed"] = int(row["seed"])
        if row["seed"] not in SEEDS:
            raise SystemExit(f"study: {path}:{line}: seed {row['seed']} is not one of the study's seeds {SEEDS}")
        for key in FIELDS[4:]:
            row[key] = finite_number(row[key], f"study: {path}:{line}: {key}")
        for key in ROBUSTNESS:  # absent or empty for runs made before the robustness measures
            value = row.get(key) or ""
            row[key] = finite_number(value, f"study: {path}:{line}: {key}") if value else None
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per variant (in VARIANTS order): runs, and mean and range of each measure over its seeds."""
    out = []
    for variant in VARIANTS:
        runs = [r for r in rows if r["variant"] == variant]
        if not runs:
            continue
        stats = {"variant": variant, "runs": len(runs)}
        for key in ("train_hours", "train_runtime_s", "dev_wer", "wer", "cer", "wer_orthographic"):
            values = [r[key] for r in runs]
            stats[key] = (statistics.fmean(values), min(values), max(values))
        for key in ROBUSTNESS:
            values = [r[key] for r in runs if r.get(key) is not None]
            stats[key] = (statistics.fmean(values), min(values), max(values)) if values else None
        out.append(stats)
    return out


def markdown(rows: list[dict]) -> str:
    """The study table: mean, and min-max over the seeds where there are two or more."""
    stats = summary(rows)
    base = next((s["wer"][0] for s in stats if s["variant"] == "baseline"), None)

    def shown(value: tuple, digits: int = 3) -> str:
        mean, low, high = value
        return f"{mean:.{digits}f}" if low == high else f"{mean:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"

    lines = [
        "| variant | what changes | runs | train h | train s | dev WER | test WER | vs base | test CER | WER orth. "
        "| non-speech empty | P(no speech) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in stats:
        delta = "" if base is None or s["variant"] == "baseline" else f"{s['wer'][0] - base:+.3f}"
        lines.append(
            f"| {s['variant']} | {VARIANTS[s['variant']][0]} | {s['runs']} | {s['train_hours'][0]:.2f} "
            f"| {s['train_runtime_s'][0]:.0f} | {shown(s['dev_wer'])} | {shown(s['wer'])} | {delta} "
            f"| {shown(s['cer'])} | {shown(s['wer_orthographic'])} "
            f"| {shown(s['nonspeech_empty_share'], 2) if s['nonspeech_empty_share'] else ''} "
            f"| {shown(s['nonspeech_no_speech_prob_median'], 2) if s['nonspeech_no_speech_prob_median'] else ''} |"
        )
    return "\n".join(lines)


def learning_curve(rows: list[dict]) -> list[dict]:
    """One point a run of LEARNING_CURVE: training hours against test WER and CER, fewest hours first."""
    points = [
        {key: r[key] for key in ("variant", "seed", "train_hours", "wer", "cer")}
        for r in rows
        if r["variant"] in LEARNING_CURVE
    ]
    return sorted(points, key=lambda p: (p["train_hours"], p["seed"]))


def plot(rows: list[dict], tsv: Path = CURVE) -> Path:
    """Writes the learning curve's points to `tsv` and draws them (each run, and the mean over seeds) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file
    import matplotlib.pyplot as plt

    points = learning_curve(rows)
    if not points:
        raise SystemExit(f"study: no runs of {', '.join(LEARNING_CURVE)} yet: nothing to plot")
    out = io.StringIO()
    writer = csv.DictWriter(out, list(points[0]), delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(points)
    write_text_atomic(tsv, out.getvalue())
    means = summary([r for r in rows if r["variant"] in LEARNING_CURVE])
    means.sort(key=lambda s: s["train_hours"][0])
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    axes.plot([p["train_hours"] for p in points], [p["wer"] for p in points], "o", alpha=0.5, label="one run")
    axes.plot([m["train_hours"][0] for m in means], [m["wer"][0] for m in means], "-", label="mean over seeds")
    axes.set(xlabel="training audio (hours)", ylabel="test WER", title="Whisper base, 120 steps, by training data")
    hours = sorted({p["train_hours"] for p in points})
    axes.set_xscale("log", base=2)  # each share doubles the last: even steps
    axes.set_xticks(hours, [f"{h:.2f}" for h in hours])
    axes.minorticks_off()
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    png = tsv.with_suffix(".png")
    figure.savefig(png)
    plt.close(figure)
    return png


def plan(only: list[str]) -> list[tuple[str, int]]:
    unknown = sorted(set(only) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"study: unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    # every variant's first seed before any second seed: a study cut short has one run of each
    return [(v, seed) for seed in SEEDS for v in VARIANTS if not only or v in only]


def merged(collected: list[dict], recorded: list[dict]) -> list[dict]:
    """The rows of finished experiments, and the recorded rows of runs with no experiment here, in collect()'s
    order (variant, then seed)."""
    if not recorded:
        return collected
    names = {row["experiment"] for row in collected}
    rows = collected + [row for row in recorded if row["experiment"] not in names]
    order = {experiment_name(v, seed): i for i, (v, seed) in enumerate((v, s) for v in VARIANTS for s in SEEDS)}
    return sorted(rows, key=lambda row: order[row["experiment"]])


def run(only: list[str], results: Path, runs: int | None = None, keep_recorded: bool = False) -> int:
    """Run the planned variants whose experiments do not exist yet, one at a time, collecting a row after each.
    `keep_recorded`: the runs with a row in `results` count as done too, and their rows are kept (a study resumed
    where its experiments are gone, e.g. on another machine); otherwise `results` is rewritten from experiments."""
    recorded = read_results(results) if keep_recorded and results.exists() else []
    for row in recorded:
        if row["experiment"] != experiment_name(row["variant"], row["seed"]):
            raise SystemExit(f"study: {results}: {row['experiment']!r} is not run {row['variant']} seed {row['seed']}")
    failed, started = [], 0
    for variant, seed in plan(only):
        name = experiment_name(variant, seed)
        if name in experiment_refs() or name in {row["experiment"] for row in recorded}:
            print(f"study: {name} done already")
            continue
        if runs is not None and started >= runs:
            print(f"study: {runs} run(s) done this time; `svwhisper study run` goes on with {name}")
            break
        started += 1
        print(f"study: running {name}: {' '.join(overrides_of(variant, seed))}", flush=True)
        if subprocess.run(run_command(variant, seed)).returncode:
            failed.append(name)
            print(f"study: {name} FAILED (see the output above); going on with the next", flush=True)
            continue
        write_results(merged(collect(experiment_refs()), recorded), results)  # a run's row is kept as it finishes
    write_results(merged(collect(experiment_refs()), recorded), results)
    print(f"study: results in {results}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("run", "table", "plot", "plan"))
    parser.add_argument("--only", nargs="+", default=[], metavar="VARIANT", help="these variants only")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the study's results file (TSV)")
    parser.add_argument("--runs", type=int, default=None, help="run at most this many, then stop (0: collect only)")
    parser.add_argument(
        "--keep-recorded",
        action="store_true",
        help="runs with a row in the results file count as done and keep their rows (resume without the experiments)",
    )
    args = parser.parse_args()
    if args.action == "plan":
        for variant, seed in plan(args.only):
            print(" ".join(run_command(variant, seed)))
    elif args.action == "table":
        print(markdown(read_results(args.results)))
    elif args.action == "plot":
        print(f"study: {plot(read_results(args.results))} and {CURVE}")
    else:
        sys.exit(run(args.only, args.results, args.runs, args.keep_recorded))


if __name__ == "__main__":
    main()
