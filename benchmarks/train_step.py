"""Ablation: what our training step's choices buy, on the same clips and labels, in one run.

Not a comparison with a peer (benchmarks/recipe.py trains the Hugging Face recipe against ours): both
models have the dims of params.yaml's `model` block (the scratch model) and are built offline (random init).
Baseline (the ablation): every clip padded to a 30 s window, eager attention, batches in file order.
Ours (what the train stage runs): the window fitted to the corpus (`model.chunk_length_s`),
PyTorch SDPA attention, and the joint CTC loss when `train.ctc_weight` > 0. Batches are the same
clips in the same order for both: we do not bucket by length, because every clip is padded to the
encoder window anyway and the labels are short. A step is forward, backward and an AdamW update.
Target: speedup_vs_baseline >= 1.5 (samples per second).

    python benchmarks/train_step.py --quick     # batch 16, 3 timed steps each: about 40 s on 2 cores
    python benchmarks/train_step.py --breakdown # batch 32, 10 steps, plus a 30 s SDPA run: where the speedup comes from

The last line printed is one JSON object.
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from svwhisper.audio import load_audio
from svwhisper.data import SpeechCollator
from svwhisper.logmel import compact_log_mel
from svwhisper.modeling import build_local
from svwhisper.paramfile import load_params
from svwhisper.params import ModelParams, TrainParams
from svwhisper.sources import Clip, Source, iter_clips
from svwhisper.text import normalize
from svwhisper.trainer import ctc_loss

REPO = Path(__file__).resolve().parents[1]

SAMPLE = REPO / "data" / "sample" / "sv-SE"


def sample_clips(n: int) -> list[Clip]:
    clips = iter_clips(Source(kind="commonvoice", path=str(SAMPLE), tsv="train"))
    return [c for c, _ in zip((c for c in clips if isinstance(c, Clip)), range(n), strict=False)]


def build(model_params: ModelParams, sentences: list[str], window_s: int, attention: str):
    model, processor = build_local(sentences, dataclasses.replace(model_params, chunk_length_s=window_s))
    model.set_attn_implementation(attention)
    return model, processor


def batch_for(processor, model, clips: list[Clip], audio: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """The collated batch the train stage would feed: features padded to the window, labels with -100."""
    items = [
        {
            "input_features": compact_log_mel(samples, processor.feature_extractor),
            "labels": processor.tokenizer(normalize(clip.sentence)).input_ids,
        }
        for clip, samples in zip(clips, audio, strict=True)
    ]
    collate = SpeechCollator(processor.feature_extractor.nb_max_frames, model.config.decoder_start_token_id)
    return collate(items)


def time_steps(model, batch, steps: int, device: str, ctc_weight: float = 0.0, blank_id: int = 0) -> float:
    """Seconds per training step (after one untimed warm-up step)."""
    model.to(device).train()
    head = torch.nn.Linear(model.config.d_model, blank_id + 1).to(device) if ctc_weight else None
    params = list(model.parameters()) + (list(head.parameters()) if head else [])
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    batch = {k: v.to(device) for k, v in batch.items()}

    def step():
        outputs = model(**batch)
        loss = outputs.loss
        if head is not None:
            ctc = ctc_loss(head, outputs.encoder_last_hidden_state, batch["labels"], blank_id)
            loss = (1 - ctc_weight) * loss + ctc_weight * ctc
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="batch 16, 3 timed steps each (default: 32, 10)")
    parser.add_argument("--breakdown", action="store_true", help="also time the 30 s window with SDPA attention")
    parser.add_argument("--steps", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    steps = args.steps or (3 if args.quick else 10)
    args.batch_size = args.batch_size or (16 if args.quick else 32)
    model_params = load_params(ModelParams, "model", REPO / "params.yaml")
    train_params = load_params(TrainParams, "train", REPO / "params.yaml")

    clips = sample_clips(args.batch_size)
    audio = [load_audio(c.audio) for c in clips]
    sentences = [normalize(c.sentence) for c in sample_clips(2000)]
    baseline, baseline_processor = build(model_params, sentences, window_s=30, attention="eager")
    ours, processor = build(model_params, sentences, window_s=model_params.chunk_length_s, attention="sdpa")
    baseline_batch = batch_for(baseline_processor, baseline, clips, audio)
    our_batch = batch_for(processor, ours, clips, audio)
    assert torch.equal(baseline_batch["labels"], our_batch["labels"])  # the same targets either way
    blank = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")

    baseline_s = time_steps(baseline, baseline_batch, steps, args.device)
    ours_s = time_steps(ours, our_batch, steps, args.device, train_params.ctc_weight, blank)
    tokens = int((our_batch["labels"] != -100).sum())
    result = {
        "device": args.device,
        "batch_size": args.batch_size,
        "steps": steps,
        "window_s": {"baseline": 30, "ours": model_params.chunk_length_s},
        "baseline_samples_per_s": round(args.batch_size / baseline_s, 2),
        "ours_samples_per_s": round(args.batch_size / ours_s, 2),
        "baseline_tokens_per_s": round(tokens / baseline_s, 1),
        "ours_tokens_per_s": round(tokens / ours_s, 1),
        "speedup_vs_baseline": round(baseline_s / ours_s, 2),
    }
    if args.breakdown:  # the lab's window with our attention: what SDPA alone gives
        window_only, _ = build(model_params, sentences, window_s=30, attention="sdpa")
        sdpa_s = time_steps(window_only, baseline_batch, steps, args.device)
        result["sdpa_30s_samples_per_s"] = round(args.batch_size / sdpa_s, 2)
        result["speedup_from_attention"] = round(baseline_s / sdpa_s, 2)
        result["speedup_from_window_and_rest"] = round(sdpa_s / ours_s, 2)
    result["target_met"] = result["speedup_vs_baseline"] >= 1.5
    print(json.dumps(result))


if __name__ == "__main__":
    main()
