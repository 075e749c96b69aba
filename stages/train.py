"""train: fine-tune the base model with Seq2SeqTrainer; the best checkpoint by dev WER is the final model.

Checkpoints go to `<checkpoints>/<fingerprint of params and inputs>/` every `save_steps`; a rerun
after a kill resumes from the newest complete one of the same fingerprint (svwhisper.checkpoints).

    python -m stages.train --base-model models/base --features data/features \
        --checkpoints checkpoints --log dvclive --out models/final
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from dvclive import Live
from transformers import (
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    set_seed,
)
from transformers.integrations import DVCLiveCallback

from svwhisper.checkpoints import MarkComplete, fingerprint, start_or_resume
from svwhisper.data import FeatureSplit, SpeechCollator
from svwhisper.metrics import error_rates
from svwhisper.params import load_params


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
    seed: int = 42

    def check(self) -> None:
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be > 0")
        if not 0.0 <= self.ctc_weight < 1.0:
            raise ValueError("ctc_weight must be in [0, 1)")
        if min(self.max_steps, self.batch_size, self.eval_steps, self.save_steps, self.logging_steps) < 1:
            raise ValueError("max_steps, batch_size, eval_steps, save_steps and logging_steps must be >= 1")
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
            log_probs = model.ctc_head(outputs.encoder_last_hidden_state).log_softmax(-1).transpose(0, 1)
            targets, target_lengths = ctc_targets(labels, self.blank_id)
            input_lengths = torch.full((labels.shape[0],), log_probs.shape[0], dtype=torch.long)
            ctc = torch.nn.functional.ctc_loss(
                log_probs, targets, input_lengths, target_lengths, blank=self.blank_id, zero_infinity=True
            )
            loss = (1 - self.ctc_weight) * loss + self.ctc_weight * ctc
        return (loss, outputs) if return_outputs else loss


class TrainStepDVCLive(DVCLiveCallback):
    """DVCLiveCallback whose `step` is the training step (transformers' own counts log calls)."""

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
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


def training_args(params: TrainParams, checkpoints: Path) -> Seq2SeqTrainingArguments:
    return Seq2SeqTrainingArguments(
        output_dir=str(checkpoints),
        learning_rate=params.learning_rate,
        lr_scheduler_type=params.lr_scheduler,
        warmup_steps=params.warmup_steps,
        max_steps=params.max_steps,
        per_device_train_batch_size=params.batch_size,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument(
        "--checkpoints", type=Path, required=True, help="Trainer checkpoints, one dir per run (not a DVC out)"
    )
    parser.add_argument("--log", type=Path, required=True, help="dvclive directory")
    parser.add_argument("--out", type=Path, required=True, help="final model dir")
    args = parser.parse_args()
    params = load_params(TrainParams, "train")
    set_seed(params.seed)  # before anything draws random numbers (the CTC head's init): reruns are repeatable

    model = WhisperForConditionalGeneration.from_pretrained(args.base_model, dropout=params.dropout)
    model.config.apply_spec_augment = params.spec_augment
    model.config.mask_time_prob = params.mask_time_prob
    model.config.mask_feature_prob = params.mask_feature_prob
    processor = WhisperProcessor.from_pretrained(args.base_model)
    collator = SpeechCollator(
        n_frames=processor.feature_extractor.nb_max_frames,
        decoder_start_token_id=model.config.decoder_start_token_id,
    )
    run_dir = args.checkpoints / fingerprint(params, [args.base_model, args.features])
    resume_from = start_or_resume(run_dir, args.log)
    eot = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if params.ctc_weight > 0:
        # spoken tokens and one blank (eot's id) only: timestamps and language tokens never occur
        model.ctc_head = torch.nn.Linear(model.config.d_model, eot + 1)
    live = Live(dir=str(args.log), dvcyaml=None, save_dvc_exp=False, report=None, resume=resume_from is not None)
    trainer = JointCTCTrainer(
        model=model,
        args=training_args(params, run_dir),
        train_dataset=FeatureSplit(args.features / "train"),
        eval_dataset=FeatureSplit(args.features / "dev"),
        data_collator=collator,
        processing_class=processor,
        compute_metrics=wer_metric(processor),
        callbacks=[TrainStepDVCLive(live=live, log_model=None), MarkComplete(args.log)],
        ctc_weight=params.ctc_weight,
        blank_id=eot,
    )
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    best = trainer.state.best_metric
    print(f"train: best dev WER {best:.4f} at {trainer.state.best_model_checkpoint}")
    # load_best_model_at_end put the best weights back into trainer.model
    if hasattr(model, "ctc_head"):
        del model.ctc_head  # a training aid only: the saved model is a plain Whisper
    model.config.apply_spec_augment = False  # a served model never masks its input
    trainer.save_model(str(args.out))
    processor.save_pretrained(args.out)
    live.end()


if __name__ == "__main__":
    main()
