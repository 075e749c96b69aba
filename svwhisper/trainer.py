"""Fine-tuning Whisper with the Trainer: the model to train (all weights, a frozen encoder or LoRA), the precision the
hardware allows, the joint CTC loss, the Trainer's arguments, the dev-WER metric, dvclive logging by step, advice on
out-of-memory, and the final save. The train stage (stages/train.py) wires these together.
"""

from pathlib import Path

import numpy as np
import torch
from transformers import (
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)
from transformers.integrations import DVCLiveCallback

from svwhisper.atomic import atomic_dir
from svwhisper.metrics import error_rates
from svwhisper.paramfile import ParamsError, key_where
from svwhisper.params import TrainParams


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX: oneDNN's own check); emulated bf16 is slower
    than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(
    precision: str, cuda: bool | None = None, bf16_ok: bool | None = None, cpu_bf16: bool | None = None
) -> str:
    """ "auto" -> bf16 on a GPU that has it, else fp16 on a GPU, fp32 on a CPU; an explicit choice is checked.

    bf16 on a CPU (autocast) is allowed where the CPU has native bfloat16 (`cpu_has_bf16`); "auto" does not pick it
    there, as nothing here has measured it. Raises ValueError at start for a choice the hardware cannot run (fp16 on
    a CPU), not an hour later.
    """
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if bf16_ok is None:
        bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return ("bf16" if bf16_ok else "fp16") if cuda else "fp32"
    if precision == "bf16" and not cuda:
        if cpu_has_bf16() if cpu_bf16 is None else cpu_bf16:
            return "bf16"
        raise ValueError(
            "train.precision=bf16 on a CPU needs native bfloat16 (AVX512-BF16 or AMX) and this one has none: "
            "use auto or fp32"
        )
    if precision == "fp16" and not cuda:
        raise ValueError(f"train.precision={precision} needs a CUDA GPU and this machine has none: use auto or fp32")
    if precision == "bf16" and not bf16_ok:
        raise ValueError("train.precision=bf16: this GPU has no bfloat16 support (pre-Ampere): use fp16 or auto")
    return precision


def add_lora(model: WhisperForConditionalGeneration, rank: int, alpha: int, dropout: float, targets: tuple[str, ...]):
    """Wrap `model` with trainable LoRA adapters of `rank` on the `targets` projections; the base weights freeze."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets))
    return get_peft_model(model, config)


def merge_lora(model) -> WhisperForConditionalGeneration:
    """A plain Whisper with the adapters folded into its weights (serving needs no peft), or `model` as it is."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def trainable_fraction(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def is_out_of_memory(err: BaseException) -> bool:
    """A CUDA OOM, or the CPU allocator failing, as opposed to any other RuntimeError."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    message = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def oom_advice(batch_size: int, accumulation: int, checkpointing: bool) -> str:
    """What to turn when a training step does not fit: the knobs, with values that keep the effective batch."""
    tips = []
    if batch_size > 1:
        half = max(1, batch_size // 2)
        tips.append(
            f"-S train.batch_size={half} -S train.gradient_accumulation_steps={accumulation * batch_size // half} "
            f"(same effective batch of {batch_size * accumulation})"
        )
    if not checkpointing:
        tips.append("-S train.gradient_checkpointing=true (recompute activations: about 30 % slower, far less memory)")
    tips.append("-S train.lora_rank=32 or -S train.freeze_encoder=true (fewer weights with optimizer state)")
    return "train: out of memory in a training step. Try, with dvc exp run:\n  " + "\n  ".join(tips)


def check_generation_fits(path: Path, block: str, key: str, value: int, prompt: int, max_target_positions: int) -> None:
    """A cross-block limit: `value` new tokens after a `prompt` must fit the decoder's positions (the model's
    config); ParamsError at `block.key` otherwise, before any work."""
    if value + prompt > max_target_positions:
        raise ParamsError(
            f"{key_where(path, block, key)}: {value} new tokens after a {prompt}-token prompt do not fit the "
            f"decoder's {max_target_positions} positions (max_target_positions): use at most "
            f"{max_target_positions - prompt}"
        )


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
        dataloader_num_workers=params.dataloader_workers,
        disable_tqdm=False,
    )


def freeze_lowest(model: WhisperForConditionalGeneration, layers: int) -> None:
    """Freeze the encoder's convolutional front end, its position embedding and its `layers` lowest transformer
    layers: their weights get no gradient, and the backward pass stops above them."""
    encoder = model.model.encoder
    if layers > len(encoder.layers):
        raise SystemExit(f"train.freeze_encoder_layers={layers}: the encoder has only {len(encoder.layers)} layers")
    for module in (encoder.conv1, encoder.conv2, encoder.embed_positions, *encoder.layers[:layers]):
        module.requires_grad_(False)


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
        model.freeze_encoder()  # the decoder still trains
    if params.freeze_encoder_layers:
        freeze_lowest(model, params.freeze_encoder_layers)
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


def save_final(trainer: Seq2SeqTrainer, processor: WhisperProcessor, out: Path) -> None:
    """The best checkpoint's weights (load_best_model_at_end put them back) as a plain Whisper in `out`, whole or
    not at all: written to a temp dir beside it, then renamed."""
    best = trainer.state.best_model_checkpoint
    if best and Path(best).is_dir():
        print(f"train: best dev WER {trainer.state.best_metric:.4f} at {best}")
    else:  # load_best_model_at_end could not find it (transformers only warns): say what the model really is
        print(f"train: the best checkpoint ({best}) is not on disk: {out} gets the last step's weights, not the best")
    final = merge_lora(trainer.model)  # a plain Whisper: serving needs no peft
    if hasattr(final, "ctc_head"):
        del final.ctc_head  # a training aid only
    final.config.apply_spec_augment = False  # a served model never masks its input
    final.config.use_cache = True
    with atomic_dir(out) as tmp:
        final.save_pretrained(tmp)
        processor.save_pretrained(tmp)
