"""The `svwhisper` command: one entry point for the tools that are not DVC stages.

    svwhisper transcribe lecture.m4a --srt lecture.srt     # = python -m svwhisper.transcribe ...
    arecord -f S16_LE -r 16000 -c 1 | svwhisper live -     # live captions from a microphone
    svwhisper remote check | push | pull
    svwhisper publish you/svwhisper-small-sv --dry-run out/
    svwhisper space you/svwhisper-demo --model you/svwhisper-small-sv --dry-run space/
    svwhisper study | preset | queue

Each subcommand is the `main()` of its module, with the rest of the command line; `svwhisper <command> -h`
shows its options. Run them from the repository root (they read `params.yaml` there).
"""

import importlib
import sys

COMMANDS = {
    "transcribe": ("svwhisper.transcribe", "transcribe recordings of any length; SRT, WebVTT, JSON with word times"),
    "live": ("svwhisper.streaming", "live captions from a microphone pipe (raw PCM on stdin) or a file in real time"),
    "remote": ("svwhisper.remote", "check the DVC remote, push, or pull the model and this run's checkpoints"),
    "publish": ("svwhisper.publish", "publish the final model with a model card to the Hugging Face Hub"),
    "space": ("svwhisper.space", "deploy the page as a Hugging Face Space serving a published model"),
    "study": ("svwhisper.study", "run the improvement study's experiments, or print its table"),
    "preset": ("svwhisper.preset", "run a preset (e.g. whisper-small on Common Voice) as a dvc experiment"),
    "queue": ("svwhisper.dvc_queue", "run queued experiments and exit 1 naming any that failed"),
}


def usage() -> str:
    lines = [f"  {name:<11} {about}" for name, (_, about) in COMMANDS.items()]
    return "usage: svwhisper <command> [options]\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    if argv[0] not in COMMANDS:
        sys.exit(f"svwhisper: no command {argv[0]!r}\n{usage()}")
    module = importlib.import_module(COMMANDS[argv[0]][0])
    sys.argv = [f"svwhisper {argv[0]}", *argv[1:]]
    module.main()


if __name__ == "__main__":
    main()
