"""Long recordings: cut into chunks that fit the model window, at silences where possible, and stitch back.

A cut at a silence loses nothing, so such chunks do not overlap. Where speech runs longer than
the window with no pause, the cut is hard and the next chunk starts `overlap_s` earlier; the
words both chunks heard are then removed once from the second (`stitch`).
"""

import json
from dataclasses import dataclass

import numpy as np

from svwhisper.audio import SAMPLE_RATE

FRAME_S = 0.02  # energy frame, seconds
SILENCE_DB = -40.0  # a frame this far below the recording's loudest frame counts as silence
FLOOR_DBFS = -60.0  # and so does any frame quieter than this, however quiet the whole recording is
MIN_SILENCE_S = 0.25  # pauses shorter than this are not cut points
MIN_CHUNK_S = 1.0  # a silence this close to the chunk start is not used as its end
MARGIN_S = 0.2  # audio kept before and after the speech of a chunk (within its cut points)
FRAMES_PER_BLOCK = 1500  # energy frames computed at a time (30 s of audio)


@dataclass(frozen=True)
class Chunk:
    start: int  # first sample fed to the model (a cut point: the middle of a pause, or a hard cut)
    end: int  # one past the last sample fed
    speech_start: int  # first sample of speech in it: where its segment's timestamp starts
    speech_end: int  # one past the last sample of speech
    overlap_before: bool  # True when it starts inside the previous chunk (a hard cut)

    @property
    def start_s(self) -> float:
        return self.speech_start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.speech_end / SAMPLE_RATE


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    text: str
    words: tuple = ()  # svwhisper.decoding.Word, when word timestamps were asked for


def frame_is_speech(samples: np.ndarray) -> np.ndarray:
    """One bool per FRAME_S frame: louder than SILENCE_DB below the loudest frame, and than FLOOR_DBFS.

    Computed in float32 a block of frames at a time: the extra memory is one block, not a copy of the recording.
    """
    hop = int(FRAME_S * SAMPLE_RATE)
    n = max(1, len(samples) // hop)
    rms = np.empty(n, dtype=np.float32)
    if len(samples) < hop:
        rms[0] = np.sqrt(np.mean(np.square(samples, dtype=np.float32), dtype=np.float64))
    for first in range(0, n if len(samples) >= hop else 0, FRAMES_PER_BLOCK):
        last = min(n, first + FRAMES_PER_BLOCK)
        frames = samples[first * hop : last * hop].reshape(last - first, hop)
        rms[first:last] = np.sqrt(np.mean(np.square(frames, dtype=np.float32), axis=1, dtype=np.float32))
    rms += 1e-10
    return (20 * np.log10(rms / rms.max()) > SILENCE_DB) & (20 * np.log10(rms) > FLOOR_DBFS)


def silences(speech: np.ndarray) -> list[tuple[int, int]]:
    """(first, last + 1) frame of each run of non-speech frames at least MIN_SILENCE_S long."""
    runs, start = [], None
    for i, is_speech in enumerate([*speech, True]):
        if not is_speech and start is None:
            start = i
        elif is_speech and start is not None:
            if (i - start) * FRAME_S >= MIN_SILENCE_S:
                runs.append((start, i))
            start = None
    return runs


def speech_chunks(samples: np.ndarray, window_s: float, overlap_s: float) -> list[Chunk]:
    """Chunks of at most `window_s` covering the speech in `samples`, cut in the middle of pauses.

    The model hears each chunk from cut to cut, pauses included, as it heard its training clips;
    the segment's timestamps are where the speech in it starts and ends. A chunk that is all
    silence is dropped.
    """
    hop = int(FRAME_S * SAMPLE_RATE)
    speech = frame_is_speech(samples)
    if not speech.any():
        return []
    pauses = silences(speech)
    window, overlap = int(window_s / FRAME_S), int(overlap_s / FRAME_S)
    chunks, start, overlapped = [], 0, False
    n = len(speech)
    while start < n:
        limit = start + window
        if limit >= n:
            end, next_start, hard = n, n, False
        else:
            inside = [(a, b) for a, b in pauses if start + MIN_CHUNK_S / FRAME_S <= (a + b) // 2 <= limit]
            if inside:
                a, b = inside[0]  # the first pause: one phrase per chunk, and per subtitle cue
                end, next_start, hard = (a + b) // 2, (a + b) // 2, False
            else:
                end, next_start, hard = limit, limit - overlap, True
        first, last = _speech_span(speech, start, end)
        if first is not None:
            margin = int(MARGIN_S / FRAME_S)
            feed_start, feed_end = max(start, first - margin), min(end, last + margin)
            chunks.append(
                Chunk(feed_start * hop, min(len(samples), feed_end * hop), first * hop, last * hop, overlapped)
            )
        start, overlapped = next_start, hard
    return chunks


def _speech_span(speech: np.ndarray, start: int, end: int) -> tuple[int | None, int]:
    """(first speech frame, last speech frame + 1) within [start, end); (None, 0) when there is none."""
    found = np.flatnonzero(speech[start:end])
    if not len(found):
        return None, 0
    return start + found[0], start + found[-1] + 1


def stitch(previous: str, text: str, max_words: int = 12) -> str:
    """`text` without the words at its start that `previous` ends with (heard twice across an overlap)."""
    before, after = previous.split(), text.split()
    for size in range(min(max_words, len(before), len(after)), 0, -1):
        if [w.lower() for w in before[-size:]] == [w.lower() for w in after[:size]]:
            return " ".join(after[size:])
    return text


def segments_of(chunks: list[Chunk], texts: list[str], words: list[list] | None = None) -> list[Segment]:
    """One timed segment per chunk with text, overlapping words removed, empty ones dropped.

    With `words` (each chunk's timed words), a segment spans its first word's start to its last word's end.
    """
    out, previous = [], ""
    for i, (chunk, text) in enumerate(zip(chunks, texts, strict=True)):
        timed = list(words[i]) if words is not None else []
        if chunk.overlap_before:
            stitched = stitch(previous, text)
            timed = timed[max(0, len(text.split()) - len(stitched.split())) :]
            text = stitched
        previous = text if text else previous
        if not text:
            continue
        start, end = (timed[0].start_s, timed[-1].end_s) if timed else (round(chunk.start_s, 2), round(chunk.end_s, 2))
        out.append(Segment(start, max(end, start), text, tuple(timed)))
    return out


def _clock(seconds: float, separator: str) -> str:
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def cues_of(segments: list[Segment], words_per_cue: int = 0) -> list[Segment]:
    """Subtitle cues: one per segment, or with `words_per_cue` > 0 lines of at most that many words, each timed
    from its first word's start to its last word's end (segments without word times stay whole)."""
    if words_per_cue <= 0:
        return segments
    cues = []
    for segment in segments:
        if not segment.words:
            cues.append(segment)
            continue
        for i in range(0, len(segment.words), words_per_cue):
            line = segment.words[i : i + words_per_cue]
            cues.append(Segment(line[0].start_s, line[-1].end_s, " ".join(w.text for w in line), tuple(line)))
    return cues


def to_srt(segments: list[Segment], words_per_cue: int = 0) -> str:
    """SubRip: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm` (see cues_of)."""
    cues = cues_of(segments, words_per_cue)
    return "\n".join(
        f"{i}\n{_clock(s.start_s, ',')} --> {_clock(s.end_s, ',')}\n{s.text}\n" for i, s in enumerate(cues, 1)
    )


def to_vtt(segments: list[Segment], words_per_cue: int = 0) -> str:
    """WebVTT: a `WEBVTT` header, then cues with `HH:MM:SS.mmm --> HH:MM:SS.mmm` (see cues_of)."""
    cues = cues_of(segments, words_per_cue)
    return "WEBVTT\n\n" + "\n".join(f"{_clock(s.start_s, '.')} --> {_clock(s.end_s, '.')}\n{s.text}\n" for s in cues)


def to_json(segments: list[Segment]) -> str:
    """Segments with their words and times, as JSON: {"text", "segments": [{start, end, text, words: [...]}]}."""
    data = {
        "text": " ".join(s.text for s in segments),
        "segments": [
            {
                "start": s.start_s,
                "end": s.end_s,
                "text": s.text,
                "words": [{"start": w.start_s, "end": w.end_s, "word": w.text} for w in s.words],
            }
            for s in segments
        ],
    }
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
