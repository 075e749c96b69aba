"""export: the final model -> CTranslate2 with int8 weights, the fast CPU backend of the app and the CLI.

python -m stages.export --model models/final --out models/ct2
"""

import argparse
from pathlib import Path

from svwhisper.export import export
from svwhisper.paramfile import load_params
from svwhisper.params import ExportParams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="the train stage's final model dir")
    parser.add_argument("--out", type=Path, required=True, help="CTranslate2 model dir to write")
    args = parser.parse_args()
    params = load_params(ExportParams, "export")
    export(args.model, args.out, params.quantization)
    size = sum(p.stat().st_size for p in args.out.iterdir()) / 1e6
    print(f"export: {args.model} -> {args.out} ({params.quantization}, {size:.1f} MB)")


if __name__ == "__main__":
    main()
