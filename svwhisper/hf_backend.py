"""The transformers backend: a Whisper `save_pretrained` dir (the train stage's output), run with PyTorch.

`generate` runs transformers' generate, then one teacher-forced pass for the scores the safeguards need.
Sampling is the Gumbel-max trick over a generator of the call's own (argmax of logits / T plus Gumbel
noise draws from softmax(logits / T), as do_sample with top_k 0 does), so it neither reads nor reseeds
the global RNG. Word alignment needs the cross-attention weights, which sdpa does not return: an eager
twin of the model, sharing its weight tensors (no extra memory), runs that pass. Beam search keeps the
cross-attention keys and values where they are (`BeamCache`): at a 30 s window, copying them for every step was
most of its time.
"""

import copy
from pathlib import Path

import numpy as np
import torch
from transformers import GenerationMixin, LogitsProcessor, WhisperForConditionalGeneration, WhisperProcessor
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from svwhisper.backend import Backend, special_ids, text_tokens, token_cap
from svwhisper.decoding import Candidate
from svwhisper.timing import alignment_path

SAMPLING_SEED = 0  # every sampled decode starts from this: the same input gives the same transcript


def load_model(model_dir: Path | str) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """A save_pretrained dir -> (model in eval mode, processor)."""
    model = WhisperForConditionalGeneration.from_pretrained(model_dir)
    model.eval()
    return model, WhisperProcessor.from_pretrained(model_dir)


def eager_twin(model: WhisperForConditionalGeneration) -> WhisperForConditionalGeneration:
    """A second module tree over the same weight tensors, with eager attention (it returns attention weights)."""
    with torch.device("meta"):
        twin = WhisperForConditionalGeneration._from_config(copy.deepcopy(model.config), attn_implementation="eager")
    twin.load_state_dict(model.state_dict(), assign=True, strict=True)
    return twin.eval()


class GumbelSampling(LogitsProcessor):
    """Turns greedy search into sampling at `temperature`: scores / T + Gumbel noise from `generator`."""

    def __init__(self, temperature: float, generator: torch.Generator):
        self.temperature, self.generator = temperature, generator

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        uniform = torch.rand(scores.shape, generator=self.generator, dtype=torch.float32).clamp_(1e-10, 1.0)
        return scores.float() / self.temperature - torch.log(-torch.log(uniform))


class BeamCache(EncoderDecoderCache):
    """transformers' encoder-decoder cache, except that beam search's reorder leaves the cross-attention cache be.
    A beam only ever takes the place of a beam of the same input, and every beam of an input holds the same
    encoder keys and values: the reorder copied them unchanged, about 37 MB a beam a step for Whisper base at 30 s."""

    def __init__(self):
        super().__init__(DynamicCache(), DynamicCache())

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.self_attention_cache.reorder_cache(beam_idx)


class TransformersBackend(Backend):
    def __init__(self, model_dir: str | Path):
        self.model, self.processor = load_model(model_dir)
        self.aligner = eager_twin(self.model)
        self.prompt, self.eot, self.no_speech = special_ids(self.processor.tokenizer, self.model.generation_config)
        window = self.processor.feature_extractor.chunk_length
        # scoring appends the end of text to what generate returns: one decoder position stays free for it
        self.max_new_tokens = token_cap(window, self.model.config.max_target_positions, len(self.prompt) + 1)
        self.heads = getattr(self.model.generation_config, "alignment_heads", None) or []

    def encode(self, features: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.model.encoder(torch.as_tensor(features, dtype=self.model.dtype)).last_hidden_state

    def _teacher_forced(self, model, encoded, token_lists, attentions: bool = False):
        rows = [self.prompt + list(t) + [self.eot] for t in token_lists]
        width = max(map(len, rows))
        ids = torch.tensor([r + [self.eot] * (width - len(r)) for r in rows])
        with torch.inference_mode():
            return model(encoder_outputs=(encoded,), decoder_input_ids=ids, output_attentions=attentions)

    def generate(self, encoded, rows: list[int], temperature: float, beam_size: int) -> list[Candidate]:
        encoded = encoded[rows]
        sampling = []
        if temperature > 0:
            sampling = [GumbelSampling(temperature, torch.Generator().manual_seed(SAMPLING_SEED))]
        # transformers' plain seq2seq generate, not Whisper's long-form one over it: that re-enters its loop for a
        # chunk whose sample holds a timestamp token, then needs the input features we do not pass
        with torch.inference_mode():
            sequences = GenerationMixin.generate(
                self.model,
                encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
                decoder_input_ids=torch.tensor([self.prompt] * len(rows)),
                max_length=self.max_new_tokens + len(self.prompt),
                num_beams=beam_size,
                do_sample=False,
                logits_processor=sampling,
                cache=BeamCache(),
            )
        token_lists = [text_tokens(s, self.eot) for s in sequences.tolist()]
        logits = self._teacher_forced(self.model, encoded, token_lists).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        no_speech = torch.softmax(logits[:, 0], dim=-1)[:, self.no_speech]
        start = len(self.prompt) - 1  # the position that predicts the first text token
        candidates = []
        for b, tokens in enumerate(token_lists):
            targets = torch.tensor([*tokens, self.eot])
            total = logprobs[b, start : start + len(targets)].gather(1, targets[:, None]).sum().item()
            candidates.append(Candidate(tokens, total / len(targets), float(no_speech[b])))
        return candidates

    def align(self, encoded, rows: list[int], tokens: list[tuple[int, ...]], positions: list[int]):
        if not self.heads:
            return [None] * len(rows)
        attentions = self._teacher_forced(self.aligner, encoded[rows], tokens, attentions=True).cross_attentions
        heads = np.stack([attentions[layer][:, head].float().numpy() for layer, head in self.heads], axis=1)
        first = len(self.prompt) - 1
        return [
            alignment_path(heads[b, :, first : first + len(row_tokens) + 1], positions[b])
            for b, row_tokens in enumerate(tokens)
        ]
