"""base_model: the starting point of fine-tuning, as a save_pretrained dir (model + processor).

`model.name` picks it:
- `packaged:openai/whisper-base`: OpenAI Whisper base from the verified offline packages
  (svwhisper.whisper_base: sha256 of every file checked first, then converted);
- `scratch`: a small Whisper built offline, a byte-level BPE trained on the training sentences
  (plus all of Whisper's special tokens) and a random-init model;
- a hub id or local dir: that pretrained Whisper, loaded with from_pretrained.
A pretrained model's encoder is cut to `model.chunk_length_s` (30 keeps it as released). Every
one gets Swedish/transcribe set.

    python -m stages.base_model --prepared data/prepared --out models/base
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from svwhisper import whisper_base
from svwhisper.files import atomic_dir
from svwhisper.modeling import build_local, load_pretrained, set_audio_window, set_language_and_task
from svwhisper.params import ParamsRangeError, at_least, load_params, one_of
from svwhisper.text import TextParams, label_text


@dataclass(frozen=True)
class ModelParams:
    name: str = "scratch"
    language: str = "sv"
    task: str = "transcribe"
    vocab_size: int = 320
    chunk_length_s: int = 4
    num_mel_bins: int = 80
    d_model: int = 128
    encoder_layers: int = 2
    decoder_layers: int = 2
    attention_heads: int = 4
    ffn_dim: int = 512
    max_target_positions: int = 64
    seed: int = 0

    def check(self) -> None:
        if not self.name.strip():
            raise ValueError(f"name must be scratch, {whisper_base.NAME}, a hub id or a local dir")
        if not 1 <= self.chunk_length_s <= 30:
            window = self.chunk_length_s
            raise ParamsRangeError("chunk_length_s", f"must be 1..30 s (Whisper's window is 30), got {window}")
        one_of(self, "task", ("transcribe", "translate"))
        if self.vocab_size <= 256:
            raise ParamsRangeError("vocab_size", f"must exceed the 256 byte tokens, got {self.vocab_size}")
        at_least(self, 1, "num_mel_bins", "d_model", "encoder_layers", "decoder_layers", "attention_heads", "ffn_dim")
        at_least(self, 8, "max_target_positions")  # the prompt alone takes 4
        at_least(self, 0, "seed")
        if self.d_model % self.attention_heads:
            raise ParamsRangeError("d_model", f"({self.d_model}) must be a multiple of attention_heads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, required=True, help="prepare's output dir")
    parser.add_argument("--out", type=Path, required=True, help="save_pretrained dir to write")
    args = parser.parse_args()
    params = load_params(ModelParams, "model")
    text = load_params(TextParams, "text")

    if params.name == whisper_base.NAME:
        try:
            model, processor = whisper_base.load_whisper_base()
        except whisper_base.VerificationError as err:
            raise SystemExit(f"base_model: {err}") from None
    elif params.name != "scratch":
        model, processor = load_pretrained(params.name)
    else:
        sentences = pd.read_parquet(args.prepared / "train.parquet", columns=["sentence"])["sentence"]
        model, processor = build_local(
            (label_text(s, text) for s in sentences),
            vocab_size=params.vocab_size,
            chunk_length_s=params.chunk_length_s,
            num_mel_bins=params.num_mel_bins,
            d_model=params.d_model,
            encoder_layers=params.encoder_layers,
            decoder_layers=params.decoder_layers,
            attention_heads=params.attention_heads,
            ffn_dim=params.ffn_dim,
            max_target_positions=params.max_target_positions,
            seed=params.seed,
        )
    if params.name != "scratch":
        set_audio_window(model, processor, params.chunk_length_s)
    set_language_and_task(model, processor, params.language, params.task)
    with atomic_dir(args.out) as partial:
        model.save_pretrained(partial)
        processor.save_pretrained(partial)
    n_params = sum(p.numel() for p in model.parameters())
    window = processor.feature_extractor.chunk_length
    print(f"base_model: {params.name}: {n_params / 1e6:.2f} M parameters, {window} s window -> {args.out}")


if __name__ == "__main__":
    main()
