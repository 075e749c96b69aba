"""Presets: partial params.yaml files in svwhisper/presets/, applied as `dvc exp run -S` overrides.

    python -m svwhisper.preset whisper-small-cv                       # print the dvc command
    python -m svwhisper.preset whisper-small-cv --run                 # run it as an experiment
    python -m svwhisper.preset whisper-small-cv --run -- --queue -n cv-small   # extra args go to dvc exp run

Going through `-S` keeps params.yaml's defaults and comments, and DVC records the run as an
experiment with exactly these params changed.
"""

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

PRESETS = Path(__file__).parent / "presets"


def load_preset(name: str) -> dict:
    path = PRESETS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
        raise SystemExit(f"preset: no preset {name!r} (known: {known})")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def flow(value) -> str:
    """A value as one-line YAML, the syntax `-S` accepts (lists and mappings in flow style)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def overrides(preset: dict, prefix: str = "") -> list[str]:
    """Nested mapping -> ["block.key=value", ...]; lists are set whole (e.g. a split's sources)."""
    out = []
    for key, value in preset.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += overrides(value, f"{name}.")
        else:
            out.append(f"{name}={flow(value)}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="a file name in svwhisper/presets/, without .yaml")
    parser.add_argument("--run", action="store_true", help="run `dvc exp run` instead of printing it")
    parser.add_argument("dvc_args", nargs="*", help="after --: more arguments for dvc exp run")
    args = parser.parse_args()
    cmd = ["dvc", "exp", "run"]
    for override in overrides(load_preset(args.name)):
        cmd += ["-S", override]
    cmd += args.dvc_args
    if not args.run:
        print(shlex.join(cmd))
        return
    sys.exit(subprocess.run(cmd).returncode)


if __name__ == "__main__":
    main()
