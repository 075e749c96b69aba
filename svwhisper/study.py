"""The improvement study of the scratch model: variants of its recipe, each one `dvc exp run`, at one budget.

    python -m svwhisper.study run      # queue every variant (named study-*) and run them one at a time
    python -m svwhisper.study table    # the table in docs/results.md: `dvc exp show --md` with the study's columns
    python -m svwhisper.study table --rev 1a2b3c4   # runs made on an earlier commit (options go to dvc exp show)

Every variant starts from SCRATCH, the small from-scratch Whisper with the recipe it was tuned with
(normalised labels, joint CTC, lr 3e-3), and trains for STEPS steps, so that the seven runs take well
under an hour on 2 CPU cores; `study-baseline` is that recipe at this budget, the row to compare with.
The pipeline's default (fine-tuning the pretrained Whisper base) is not what these variants change.
"""

import argparse
import subprocess
import sys

STEPS = 500
SCRATCH = {  # the scratch model's recipe: every variant starts from it
    "model.name": "scratch",
    "text.normalize_labels": "true",
    "train.learning_rate": "3e-3",
    "train.lr_scheduler": "cosine",
    "train.warmup_steps": "100",
    "train.batch_size": "32",
    "train.ctc_weight": "0.3",
    "train.eval_steps": "500",
    "train.save_steps": "500",
    "train.logging_steps": "50",
}
VARIANTS = {
    "study-baseline": [],
    "study-lr-1e-3": ["train.learning_rate=1e-3"],
    "study-specaugment": ["train.spec_augment=true"],
    "study-no-ctc": ["train.ctc_weight=0"],
    "study-wide": ["model.d_model=256", "model.ffn_dim=1024"],
    "study-deep": ["model.encoder_layers=4", "model.decoder_layers=4"],
    "study-vocab-1000": ["model.vocab_size=1000"],
}
# the columns of the table: experiment, the changed knobs, held-out and dev error rates, training time
KNOBS = ("train.learning_rate", "train.spec_augment", "train.ctc_weight", "model.d_model", "model.ffn_dim")
KNOBS += ("model.encoder_layers", "model.decoder_layers", "model.vocab_size")
COLUMNS = "|".join(("Experiment", *KNOBS, "wer", "cer", "eval.wer", "train.runtime")).replace(".", r"\.")


def overrides_of(name: str) -> list[str]:
    """The `-S` values of variant `name`: the scratch recipe at STEPS steps, with the variant's own on top."""
    values = {**SCRATCH, "train.max_steps": str(STEPS)}
    values |= dict(override.split("=", 1) for override in VARIANTS[name])
    return [f"{key}={value}" for key, value in values.items()]


def queue_commands() -> list[list[str]]:
    return [
        ["dvc", "exp", "run", "--queue", "--name", name] + [arg for o in overrides_of(name) for arg in ("-S", o)]
        for name in VARIANTS
    ]


def table_command() -> list[str]:
    keep = f"^({COLUMNS})$"
    return [
        "dvc",
        "exp",
        "show",
        "--md",
        "--no-pager",
        "--hide-queued",
        "--drop",
        ".*",
        "--keep",
        keep,
        "--precision",
        "3",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("run", "table"))
    args, extra = parser.parse_known_args()  # table: more `dvc exp show` options, e.g. --rev <commit the runs used>
    if args.action == "table":
        sys.exit(subprocess.run([*table_command(), *extra]).returncode)
    for cmd in queue_commands():
        subprocess.run(cmd, check=True)
    sys.exit(subprocess.run([sys.executable, "-m", "svwhisper.dvc_queue"]).returncode)


if __name__ == "__main__":
    main()
