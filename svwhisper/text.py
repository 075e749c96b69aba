"""The one Swedish text normaliser, used by evaluation, training metrics, tests and the app; and the label text."""

import re
import unicodedata

from svwhisper.params import TextParams

# Keep letters (å ä ö é and every other letter), digits and spaces; everything else is
# punctuation or symbols and becomes a space, so "hej,då" does not merge into one word.
_NOT_WORD = re.compile(r"[^\w\s]|_")
_SPACES = re.compile(r"\s+")
NO_SPEECH_TOKENS = ("<|nospeech|>", "<|nocaptions|>")  # the no-speech token, by vocabulary (newest name first)


def normalize(text: str) -> str:
    """Lower-case, NFC, punctuation to spaces, whitespace collapsed: 'Jaså, står det?' -> 'jaså står det'."""
    text = unicodedata.normalize("NFC", text).lower()
    text = _NOT_WORD.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def label_text(sentence: str, params: TextParams) -> str:
    """The text the model learns to write for `sentence`."""
    return normalize(sentence) if params.normalize_labels else sentence


def no_speech_token(tokenizer) -> int:
    """The id of Whisper's no-speech token in `tokenizer`: `<|nospeech|>`, or `<|nocaptions|>` in the multilingual
    vocabularies before large-v3. ValueError when it has neither (not a Whisper vocabulary)."""
    unknown = {tokenizer.unk_token_id, tokenizer.convert_tokens_to_ids("<|endoftext|>"), None}
    for token in NO_SPEECH_TOKENS:
        found = tokenizer.convert_tokens_to_ids(token)
        if found not in unknown:
            return int(found)
    raise ValueError(
        f"the tokenizer has no no-speech token ({' or '.join(NO_SPEECH_TOKENS)}): not a Whisper vocabulary?"
    )
