"""The one Swedish text normaliser, used by evaluation, training metrics, tests and the app."""

import re
import unicodedata

from svwhisper.params import TextParams

# Keep letters (å ä ö é and every other letter), digits and spaces; everything else is
# punctuation or symbols and becomes a space, so "hej,då" does not merge into one word.
_NOT_WORD = re.compile(r"[^\w\s]|_")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Lower-case, NFC, punctuation to spaces, whitespace collapsed: 'Jaså, står det?' -> 'jaså står det'."""
    text = unicodedata.normalize("NFC", text).lower()
    text = _NOT_WORD.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def label_text(sentence: str, params: TextParams) -> str:
    """The text the model learns to write for `sentence`."""
    return normalize(sentence) if params.normalize_labels else sentence
