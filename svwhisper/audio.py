"""Audio constants and decoding: every clip becomes 16 kHz mono float32 in [-1, 1]."""

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000  # Hz, what every Whisper feature extractor expects
N_FFT = 400  # samples per STFT window (25 ms)
HOP_LENGTH = 160  # samples between frames (10 ms)
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 log-mel frames per second


class AudioError(ValueError):
    """A clip that cannot be decoded (missing, empty, not audio, corrupt)."""


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """(n,) or (n, channels) samples at `sample_rate` Hz -> (m,) float32 at 16 kHz, mono by mean."""
    samples = np.asarray(samples)
    if samples.size == 0:
        raise AudioError("audio has no samples")
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float32) / np.iinfo(samples.dtype).max
    samples = samples.astype(np.float32, copy=False)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if sample_rate != SAMPLE_RATE:
        samples = soxr.resample(samples, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return samples


class AudioTooLong(AudioError):
    """Audio over a duration limit, found from its header (before decoding) or by the running cap while decoding."""

    def __init__(self, name: str, limit_s: float, duration_s: float | None = None):
        self.limit_s, self.duration_s = limit_s, duration_s  # duration None: cut off at the cap, length unknown
        length = f"{duration_s:.1f} s, " if duration_s is not None else ""
        super().__init__(f"{name}: the audio lasts {length}more than the {limit_s:g} s limit")


@dataclass(frozen=True)
class AudioInfo:
    duration_s: float
    channels: int
    rate: int


BLOCK_VALUES = 1 << 20  # samples (all channels) decoded at a time: 4 MB of float32, whatever the file's layout


class Samples:
    """A growing 16 kHz mono float32 buffer with a running cap: decoding stops as soon as it passes the limit."""

    def __init__(self, name: str, limit_s: float | None, expected: int = 0):
        self.name, self.limit_s, self.n = name, limit_s, 0
        self.cap = None if limit_s is None else int(limit_s * SAMPLE_RATE) + SAMPLE_RATE  # 1 s of resampler slack
        size = expected if expected > 0 else 30 * SAMPLE_RATE
        self.buffer = np.empty(size if self.cap is None else min(size, self.cap), dtype=np.float32)

    def add(self, block: np.ndarray) -> None:
        end = self.n + len(block)
        if self.cap is not None and end > self.cap:
            raise AudioTooLong(self.name, self.limit_s)
        if end > len(self.buffer):
            grown = max(end, len(self.buffer) * 3 // 2)
            self.buffer = np.resize(self.buffer, grown if self.cap is None else min(grown, self.cap))
        self.buffer[self.n : end] = block
        self.n = end

    def result(self) -> np.ndarray:
        samples = self.buffer[: self.n]
        if samples.size == 0:
            raise AudioError(f"{self.name}: audio has no samples")
        if self.limit_s is not None and samples.size > self.limit_s * SAMPLE_RATE:
            raise AudioTooLong(self.name, self.limit_s, samples.size / SAMPLE_RATE)
        return samples


def header_info(source: str | Path | bytes) -> AudioInfo | None:
    """Duration, channels and rate from the file's header, without decoding it; None when no header says."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        info = sf.info(handle)
        if info.frames > 0 and info.samplerate > 0:
            return AudioInfo(info.frames / info.samplerate, info.channels, info.samplerate)
    except Exception:  # noqa: BLE001 (not libsndfile's format: ask FFmpeg)
        pass
    try:
        import av

        with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as container:
            if container.streams.audio and container.duration:
                stream = container.streams.audio[0]
                return AudioInfo(container.duration / 1e6, stream.channels, stream.rate)
    except Exception:  # noqa: BLE001 (no header that says: the running cap still applies)
        pass
    return None


def _decode_sndfile(handle, name: str, limit_s: float | None) -> np.ndarray:
    """libsndfile, a block at a time: each block mixed down to mono and resampled as it comes."""
    with sf.SoundFile(handle) as audio:
        rate, channels = audio.samplerate, audio.channels
        expected = int(audio.frames * SAMPLE_RATE / rate) + 1 if audio.frames > 0 else 0
        out = Samples(name, limit_s, expected)
        resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, "float32", "HQ")
        block = np.empty((max(4096, BLOCK_VALUES // channels), channels), dtype=np.float32)
        while len(data := audio.read(len(block), dtype="float32", always_2d=True, out=block)):
            mono = data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0]
            out.add(resampler.resample_chunk(mono) if resampler else mono)
        if resampler:
            out.add(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    return out.result()


def decode_with_ffmpeg(source: str | Path | bytes, max_duration_s: float | None = None) -> np.ndarray:
    """Decode with FFmpeg's libraries (PyAV): m4a/AAC, opus in webm, video files' audio, ...

    Refuses from the container's header what is over `max_duration_s`, then decodes a frame at a
    time into 16 kHz mono with a running cap. Raises AudioError when FFmpeg cannot read it either.
    """
    import av  # bundles FFmpeg: no system package needed

    name = "<bytes>" if isinstance(source, bytes) else str(source)
    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with av.open(handle) as container:
            if not container.streams.audio:
                raise AudioError(f"{name}: no audio stream")
            stream = container.streams.audio[0]
            duration = container.duration / 1e6 if container.duration else None
            if max_duration_s is not None and duration is not None and duration > max_duration_s:
                raise AudioTooLong(name, max_duration_s, duration)
            out = Samples(name, max_duration_s, int(duration * SAMPLE_RATE) + 1 if duration else 0)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                for part in resampler.resample(frame):
                    out.add(part.to_ndarray().reshape(-1))
            for part in resampler.resample(None):
                out.add(part.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except Exception as err:  # noqa: BLE001 (any failure of a corrupt file is "cannot decode", never a crash)
        raise AudioError(f"{name}: cannot decode audio ({type(err).__name__}: {err})") from None
    return out.result()


def load_audio(source: str | Path | bytes, max_duration_s: float | None = None) -> np.ndarray:
    """Decode a file path or encoded bytes: libsndfile first (wav, flac, mp3, ogg), FFmpeg for the rest (m4a, ...).

    Returns 16 kHz mono float32 samples. Memory stays near the size of that result whatever the
    file's channels, rate or compression: audio over `max_duration_s` is refused from its header
    before decoding (AudioTooLong), and decoding goes a block at a time with a running cap (for a
    header that understates). Raises AudioError naming the file on any failure.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    info = header_info(source)
    if max_duration_s is not None and info is not None and info.duration_s > max_duration_s:
        raise AudioTooLong(name, max_duration_s, info.duration_s)
    try:
        return _decode_sndfile(io.BytesIO(source) if isinstance(source, bytes) else source, name, max_duration_s)
    except AudioError:
        raise
    except Exception as err:  # noqa: BLE001 (libsndfile cannot: FFmpeg may; a corrupt file is an AudioError)
        try:
            return decode_with_ffmpeg(source, max_duration_s)
        except AudioTooLong:
            raise
        except AudioError:
            raise AudioError(f"{name}: cannot decode audio ({err})") from None


def encode_flac(samples: np.ndarray) -> bytes:
    """16 kHz float32 samples -> FLAC bytes (lossless, 16-bit), for compact prepared splits."""
    out = io.BytesIO()
    sf.write(out, samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return out.getvalue()
