"""Benchmark: the cost of a training step of the packaged Whisper base at different audio windows.

Each setting fine-tunes the same verified Whisper base (svwhisper.whisper_base) on the same
clips and labels: forward, backward and an AdamW update at batch `--batch-size`, on this
machine's CPU threads. Settings: the encoder cut to 4 s and 8 s (all weights train), and the
released 30 s window with the encoder frozen (the decoder trains; the encoder still runs
forward over 30 s). `--full-30` adds the 30 s window with every weight training. Test WER of
each setting comes from `dvc exp run` (README, Audio window), not from here.

    python benchmarks/window.py --steps 3      # about 3 minutes on 2 cores

The last line printed is one JSON object: seconds per step and peak RSS per setting, and each
setting's cost relative to the 4 s window.
"""

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from svwhisper.audio import load_audio
from svwhisper.data import SpeechCollator
from svwhisper.logmel import compact_log_mel
from svwhisper.modeling import set_audio_window, set_language_and_task
from svwhisper.sources import Clip, Source, iter_clips
from svwhisper.whisper_base import load_whisper_base

REPO = Path(__file__).resolve().parents[1]

SAMPLE = REPO / "data" / "sample" / "sv-SE"


def batch_for(processor, clips: list[Clip], start_id: int) -> dict:
    items = [
        {"input_features": compact_log_mel(load_audio(c.audio), processor.feature_extractor), "labels": ids}
        for c, ids in zip(clips, processor.tokenizer([c.sentence for c in clips]).input_ids, strict=True)
    ]
    return SpeechCollator(processor.feature_extractor.nb_max_frames, start_id)(items)


def seconds_per_step(window_s: int, freeze_encoder: bool, clips: list[Clip], steps: int) -> float:
    model, processor = load_whisper_base()
    set_audio_window(model, processor, window_s)
    set_language_and_task(model, processor, "sv", "transcribe")
    if freeze_encoder:
        model.freeze_encoder()
    model.train()
    batch = batch_for(processor, clips, model.config.decoder_start_token_id)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and kernels
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting (the fastest counts)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--full-30", action="store_true", help="also time the 30 s window with every weight training")
    args = parser.parse_args()
    clips = [
        c
        for c, _ in zip(
            (c for c in iter_clips(Source(kind="commonvoice", path=str(SAMPLE), tsv="train")) if isinstance(c, Clip)),
            range(args.batch_size),
            strict=False,
        )
    ]
    settings = [("4s", 4, False), ("8s", 8, False), ("30s_frozen_encoder", 30, True)]
    if args.full_30:
        settings.append(("30s", 30, False))
    result = {"batch_size": args.batch_size, "threads": torch.get_num_threads()}
    for name, window, frozen in settings:
        result[f"{name}_s_per_step"] = round(seconds_per_step(window, frozen, clips, args.steps), 3)
        print(name, result[f"{name}_s_per_step"], "s/step", flush=True)
    base = result["4s_s_per_step"]
    for name, _, _ in settings:
        result[f"{name}_vs_4s"] = round(result[f"{name}_s_per_step"] / base, 2)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
