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


class AudioError(ValueError):
    """A clip that cannot be decoded (missing, empty, not audio, corrupt)."""


NOT_FINITE = "the audio holds NaN or infinite samples (a corrupt float file)"


def to_float_mono(samples: np.ndarray) -> np.ndarray:
    """(n,) or (n, channels) samples, integer or float -> (n,) float32 in [-1, 1], mono by mean."""
    samples = np.asarray(samples)
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float32) / np.iinfo(samples.dtype).max
    samples = samples.astype(np.float32, copy=False)
    if not np.isfinite(samples).all():
        raise AudioError(NOT_FINITE)
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """(n,) or (n, channels) samples at `sample_rate` Hz -> (m,) float32 at 16 kHz, mono by mean."""
    if np.asarray(samples).size == 0:
        raise AudioError("audio has no samples")
    samples = to_float_mono(samples)
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
    """A growing mono float32 buffer at `rate` Hz with a running cap: decoding stops as soon as it passes the limit."""

    def __init__(self, name: str, limit_s: float | None, expected: int = 0, rate: int = SAMPLE_RATE):
        self.name, self.limit_s, self.rate, self.n = name, limit_s, rate, 0
        self.cap = None if limit_s is None else int(limit_s * rate) + rate  # 1 s of resampler slack
        size = expected if expected > 0 else 30 * rate
        self.buffer = np.empty(size if self.cap is None else min(size, self.cap), dtype=np.float32)

    def add(self, block: np.ndarray) -> None:
        if not np.isfinite(block).all():  # one NaN spreads through the resampler and the log-mel into nonsense
            raise AudioError(f"{self.name}: {NOT_FINITE}")
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
        if self.limit_s is not None and samples.size > self.limit_s * self.rate:
            raise AudioTooLong(self.name, self.limit_s, samples.size / self.rate)
        return samples


# The containers we decode, by their first bytes, and the FFmpeg demuxer that reads each. Nothing else is opened:
# FFmpeg, left to guess, also takes playlists and lists of other files (HLS .m3u8, concat, image2), through which
# an upload or a manifest row could make the server read any media file on its disk.
FFMPEG_DEMUXERS = {"wav": "wav", "flac": "flac", "ogg": "ogg", "mp3": "mp3", "aac": "aac", "mp4": "mov",
                   "webm": "matroska", "aiff": "aiff"}  # fmt: skip
LIBSNDFILE_FORMATS = ("wav", "flac", "ogg", "mp3", "aiff")  # the rest (m4a, aac, webm) only FFmpeg reads
ALLOWED = "wav, flac, mp3, ogg/opus, m4a/mp4/aac, webm, aiff"
HEAD_BYTES = 12
UNKNOWN_FRAMES = 1 << 62  # libsndfile's frame count for a stream that does not say its length (SF_COUNT_MAX)


def sniff_container(head: bytes) -> str | None:
    """The container of a file from its first HEAD_BYTES bytes ("wav", "mp4", ...), or None when it is none we take."""
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[4:8] == b"ftyp":
        return "mp4"
    signatures = {b"fLaC": "flac", b"OggS": "ogg", b"\x1a\x45\xdf\xa3": "webm", b"ADIF": "aac"}
    if head[:4] in signatures:
        return signatures[head[:4]]
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # an MPEG audio frame's sync word
        return "aac" if head[1] & 0x06 == 0 else "mp3"  # layer bits 00: ADTS (AAC), else MPEG layer I-III
    return None


def container_of(source: str | Path | bytes, name: str) -> str:
    """The allowed container of a file or encoded bytes; AudioError naming the file when it is not one."""
    if isinstance(source, bytes):
        head = source[:HEAD_BYTES]
    else:
        path = Path(source)
        if not path.is_file():  # a FIFO or a device would block or never end
            raise AudioError(f"{name}: no such file" if not path.exists() else f"{name}: not a regular file")
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
    if not head:
        raise AudioError(f"{name}: the file is empty")
    container = sniff_container(head)
    if container is None:
        raise AudioError(f"{name}: not an audio file this reads ({ALLOWED})")
    return container


def _open_ffmpeg(source: str | Path | bytes, container: str):
    """PyAV over the file's bytes with the demuxer fixed: FFmpeg never guesses the format nor opens another file."""
    import av  # bundles FFmpeg: no system package needed

    handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115 (PyAV closes it)
    return av.open(handle, format=FFMPEG_DEMUXERS[container], options={"protocol_whitelist": "none"})


def header_info(source: str | Path | bytes, container: str) -> AudioInfo | None:
    """Duration, channels and rate from the file's header, without decoding it; None when no header says."""
    if container in LIBSNDFILE_FORMATS:
        try:
            info = sf.info(io.BytesIO(source) if isinstance(source, bytes) else source)
            if 0 < info.frames < UNKNOWN_FRAMES and info.samplerate > 0:
                return AudioInfo(info.frames / info.samplerate, info.channels, info.samplerate)
        except Exception:  # noqa: BLE001 (libsndfile cannot read this one: ask FFmpeg)
            pass
    try:
        with _open_ffmpeg(source, container) as opened:
            if opened.streams.audio and opened.duration:
                stream = opened.streams.audio[0]
                return AudioInfo(opened.duration / 1e6, stream.channels, stream.rate)
    except Exception:  # noqa: BLE001 (no header that says: the running cap still applies)
        pass
    return None


def _decode_sndfile(handle, name: str, limit_s: float | None, to_16k: bool = True) -> tuple[int, np.ndarray]:
    """libsndfile, a block at a time: each block mixed down to mono (and resampled to 16 kHz) as it comes;
    (rate, samples)."""
    with sf.SoundFile(handle) as audio:
        rate, channels = audio.samplerate, audio.channels
        out_rate = SAMPLE_RATE if to_16k else rate
        known = 0 < audio.frames < UNKNOWN_FRAMES
        out = Samples(name, limit_s, int(audio.frames * out_rate / rate) + 1 if known else 0, out_rate)
        resampler = None if rate == out_rate else soxr.ResampleStream(rate, out_rate, 1, "float32", "HQ")
        block = np.empty((max(4096, BLOCK_VALUES // channels), channels), dtype=np.float32)
        while len(data := audio.read(len(block), dtype="float32", always_2d=True, out=block)):
            mono = data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0]
            out.add(resampler.resample_chunk(mono) if resampler else mono)
        if resampler:
            out.add(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    return out_rate, out.result()


def decode_with_ffmpeg(
    source: str | Path | bytes, max_duration_s: float | None = None, name: str | None = None
) -> np.ndarray:
    """Decode with FFmpeg's libraries (PyAV): m4a/AAC, opus in webm, ...; only the containers of FFMPEG_DEMUXERS.

    Refuses from the container's header what is over `max_duration_s`, then decodes a frame at a
    time into 16 kHz mono with a running cap. Raises AudioError (naming the file as `name`, by default
    its path) when it is not an allowed container or FFmpeg cannot read it.
    """
    name = _named(source, name)
    return _decode_ffmpeg(source, container_of(source, name), max_duration_s, name)[1]


def _named(source: str | Path | bytes, name: str | None) -> str:
    return name or ("<bytes>" if isinstance(source, bytes) else str(source))


def _reason(err: Exception, source: str | Path | bytes, name: str) -> str:
    """A decoder's error text with the path it names replaced by `name` (a message must not show server paths)."""
    return str(err) if isinstance(source, bytes) else str(err).replace(str(source), name)


def _decode_ffmpeg(
    source: str | Path | bytes, container: str, max_duration_s: float | None, name: str, to_16k: bool = True
) -> tuple[int, np.ndarray]:
    import av

    try:
        with _open_ffmpeg(source, container) as opened:
            if not opened.streams.audio:
                raise AudioError(f"{name}: no audio stream")
            stream = opened.streams.audio[0]
            duration = opened.duration / 1e6 if opened.duration else None
            if max_duration_s is not None and duration is not None and duration > max_duration_s:
                raise AudioTooLong(name, max_duration_s, duration)
            out_rate = SAMPLE_RATE if to_16k else stream.rate
            out = Samples(name, max_duration_s, int(duration * out_rate) + 1 if duration else 0, out_rate)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=out_rate)
            for frame in opened.decode(stream):
                for part in resampler.resample(frame):
                    out.add(part.to_ndarray().reshape(-1))
            for part in resampler.resample(None):
                out.add(part.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except Exception as err:  # noqa: BLE001 (any failure of a corrupt file is "cannot decode", never a crash)
        raise AudioError(f"{name}: cannot decode audio ({type(err).__name__}: {_reason(err, source, name)})") from None
    return out_rate, out.result()


def load_audio(source: str | Path | bytes, max_duration_s: float | None = None, name: str | None = None) -> np.ndarray:
    """Decode a file path or encoded bytes of an allowed container (see sniff_container): libsndfile first (wav,
    flac, mp3, ogg), FFmpeg with the demuxer fixed for the rest (m4a, aac, webm) and for what libsndfile cannot.

    Returns 16 kHz mono float32 samples, all finite. Memory stays near the size of that result
    whatever the file's channels, rate or compression: audio over `max_duration_s` is refused from
    its header before decoding (AudioTooLong), and decoding goes a block at a time with a running
    cap (for a header that understates). Raises AudioError naming the file (as `name`, by default its
    path) on any failure.
    """
    return _load(source, max_duration_s, _named(source, name), to_16k=True)[1]


def load_audio_at_own_rate(
    source: str | Path | bytes, max_duration_s: float, name: str | None = None
) -> tuple[int, np.ndarray]:
    """load_audio with every guarantee of it, but mono at the file's own rate: (rate in Hz, float32 samples). For
    pieces of one stream (a microphone's chunks), which are resampled together so that no seam is heard."""
    return _load(source, max_duration_s, _named(source, name), to_16k=False)


def _load(source: str | Path | bytes, max_duration_s: float | None, name: str, to_16k: bool) -> tuple[int, np.ndarray]:
    container = container_of(source, name)
    info = header_info(source, container)
    if max_duration_s is not None and info is not None and info.duration_s > max_duration_s:
        raise AudioTooLong(name, max_duration_s, info.duration_s)
    if container not in LIBSNDFILE_FORMATS:
        return _decode_ffmpeg(source, container, max_duration_s, name, to_16k)
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else source
        return _decode_sndfile(handle, name, max_duration_s, to_16k)
    except AudioError:
        raise
    except Exception as err:  # noqa: BLE001 (libsndfile cannot: FFmpeg may; a corrupt file is an AudioError)
        try:
            return _decode_ffmpeg(source, container, max_duration_s, name, to_16k)
        except AudioTooLong:
            raise
        except AudioError:  # libsndfile's reason, then
            raise AudioError(f"{name}: cannot decode audio ({_reason(err, source, name)})") from None


def encode_flac(samples: np.ndarray) -> bytes:
    """16 kHz float32 samples -> FLAC bytes (lossless, 16-bit), for compact prepared splits."""
    out = io.BytesIO()
    sf.write(out, samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return out.getvalue()
