"""Word and character error rates with jiwer (offline: no `evaluate.load` hub fetch)."""

import jiwer

from svwhisper.text import normalize


def error_rates(references: list[str], hypotheses: list[str], normalized: bool = True) -> dict[str, float]:
    """Corpus WER and CER as fractions; text normalised first unless `normalized` is False.

    An empty reference (after normalising) counts every hypothesis word as an insertion.
    """
    if normalized:
        references = [normalize(r) for r in references]
        hypotheses = [normalize(h) for h in hypotheses]
    words = jiwer.process_words(references, hypotheses)
    chars = jiwer.process_characters(references, hypotheses)
    return {"wer": words.wer, "cer": chars.cer}


def word_errors(reference: str, hypothesis: str) -> int:
    """Substitutions + deletions + insertions between two normalised texts (per-utterance analysis)."""
    out = jiwer.process_words(normalize(reference), normalize(hypothesis))
    return out.substitutions + out.deletions + out.insertions
