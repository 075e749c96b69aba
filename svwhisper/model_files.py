"""What a model folder holds: the one definition used by export, publish and the app's backends.

A saved model is what `save_pretrained` writes for a Whisper and its processor; an export is
CTranslate2's conversion of it plus the processor files copied beside it; a published model is the
saved model's files plus its card. Each backend needs one file of every group it lists.
"""

from pathlib import Path

PROCESSOR = ("processor_config.json", "preprocessor_config.json")  # transformers 5 writes the first
SAVED_MODEL = (  # every file a saved Whisper model and processor may have
    "model.safetensors",
    "config.json",
    "generation_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "normalizer.json",
)
EXPORT_COPIED = ("processor_config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json")
NEEDED = {  # the groups each backend cannot load without: one file of each
    "transformers": (("config.json",), ("model.safetensors", "pytorch_model.bin"), ("tokenizer.json",), PROCESSOR),
    "ctranslate2": (
        ("config.json",),
        ("model.bin",),
        ("vocabulary.json", "vocabulary.txt"),
        ("tokenizer.json",),
        PROCESSOR,
    ),
}


def missing_groups(model_dir: Path, backend: str) -> tuple[list[str], bool]:
    """(the needed groups `model_dir` lacks, as "a or b"; whether it has any of them at all)."""
    needed = NEEDED[backend]
    present = [names for names in needed if any((Path(model_dir) / n).is_file() for n in names)]
    return [" or ".join(names) for names in needed if names not in present], bool(present)
