"""export: the final model -> CTranslate2 with int8 weights, the fast CPU backend of the app and the CLI.

python -m stages.export --model models/final --out models/ct2
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

from svwhisper.files import atomic_dir
from svwhisper.params import load_params, one_of

# the processor and generation files the CTranslate2 backend reads beside model.bin
COPIED = ("processor_config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json")


@dataclass(frozen=True)
class ExportParams:
    quantization: str = "int8"  # CTranslate2 weight type: int8, int8_float32, int16, float16, float32

    def check(self) -> None:
        allowed = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32")
        one_of(self, "quantization", allowed)


def export(model_dir: Path, out: Path, quantization: str) -> None:
    from ctranslate2.converters import TransformersConverter

    copied = [name for name in COPIED if (model_dir / name).is_file()]
    with atomic_dir(out) as partial:  # the app never sees half an export
        converter = TransformersConverter(str(model_dir), copy_files=copied)
        converter.convert(str(partial), quantization=quantization, force=True)


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
