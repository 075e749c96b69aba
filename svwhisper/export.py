"""The CTranslate2 conversion of a saved model (the export stage's work), with its processor files beside it."""

from pathlib import Path

from svwhisper.atomic import atomic_dir
from svwhisper.model_files import EXPORT_COPIED


def export(model_dir: Path, out: Path, quantization: str) -> None:
    """`model_dir` (a save_pretrained dir) converted to CTranslate2 at `quantization` into `out`, with the processor
    and generation files the CTranslate2 backend reads beside model.bin (EXPORT_COPIED)."""
    from ctranslate2.converters import TransformersConverter

    copied = [name for name in EXPORT_COPIED if (model_dir / name).is_file()]
    with atomic_dir(out) as partial:  # the app never sees half an export
        converter = TransformersConverter(str(model_dir), copy_files=copied)
        converter.convert(str(partial), quantization=quantization, force=True)
