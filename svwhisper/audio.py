"""Audio constants and decoding: every clip becomes 16 kHz mono float32 in [-1, 1]."""

import io
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


def decode_with_ffmpeg(source: str | Path | bytes) -> np.ndarray:
    """Decode with FFmpeg's libraries (PyAV): m4a/AAC, opus in webm, video files' audio, ...

    Returns 16 kHz mono float32; raises AudioError when FFmpeg cannot read it either.
    """
    import av  # bundles FFmpeg: no system package needed

    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    parts = []
    try:
        with av.open(handle) as container:
            if not container.streams.audio:
                raise AudioError("no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(container.streams.audio[0]):
                parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
            parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except (av.error.FFmpegError, ValueError, IndexError, EOFError) as err:
        raise AudioError(f"cannot decode audio ({err})") from None
    samples = np.concatenate([np.zeros(0, dtype=np.float32), *parts])
    if samples.size == 0:
        raise AudioError("audio has no samples")
    return samples


def load_audio(source: str | Path | bytes) -> np.ndarray:
    """Decode a file path or encoded bytes: libsndfile first (wav, flac, mp3, ogg), FFmpeg for the rest (m4a, ...).

    Returns 16 kHz mono float32 samples. Raises AudioError naming the file on any failure.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        samples, rate = sf.read(handle, dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        try:
            return decode_with_ffmpeg(source)
        except AudioError:
            raise AudioError(f"{name}: cannot decode audio ({err})") from None
    try:
        return to_mono_16k(samples, rate)
    except AudioError as err:
        raise AudioError(f"{name}: {err}") from None


def encode_flac(samples: np.ndarray) -> bytes:
    """16 kHz float32 samples -> FLAC bytes (lossless, 16-bit), for compact prepared splits."""
    out = io.BytesIO()
    sf.write(out, samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return out.getvalue()
