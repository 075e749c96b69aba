"""train: fine-tune the base model with Seq2SeqTrainer; the best checkpoint by dev WER is the final model.

Checkpoints go to `<checkpoints>/<fingerprint of params, inputs, code and libraries>/` every `save_steps`;
a rerun after a kill resumes from the newest complete one of the same fingerprint, here or, when this
machine has none as new, on the remote (svwhisper.checkpoints, svwhisper.remote).

    python -m stages.train --base-model models/base --features data/features \
        --checkpoints checkpoints --dvclive dvclive --out models/final
"""

import argparse
import os
import re
import resource
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from dvclive import Live
from transformers import (
    SchedulerType,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    WhisperConfig,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    set_seed,
)
from transformers.integrations import DVCLiveCallback

from svwhisper.checkpoints import MarkComplete, resumable, run_fingerprint, start_or_resume
from svwhisper.data import FeatureSplit, SpeechCollator
from svwhisper.files import atomic_dir
from svwhisper.metrics import error_rates
from svwhisper.params import (
    PARAMS_FILE,
    ParamsError,
    ParamsRangeError,
    at_least,
    check_generation_fits,
    load_params,
    one_of,
    within,
)
from svwhisper.remote import CheckpointMirror, RemoteParams, fetch_run_from_remote
from svwhisper.training import (
    add_lora,
    freeze_encoder,
    is_out_of_memory,
    merge_lora,
    oom_advice,
    resolve_precision,
    trainable_fraction,
)

# the launchers the train stage's command may start with, options only: no shell syntax reaches dvc.yaml's cmd
LAUNCHER = re.compile(r"(python3?|torchrun|accelerate launch)( --[a-z][a-z0-9_-]*([= ][A-Za-z0-9_.:/-]+)?)*")


@dataclass(frozen=True)
class TrainParams:
    learning_rate: float = 1e-5
    lr_scheduler: str = "linear"
    warmup_steps: int = 500
    max_steps: int = 4000
    batch_size: int = 16
    weight_decay: float = 0.0
    dropout: float = 0.0
    spec_augment: bool = False
    mask_time_prob: float = 0.05
    mask_feature_prob: float = 0.0
    eval_steps: int = 1000
    save_steps: int = 1000
    logging_steps: int = 25
    generation_max_length: int = 225
    eval_batch_size: int = 16
    ctc_weight: float = 0.0
    precision: str = "auto"
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    eval_max_samples: int = 0
    freeze_encoder: bool = False
    lora_rank: int = 0
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")
    launcher: str = "python"
    seed: int = 42

    def check(self) -> None:
        if not self.learning_rate > 0:
            raise ParamsRangeError("learning_rate", f"must be > 0, got {self.learning_rate}")
        within(self, 0.0, 1.0, "ctc_weight", "dropout", "lora_dropout", high_open=True)
        within(self, 0.0, 1.0, "mask_time_prob", "mask_feature_prob")
        at_least(self, 1, "max_steps", "batch_size", "eval_steps", "save_steps", "logging_steps")
        at_least(self, 1, "gradient_accumulation_steps", "eval_batch_size", "generation_max_length")
        at_least(self, 0, "warmup_steps", "weight_decay", "eval_max_samples", "lora_rank", "seed")
        if not self.lora_alpha > 0:
            raise ParamsRangeError("lora_alpha", f"must be > 0, got {self.lora_alpha}")
        one_of(self, "precision", ("auto", "fp32", "fp16", "bf16"))
        one_of(self, "lr_scheduler", [s.value for s in SchedulerType])
        if not LAUNCHER.fullmatch(self.launcher):
            raise ParamsRangeError(
                "launcher",
                f"must be python, torchrun or accelerate launch followed by --options only (it becomes part of a "
                f"shell command), got {self.launcher!r}",
            )
        if self.lora_rank and (self.freeze_encoder or self.ctc_weight):
            # LoRA already freezes every base weight; these flags belong to full fine-tuning
            raise ValueError("lora_rank > 0 trains adapters only: set freeze_encoder: false and ctc_weight: 0")
        if self.freeze_encoder and self.ctc_weight:
            raise ValueError("ctc_weight > 0 trains the encoder through a CTC head: it needs freeze_encoder: false")
        if self.save_steps % self.eval_steps:
            # the best checkpoint by WER can only be one that was evaluated
            raise ValueError(f"save_steps ({self.save_steps}) must be a multiple of eval_steps ({self.eval_steps})")


def ctc_targets(labels: torch.Tensor, first_special_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded label rows -> (concatenated text-token targets, length per row) for torch's CTC loss.

    Special tokens (ids >= first_special_id: prefix, timestamps, end of text) and -100 padding
    are not spoken, so they are not CTC targets.
    """
    spoken = (labels >= 0) & (labels < first_special_id)
    return labels[spoken], spoken.sum(dim=1)


def ctc_loss(head: torch.nn.Module, encoder_out: torch.Tensor, labels: torch.Tensor, blank_id: int) -> torch.Tensor:
    """CTC loss of `head` over the encoder output (batch, frames, d_model) against the spoken label tokens."""
    log_probs = head(encoder_out).log_softmax(-1).transpose(0, 1)
    targets, target_lengths = ctc_targets(labels, blank_id)
    input_lengths = torch.full((labels.shape[0],), log_probs.shape[0], dtype=torch.long)
    return torch.nn.functional.ctc_loss(
        log_probs, targets, input_lengths, target_lengths, blank=blank_id, zero_infinity=True
    )


class JointCTCTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer plus an auxiliary CTC loss on the encoder output, in training only.

    loss = (1 - ctc_weight) * decoder cross-entropy + ctc_weight * CTC(encoder). The CTC head is
    `model.ctc_head`, removed before the final save, so the served model is a plain Whisper.
    Joint CTC-attention training makes a from-scratch encoder learn alignment much sooner
    (Kim, Hori & Watanabe, 2017); for fine-tuning a pretrained Whisper it stays off (0).
    """

    def __init__(self, *args, ctc_weight: float, blank_id: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.ctc_weight = ctc_weight
        self.blank_id = blank_id  # <|endoftext|>: the first special id, never a spoken target

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        if model.training and self.ctc_weight > 0:
            head = self.accelerator.unwrap_model(model).ctc_head  # under DDP, `model` is the wrapper
            ctc = ctc_loss(head, outputs.encoder_last_hidden_state, labels, self.blank_id)
            loss = (1 - self.ctc_weight) * loss + self.ctc_weight * ctc
        return (loss, outputs) if return_outputs else loss


class TrainStepDVCLive(DVCLiveCallback):
    """DVCLiveCallback whose `step` is the training step (transformers' own counts log calls)."""

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if self.live is not None:  # None outside the main process
            self.live.step = state.global_step
        super().on_log(args, state, control, model=model, logs=logs, **kwargs)


def wer_metric(processor: WhisperProcessor):
    """compute_metrics for the Trainer: normalised WER and CER of generated vs reference text."""
    pad_id = processor.tokenizer.pad_token_id

    def compute(pred) -> dict[str, float]:
        labels = np.where(pred.label_ids == -100, pad_id, pred.label_ids)
        predictions = np.where(pred.predictions == -100, pad_id, pred.predictions)
        hypotheses = processor.batch_decode(predictions, skip_special_tokens=True)
        references = processor.batch_decode(labels, skip_special_tokens=True)
        return error_rates(references, hypotheses)

    return compute


def training_args(params: TrainParams, checkpoints: Path, precision: str) -> Seq2SeqTrainingArguments:
    return Seq2SeqTrainingArguments(
        output_dir=str(checkpoints),
        learning_rate=params.learning_rate,
        lr_scheduler_type=params.lr_scheduler,
        warmup_steps=params.warmup_steps,
        max_steps=params.max_steps,
        per_device_train_batch_size=params.batch_size,
        gradient_accumulation_steps=params.gradient_accumulation_steps,
        activation_checkpointing=params.gradient_checkpointing,  # transformers 5 name of gradient checkpointing
        use_cpu=not torch.cuda.is_available(),  # also what lets torchrun run several CPU processes (gloo)
        # every weight gets a gradient each step; the CTC head is used outside forward(), which DDP's
        # unused-parameter search would count twice
        ddp_find_unused_parameters=False,
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        per_device_eval_batch_size=params.eval_batch_size,
        weight_decay=params.weight_decay,
        eval_strategy="steps",
        eval_steps=params.eval_steps,
        save_strategy="steps",
        save_steps=params.save_steps,
        save_total_limit=2,  # the best and the newest
        logging_steps=params.logging_steps,
        load_best_model_at_end=True,
        metric_for_best_model="wer",
        greater_is_better=False,
        predict_with_generate=True,
        generation_max_length=params.generation_max_length,
        seed=params.seed,
        data_seed=params.seed,
        report_to=[],  # dvclive is added as a callback, with the paths dvc.yaml declares
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def build_model(params: TrainParams, base_model: Path, blank_id: int):
    """The model to train: the base Whisper with dropout/SpecAugment set, then the CTC head, a frozen
    encoder or LoRA adapters as the params say. Prints how many weights train."""
    model = WhisperForConditionalGeneration.from_pretrained(base_model, dropout=params.dropout)
    model.config.apply_spec_augment = params.spec_augment
    model.config.mask_time_prob = params.mask_time_prob
    model.config.mask_feature_prob = params.mask_feature_prob
    if params.ctc_weight > 0:
        # spoken tokens and one blank (eot's id) only: timestamps and language tokens never occur
        model.ctc_head = torch.nn.Linear(model.config.d_model, blank_id + 1)
    if params.freeze_encoder:
        freeze_encoder(model)
    if params.lora_rank:
        model = add_lora(model, params.lora_rank, params.lora_alpha, params.lora_dropout, params.lora_targets)
        if params.gradient_checkpointing:
            model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    trainable, total = trainable_fraction(model)
    print(f"train: {trainable / 1e6:.2f} M of {total / 1e6:.2f} M parameters train")
    return model


def train_or_explain_oom(trainer: Seq2SeqTrainer, params: TrainParams, resume_from: Path | None) -> None:
    """trainer.train(), with an out-of-memory error turned into the knobs to turn (checkpoints stay for resume)."""
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        advice = oom_advice(params.batch_size, params.gradient_accumulation_steps, params.gradient_checkpointing)
        raise SystemExit(f"{advice}\n({type(err).__name__}: {str(err).splitlines()[0]})") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--checkpoints", type=Path, required=True, help="checkpoint root, one dir per run")
    parser.add_argument("--dvclive", type=Path, required=True, help="dvclive directory")
    parser.add_argument("--out", type=Path, required=True, help="final model dir")
    args = parser.parse_args()
    params = load_params(TrainParams, "train")
    try:
        precision = resolve_precision(params.precision)
    except ValueError as err:
        raise SystemExit(f"params.yaml: {err}") from None
    set_seed(params.seed)  # before anything draws random numbers (the CTC head's init): reruns are repeatable
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun/accelerate, one process logs and saves

    positions = WhisperConfig.from_pretrained(args.base_model).max_target_positions
    try:  # generation_max_length counts the prompt: it must fit the decoder, or the first evaluation fails
        check_generation_fits(PARAMS_FILE, "train", "generation_max_length", params.generation_max_length, 0, positions)
    except ParamsError as err:
        raise SystemExit(f"train: {err}") from None
    processor = WhisperProcessor.from_pretrained(args.base_model)
    eot = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model = build_model(params, args.base_model, eot)
    digest = run_fingerprint(params, [args.base_model, args.features])
    run_dir = args.checkpoints / digest
    remote = load_params(RemoteParams, "remote")
    resume_from = None
    if main_process:
        if remote.push_checkpoints:  # a run preempted on another machine goes on from its newest pushed checkpoint
            fetch_run_from_remote(Path.cwd(), remote, run_dir, digest)
        resume_from = start_or_resume(run_dir, args.dvclive)
    mirror = CheckpointMirror(Path.cwd(), remote, run_dir, digest) if main_process and remote.push_checkpoints else None
    live = None
    if main_process:
        live = Live(
            dir=str(args.dvclive), dvcyaml=None, save_dvc_exp=False, report=None, resume=resume_from is not None
        )
    dev = FeatureSplit(args.features / "dev")
    if params.eval_max_samples and params.eval_max_samples < len(dev):
        dev = torch.utils.data.Subset(dev, range(params.eval_max_samples))  # the same clips at every eval
    trainer = JointCTCTrainer(
        model=model,
        args=training_args(params, run_dir, precision),
        train_dataset=FeatureSplit(args.features / "train"),
        eval_dataset=dev,
        data_collator=SpeechCollator(processor.feature_extractor.nb_max_frames, model.config.decoder_start_token_id),
        processing_class=processor,
        compute_metrics=wer_metric(processor),
        callbacks=[TrainStepDVCLive(live=live, log_model=None), MarkComplete(args.dvclive), *filter(None, [mirror])],
        ctc_weight=params.ctc_weight,
        blank_id=eot,
    )
    trainer.accelerator.wait_for_everyone()  # the other ranks look for a checkpoint once rank 0 has fetched/cleaned
    if not main_process:
        resume_from = resumable(run_dir)[0]
    try:
        train_or_explain_oom(trainer, params, resume_from)
        if trainer.is_world_process_zero():
            save_final(trainer, processor, args.out)  # before the mirror's last upload is waited for
    finally:
        if mirror is not None:
            mirror.close(remote.close_timeout_s)  # the newest checkpoint reaches the remote even after an error
    if live is not None:
        live.end()
    if trainer.is_world_process_zero():
        kept = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file()) / 1e6
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(f"train: peak RSS {peak_mb:.0f} MB; checkpoints kept in {run_dir}: {kept:.0f} MB")


def save_final(trainer: Seq2SeqTrainer, processor: WhisperProcessor, out: Path) -> None:
    """The best checkpoint's weights (load_best_model_at_end put them back) as a plain Whisper in `out`, whole or
    not at all: written to a temp dir beside it, then renamed."""
    print(f"train: best dev WER {trainer.state.best_metric:.4f} at {trainer.state.best_model_checkpoint}")
    final = merge_lora(trainer.model)  # a plain Whisper: serving needs no peft
    if hasattr(final, "ctc_head"):
        del final.ctc_head  # a training aid only
    final.config.apply_spec_augment = False  # a served model never masks its input
    final.config.use_cache = True
    with atomic_dir(out) as tmp:
        final.save_pretrained(tmp)
        processor.save_pretrained(tmp)


if __name__ == "__main__":
    main()
