"""Where the errors sit: WER and CER per speaker and per sentence length, and the worst clips (evaluate's report).

A corpus WER hides whether a few voices or the long sentences carry the errors. Each group's rates are corpus
rates over the group's clips (its word errors over its reference words), on normalised text as `wer` is.
"""

import pandas as pd

from svwhisper.metrics import error_rates, word_errors
from svwhisper.text import normalize

LENGTH_BINS = ((1, 3), (4, 6), (7, 9), (10, None))  # reference words (normalised), inclusive
WORST = 10
SPEAKER_CHARS = 8  # a Common Voice client_id is a 64-hex hash: its first characters name the voice in the report


def _rates(group: pd.DataFrame) -> dict:
    rates = error_rates(group["reference"].tolist(), group["hypothesis"].tolist())
    return {
        "clips": len(group),
        "words": int(group["words"].sum()),
        "errors": int(group["errors"].sum()),
        "wer": round(rates["wer"], 4),
        "cer": round(rates["cer"], 4),
    }


def length_bin(words: int) -> str:
    for low, high in LENGTH_BINS:
        if words >= low and (high is None or words <= high):
            return f"{low}-{high}" if high is not None else f"{low}+"
    return "0"


def error_analysis(clips: pd.DataFrame) -> dict:
    """Columns id, speaker, reference, hypothesis -> {by_speaker, by_length, worst}, worst groups first.

    by_speaker lists every speaker ("" = unknown) by WER; by_length the LENGTH_BINS in order; worst the
    WORST clips by WER (ties: more errors first), each with its reference and hypothesis as written.
    """
    clips = clips.assign(
        words=[len(normalize(r).split()) for r in clips["reference"]],
        errors=[word_errors(r, h) for r, h in zip(clips["reference"], clips["hypothesis"], strict=True)],
    )
    clips = clips.assign(clip_wer=clips["errors"] / clips["words"].clip(lower=1))
    by_speaker = [
        {"speaker": str(speaker)[:SPEAKER_CHARS], **_rates(group)}
        for speaker, group in clips.groupby(clips["speaker"].fillna(""), sort=True)
    ]
    by_speaker.sort(key=lambda row: (-row["wer"], row["speaker"]))
    bins = clips["words"].map(length_bin)
    order = [length_bin(low) for low, _ in LENGTH_BINS]
    by_length = [{"length": name, **_rates(clips[bins == name])} for name in order if (bins == name).any()]
    worst = clips.sort_values(["clip_wer", "errors", "id"], ascending=[False, False, True], kind="stable").head(WORST)
    return {
        "by_speaker": by_speaker,
        "by_length": by_length,
        "worst": [
            {
                "id": row.id,
                "speaker": str(row.speaker)[:SPEAKER_CHARS],
                "wer": round(float(row.clip_wer), 4),
                "errors": int(row.errors),
                "reference": row.reference,
                "hypothesis": row.hypothesis,
            }
            for row in worst.itertuples()
        ],
    }
