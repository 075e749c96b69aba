"""Batched transcription with a saved Whisper model dir (used by evaluate and the app)."""

from pathlib import Path

import numpy as np
import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor


def load_model(model_dir: Path | str) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """A save_pretrained dir -> (model in eval mode, processor)."""
    model = WhisperForConditionalGeneration.from_pretrained(model_dir)
    model.eval()
    return model, WhisperProcessor.from_pretrained(model_dir)


@torch.inference_mode()
def generate_text(
    model: WhisperForConditionalGeneration,
    processor: WhisperProcessor,
    input_features: np.ndarray,
    max_new_tokens: int,
    num_beams: int = 1,
) -> list[str]:
    """(batch, mel, frames) log-mel features -> decoded texts, in the saved language and task."""
    tokens = model.generate(
        torch.as_tensor(input_features, dtype=model.dtype),
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
    )
    return [t.strip() for t in processor.batch_decode(tokens, skip_special_tokens=True)]
