"""Where the train stage's time goes: data, forward, backward, optimizer step, dev evaluation, checkpoint save.

Runs the train stage's own pieces (svwhisper.trainer.build_model, the feature split, the collator, the Trainer's
optimizer (class, kwargs and weight-decay groups), the model's `generate` on dev as the Trainer's evaluation calls
it) on the pipeline's base model and features, timing each phase separately for `--steps` steps at
`train.batch_size`, one dev evaluation on `--dev-clips` clips (scaled to all of dev) and one checkpoint save; then
projects a whole run of `train.max_steps` steps with its `max_steps / eval_steps` evaluations and saves. `--ops`
adds torch.profiler's top operators by self CPU time over two steps. Reads params.yaml (`dvc exp run -S` values are
not seen: pass the file's values).

    python benchmarks/train_profile.py --steps 6 --dev-clips 64 --ops

Needs `dvc repro` up to featurize (models/base, data/features). The last line printed is one JSON object.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import Trainer, WhisperProcessor

from svwhisper.data import FeatureSplit, SpeechCollator
from svwhisper.paramfile import load_params
from svwhisper.params import Paths, TrainParams
from svwhisper.trainer import build_model, training_args


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="timed training steps (after one warm-up step)")
    parser.add_argument("--dev-clips", type=int, default=64, help="dev clips decoded for the evaluation's timing")
    parser.add_argument("--ops", action="store_true", help="torch.profiler's top operators over two steps")
    return parser.parse_args()


def optimizer_for(model, params: TrainParams) -> torch.optim.Optimizer:
    """The optimizer the train stage's Trainer builds (its class and kwargs from the stage's training arguments:
    fused AdamW on this torch), with its groups: no weight decay on biases and layer norms."""
    with tempfile.TemporaryDirectory() as scratch:
        args = training_args(params, Path(scratch), "fp32")
    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    decay, no_decay = [], []
    for name, weight in model.named_parameters():
        if weight.requires_grad:
            (no_decay if name.endswith("bias") or "layer_norm" in name else decay).append(weight)
    groups = [{"params": decay, "weight_decay": params.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return optimizer_cls(groups, **kwargs)


def timed_steps(model, optimizer, batches, collate) -> dict[str, float]:
    """Seconds spent in each phase over `batches` (lists of dataset items)."""
    totals = dict.fromkeys(("data", "forward", "backward", "optimizer"), 0.0)
    for items in batches:
        start = time.perf_counter()
        batch = collate(items)
        loaded = time.perf_counter()
        loss = model(**batch).loss
        forwarded = time.perf_counter()
        loss.backward()
        backwarded = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = time.perf_counter()
        for key, seconds in zip(
            totals, (loaded - start, forwarded - loaded, backwarded - forwarded, done - backwarded), strict=True
        ):
            totals[key] += seconds
    return totals


def dev_eval_s(model, dev, collate, clips: int, params: TrainParams) -> float:
    """Seconds for the Trainer's evaluation of `clips` dev clips: loss and greedy generation, batch by batch."""
    model.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, clips, params.eval_batch_size):
            batch = collate([dev[i] for i in range(first, min(clips, first + params.eval_batch_size))])
            model(**batch)
            model.generate(batch["input_features"], max_length=params.generation_max_length)
    model.train()
    return time.perf_counter() - start


def top_ops(model, optimizer, batches, collate) -> list[dict]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        timed_steps(model, optimizer, batches, collate)
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3)} for e in events[:10]]


def main() -> None:
    args = parse_args()
    paths, params = load_params(Paths, "paths"), load_params(TrainParams, "train")
    base, features = Path(paths.base_model), Path(paths.features)
    torch.manual_seed(params.seed)
    processor = WhisperProcessor.from_pretrained(base)
    model = build_model(params, base, processor.tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    model.train()
    train, dev = FeatureSplit(features / "train"), FeatureSplit(features / "dev")
    collate = SpeechCollator(processor.feature_extractor.nb_max_frames, model.config.decoder_start_token_id)
    order = torch.randperm(len(train)).tolist()
    size = params.batch_size
    batches = [[train[i] for i in order[k * size : (k + 1) * size]] for k in range(args.steps + 3)]
    optimizer = optimizer_for(model, params)
    timed_steps(model, optimizer, batches[:1], collate)  # warm-up: one-off allocations
    phases = timed_steps(model, optimizer, batches[1 : args.steps + 1], collate)
    per_step = {key: seconds / args.steps for key, seconds in phases.items()}
    clips = min(args.dev_clips, len(dev))
    eval_s = dev_eval_s(model, dev, collate, clips, params) * len(dev) / clips
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), Path(tmp) / "optimizer.pt")
        save_s = time.perf_counter() - start
    evals = params.max_steps // params.eval_steps
    run = {f"{key}_s": round(seconds * params.max_steps, 1) for key, seconds in per_step.items()}
    run |= {
        "dev_evals_s": round(eval_s * evals, 1),
        "saves_s": round(save_s * (params.max_steps // params.save_steps), 1),
    }
    whole = sum(run.values())
    result = {
        "batch_size": size,
        "max_steps": params.max_steps,
        "step_s": round(sum(per_step.values()), 3),
        "per_step_s": {key: round(seconds, 3) for key, seconds in per_step.items()},
        "dev_eval_s": round(eval_s, 1),
        "dev_clips": len(dev),
        "dev_evals": evals,
        "save_s": round(save_s, 1),
        "projected_run_s": run,
        "projected_share": {key: round(seconds / whole, 3) for key, seconds in run.items()},
        "trainable_parameters_m": round(sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6, 2),
        "threads": torch.get_num_threads(),
    }
    if args.ops:
        result["top_ops"] = top_ops(model, optimizer, batches[args.steps + 1 :], collate)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
