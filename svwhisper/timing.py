"""Word timestamps: where each word of a decoded chunk starts and ends in the audio.

The cross-attention of the alignment heads (the generation config's `alignment_heads`) over the tokens a chunk
decoded is normalised per head, median-filtered, averaged, and aligned to the audio frames by dynamic time
warping, as in openai/whisper's `timing.find_alignment`; the path's jumps from token to token are the times.
"""

from dataclasses import dataclass

import numpy as np

SECONDS_PER_POSITION = 0.02  # one encoder position: two 10 ms log-mel frames


@dataclass(frozen=True)
class Word:
    start_s: float
    end_s: float
    text: str


def token_pieces(decode, tokens: list[int]) -> list[str]:
    """Each token's share of the decoded text; a character split over several byte tokens (å, ä, ö can be) goes
    to the first of them, the others get "" (as openai/whisper's split_tokens_on_unicode)."""
    pieces, group = [], []
    for token in tokens:
        group.append(token)
        text = decode(group)
        if "\ufffd" not in text:
            pieces += [text] + [""] * (len(group) - 1)
            group = []
    if group:
        pieces += [decode(group)] + [""] * (len(group) - 1)
    return pieces


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a window of `width` along the last axis (reflected at the edges), as openai/whisper does."""
    if width <= 1 or x.shape[-1] <= width // 2:
        return x
    pad = width // 2
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1), axis=-1)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The monotonic path through `cost` (tokens x frames) of least total cost: (token indices, frame indices)."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)
    total[0, 0] = 0
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            steps = (total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])
            move = int(np.argmin(steps))
            total[i, j], trace[i, j] = cost[i - 1, j - 1] + steps[move], move
    i, j, path = n, m, []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        move = trace[i, j]
        i, j = (i - 1, j - 1) if move == 0 else (i - 1, j) if move == 1 else (i, j - 1)
    while i > 0:  # the first row or column reached: walk the rest of the edge
        i -= 1
        path.append((i, 0))
    path.reverse()
    tokens, frames = zip(*path, strict=True) if path else ((), ())
    return np.array(tokens), np.array(frames)


def alignment_path(attentions: np.ndarray, positions: int, filter_width: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Cross-attention of the alignment heads (heads, token rows, encoder positions) -> the DTW path over the
    first `positions` encoder positions (the audio the chunk holds)."""
    weights = attentions[:, :, :positions].astype(np.float64)
    std, mean = weights.std(axis=-2, keepdims=True), weights.mean(axis=-2, keepdims=True)
    weights = median_filter((weights - mean) / (std + 1e-10), filter_width)
    return dtw(-weights.mean(axis=0))


def word_spans(pieces: list[str]) -> list[tuple[int, int]]:
    """(first, last + 1) token of each word, given each text token's decoded text: a token starting with a space
    starts a word (Whisper's BPE marks word starts so); punctuation stays with its word."""
    spans, start = [], 0
    for i, piece in enumerate(pieces):
        if i > start and piece.startswith(" "):
            spans.append((start, i))
            start = i
    if pieces:
        spans.append((start, len(pieces)))
    return spans


def words_from_path(
    pieces: list[str], token_indices: np.ndarray, frame_indices: np.ndarray, offset_s: float
) -> list[Word]:
    """Words with start and end times from a DTW path whose token rows are [before the first text token, each
    text token]: a word starts where the path first reaches its first token and ends where the next word starts."""
    if not pieces or not len(token_indices):
        return []
    jumps = np.pad(np.diff(token_indices), (1, 0), constant_values=1).astype(bool)
    times = frame_indices[jumps] * SECONDS_PER_POSITION
    if len(times) < len(pieces) + 1:  # a path that skipped rows: pad with its last time
        times = np.pad(times, (0, len(pieces) + 1 - len(times)), mode="edge")
    words = []
    for first, last in word_spans(pieces):
        text = "".join(pieces[first:last]).strip()
        if text:
            words.append(Word(round(float(offset_s + times[first]), 2), round(float(offset_s + times[last]), 2), text))
    return words
