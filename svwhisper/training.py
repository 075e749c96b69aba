"""What the train stage decides from the hardware and its params: precision, which weights train, OOM advice."""

import torch
from transformers import WhisperForConditionalGeneration


def resolve_precision(precision: str, cuda: bool | None = None, bf16_ok: bool | None = None) -> str:
    """ "auto" -> bf16 on a GPU that has it, else fp16 on a GPU, fp32 on a CPU; an explicit choice is checked.

    Raises ValueError at start for a choice the hardware cannot run (fp16 on a CPU), not an hour later.
    """
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if bf16_ok is None:
        bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return ("bf16" if bf16_ok else "fp16") if cuda else "fp32"
    if precision in ("fp16", "bf16") and not cuda:
        raise ValueError(f"train.precision={precision} needs a CUDA GPU and this machine has none: use auto or fp32")
    if precision == "bf16" and not bf16_ok:
        raise ValueError("train.precision=bf16: this GPU has no bfloat16 support (pre-Ampere): use fp16 or auto")
    return precision


def freeze_encoder(model: WhisperForConditionalGeneration) -> int:
    """Stop gradients to the encoder (the decoder still trains). Returns the number of frozen parameters."""
    model.freeze_encoder()
    return sum(p.numel() for p in model.model.encoder.parameters())


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
