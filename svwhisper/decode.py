"""Batched transcription with a saved Whisper model dir (used by evaluate and the app)."""

from pathlib import Path

import numpy as np
import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor

PROMPT_TOKENS = 4  # <|startoftranscript|> <|sv|> <|transcribe|> <|notimestamps|>


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
        # as max_length (the 4 prompt tokens + new ones): with max_new_tokens beside the saved max_length,
        # transformers warns on every call
        max_length=max_new_tokens + PROMPT_TOKENS,
        num_beams=num_beams,
    )
    return [t.strip() for t in processor.batch_decode(tokens, skip_special_tokens=True)]
