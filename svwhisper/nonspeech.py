"""Non-speech clips, synthesised offline and seeded: what Whisper must transcribe as nothing.

Whisper was trained with audio that holds no speech, labelled `<|startoftranscript|><|nocaptions|><|endoftext|>`
(`<|nospeech|>` in newer vocabularies); that is why it puts its probability on that token for silence, noise and
music, and why every Whisper decoder can drop such a chunk (the no-speech rule). A fine-tune on speech alone
teaches the model that the language token always follows, and the safeguard is gone. The featurize stage mixes
these clips into the training split at `featurize.nonspeech.share` with that target, and writes held-out sets
for dev and test from other seeds, on which `evaluate` measures what the model does with non-speech.

Every clip comes from its own generator, seeded by (seed, split, index): the same params give the same clips on
any machine and in any process. Levels are drawn too, though Whisper's log-mel is normalised to its loudest
frame, so the shape of a sound matters more to it than its level.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.params import NONSPEECH_KINDS as KINDS
from svwhisper.text import no_speech_token

SPLIT_CODES = {"train": 0, "dev": 1, "test": 2}  # a held-out set draws from seeds the training clips never use
LEVEL_DBFS = (-55.0, -15.0)  # RMS level of a synthesised clip
MIN_S = 0.5  # shortest training clip; held-out clips fill the whole window
VOICE_DB = -35.0  # corpus silence: frames this far below a clip's loudest frame hold no voice
EDGE_MARGIN_S = 0.05  # and are taken only this far from the voice
MIN_PIECE_S = 0.04  # a shorter silent edge is not worth a crossfade
EDGE_CLIPS = 200  # the corpus kind's silent edges come from a split's first this many clips


def _noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise whose power spectrum goes as f**exponent (0 white, -1 pink, -2 brown, 1 blue)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    freqs[0] = freqs[1]
    return np.fft.irfft(spectrum * freqs ** (exponent / 2), n)


def _band(rng: np.random.Generator, n: int, low_hz: float, high_hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    return np.fft.irfft(spectrum * ((freqs >= low_hz) & (freqs <= high_hz)), n)


def _hum(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mains hum: 50 or 60 Hz and its harmonics, over a faint hiss."""
    t = np.arange(n) / SAMPLE_RATE
    f0 = rng.choice([50.0, 60.0]) + rng.uniform(-0.3, 0.3)
    harmonics = sum(
        rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k in range(1, 9)
    )
    return harmonics + 0.01 * rng.standard_normal(n)


def _tone(rng: np.random.Generator, n: int) -> np.ndarray:
    """One to three steady or sweeping sines (test tones, beeps, whistles), gated on and off at times."""
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    for _ in range(rng.integers(1, 4)):
        start, end = np.exp(rng.uniform(np.log(80), np.log(6000), 2))
        if rng.random() < 0.5:
            end = start  # steady
        phase = 2 * np.pi * np.cumsum(np.linspace(start, end, n)) / SAMPLE_RATE
        out += rng.uniform(0.3, 1.0) * np.sin(phase)
    if rng.random() < 0.3:  # beeps
        rate = rng.uniform(1, 5)
        out *= (np.sin(2 * np.pi * rate * t) > 0).astype(float)
    return out


def _clicks(rng: np.random.Generator, n: int) -> np.ndarray:
    """Clicks, ticks and knocks: short decaying bursts at 1-20 a second."""
    out = 0.005 * rng.standard_normal(n)
    count = max(1, int(rng.uniform(1, 20) * n / SAMPLE_RATE))
    for start in rng.integers(0, n, count):
        length = int(rng.uniform(0.001, 0.02) * SAMPLE_RATE)
        burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 5))
        if rng.random() < 0.3:  # a knock: a low damped resonance
            burst = np.sin(2 * np.pi * rng.uniform(80, 400) * np.arange(length) / SAMPLE_RATE) * np.exp(
                -np.arange(length) / (length / 3)
            )
        end = min(n, start + length)
        out[start:end] += rng.uniform(0.2, 1.0) * burst[: end - start]
    return out


def _chords(rng: np.random.Generator, n: int) -> np.ndarray:
    """Music-like: a sequence of chords of harmonic notes with attack and decay."""
    out, position = np.zeros(n), 0
    while position < n:
        length = min(n - position, int(rng.uniform(0.3, 1.5) * SAMPLE_RATE))
        t = np.arange(length) / SAMPLE_RATE
        root = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        intervals = [0, rng.choice([3, 4]), 7] + ([rng.choice([10, 11])] if rng.random() < 0.5 else [])
        envelope = np.minimum(t / 0.02, 1.0) * np.exp(-t * rng.uniform(0.5, 4.0))
        for semitones in intervals:
            f = root * 2 ** (semitones / 12) * (1 + rng.uniform(-0.003, 0.003))
            out[position : position + length] += envelope * sum(
                np.sin(2 * np.pi * k * f * t) / k for k in range(1, 7) if k * f < SAMPLE_RATE / 2
            )
        position += length
    return out


def _room(rng: np.random.Generator, n: int) -> np.ndarray:
    """Room tone: dark noise (ventilation, traffic far off) with a little hum, now and then a rumble."""
    out = _noise(rng, n, -1.5) + 0.05 * _hum(rng, n)
    if rng.random() < 0.5:
        out += 3 * _band(rng, n, 20, 120) * np.hanning(n)
    return out


def _breath(rng: np.random.Generator, n: int) -> np.ndarray:
    """Breaths: band-limited noise swelling and fading, 0.3-0.9 s each, with pauses, over a noise floor."""
    out, position = 0.01 * _noise(rng, n, -1.0), int(rng.uniform(0, 0.5) * SAMPLE_RATE)
    while position < n:
        length = min(n - position, int(rng.uniform(0.3, 0.9) * SAMPLE_RATE))
        centre = rng.uniform(400, 2500)
        out[position : position + length] += _band(rng, length, centre / 2, centre * 2) * np.hanning(length)
        position += length + int(rng.uniform(0.2, 1.0) * SAMPLE_RATE)
    return out


def _dither(rng: np.random.Generator, n: int) -> np.ndarray:
    """Digital silence as a 16-bit recorder leaves it: triangular dither of one least significant bit."""
    return (rng.uniform(-1, 1, n) + rng.uniform(-1, 1, n)) / 32768


SYNTHESISED: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "white": lambda rng, n: _noise(rng, n, 0.0),
    "pink": lambda rng, n: _noise(rng, n, -1.0),
    "brown": lambda rng, n: _noise(rng, n, -2.0),
    "blue": lambda rng, n: _noise(rng, n, 1.0),
    "hum": _hum,
    "tone": _tone,
    "clicks": _clicks,
    "chords": _chords,
    "room": _room,
    "breath": _breath,
}


def silent_edges(samples: np.ndarray) -> list[np.ndarray]:
    """The leading and trailing stretches of a speech clip without its voice (frames more than 35 dB below its
    loudest, kept 50 ms away from the voice), each at least 40 ms long; [] when the voice fills the clip."""
    hop = SAMPLE_RATE // 50
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop).astype(np.float64)
    if not len(frames):
        return []
    rms = np.sqrt(np.mean(frames**2, axis=1)) + 1e-10
    voiced = np.flatnonzero(20 * np.log10(rms / rms.max()) > VOICE_DB)
    margin = round(EDGE_MARGIN_S * SAMPLE_RATE)
    head = samples[: max(0, voiced[0] * hop - margin)]
    tail = samples[min(len(samples), (voiced[-1] + 1) * hop + margin) :]
    return [edge for edge in (head, tail) if len(edge) >= MIN_PIECE_S * SAMPLE_RATE]


def corpus_edges(prepared: Path, clips: int = EDGE_CLIPS) -> list[np.ndarray]:
    """The silent leading and trailing stretches of the first `clips` clips of a prepared split's Parquet file."""
    batch = next(pq.ParquetFile(prepared).iter_batches(batch_size=clips, columns=["id", "audio"]), None)
    if batch is None:
        return []
    rows = batch.to_pandas()
    return [
        edge for a, i in zip(rows["audio"], rows["id"], strict=True) for edge in silent_edges(load_audio(a, name=i))
    ]


def corpus_silence(edges: list[np.ndarray], rng: np.random.Generator, n: int) -> np.ndarray | None:
    """`n` samples of speech-free audio joined from `edges` (drawn in random order, 5 ms crossfades), or None when
    there are none."""
    if not edges:
        return None
    fade = SAMPLE_RATE // 200
    out = np.zeros(0)
    while len(out) < n:
        piece = edges[rng.integers(len(edges))].astype(np.float64)
        if len(out) >= fade and len(piece) > 2 * fade:
            ramp = np.linspace(0, 1, fade)
            out[-fade:] = out[-fade:] * (1 - ramp) + piece[:fade] * ramp
            piece = piece[fade:]
        out = np.concatenate([out, piece])
    return out[:n]


def clip_of(kind: str, rng: np.random.Generator, n: int, edges: list[np.ndarray]) -> np.ndarray | None:
    """`n` samples of `kind` as float32 in [-1, 1]; None for `corpus` when `edges` holds nothing."""
    if kind == "dither":
        return _dither(rng, n).astype(np.float32)
    if kind == "corpus":
        found = corpus_silence(edges, rng, n)
        return None if found is None else np.clip(found, -1, 1).astype(np.float32)
    sound = SYNTHESISED[kind](rng, n)
    level = 10 ** (rng.uniform(*LEVEL_DBFS) / 20)
    sound = sound * level / (np.sqrt(np.mean(sound**2)) + 1e-12)
    return np.clip(sound, -1, 1).astype(np.float32)


def generate(
    split: str, count: int, seed: int, window_s: float, kinds=KINDS, edges=(), full_window: bool = False
) -> list[tuple[str, str, np.ndarray]]:
    """`count` clips for `split` as (id, kind, 16 kHz float32 samples).

    Training clips draw their kind and length (0.5 s to the window); a held-out set (`full_window`) takes the kinds
    in turn, every clip the whole window long. `edges` are the split's own silent stretches (`silent_edges`) for
    the `corpus` kind, which is skipped (another kind drawn) when there are none.
    """
    kinds = [k for k in kinds if k != "corpus" or len(edges)]
    if not kinds:
        raise ValueError(
            "no kind of non-speech to generate: the only kind asked for is corpus, and no clip has silence"
        )
    out = []
    for index in range(count):
        rng = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], index]))
        kind = kinds[index % len(kinds)] if full_window else kinds[rng.integers(len(kinds))]
        seconds = window_s if full_window else rng.uniform(min(MIN_S, window_s), window_s)
        samples = clip_of(kind, rng, round(seconds * SAMPLE_RATE), list(edges))
        out.append((f"nonspeech-{split}-{index:05d}-{kind}", kind, samples))
    return out


def count_for(speech_clips: int, share: float) -> int:
    """Non-speech clips to add to `speech_clips` so that they are `share` of the mix."""
    return round(speech_clips * share / (1 - share)) if share > 0 else 0


def target_ids(tokenizer) -> list[int]:
    """The label ids of a non-speech clip: start of transcript, the no-speech token, end of text."""
    start, end = tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|endoftext|>"])
    return [int(start), no_speech_token(tokenizer), int(end)]
