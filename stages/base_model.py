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
from pathlib import Path

import pandas as pd

from svwhisper import whisper_base
from svwhisper.atomic import atomic_dir
from svwhisper.modeling import build_local, load_pretrained, set_audio_window, set_language_and_task
from svwhisper.paramfile import load_params
from svwhisper.params import ModelParams, TextParams
from svwhisper.text import label_text


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
        model, processor = build_local((label_text(s, text) for s in sentences), params)
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
