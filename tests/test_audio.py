import numpy as np
import pytest
import soundfile as sf

from conftest import SAMPLE
from svwhisper.audio import SAMPLE_RATE, AudioError, encode_flac, load_audio, to_mono_16k


def test_shipped_mp3_decodes_to_16k_mono_float():
    clip = next((SAMPLE / "clips").glob("*.mp3"))
    samples = load_audio(clip)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert 0.3 * SAMPLE_RATE < len(samples) <= 4 * SAMPLE_RATE
    assert 0.01 < np.abs(samples).max() <= 1.0


def test_stereo_44k_int16_becomes_mono_16k_with_the_same_tone(tmp_path):
    seconds, rate = 1.5, 44100
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([tone, tone], axis=1), rate)
    samples = load_audio(path)
    assert len(samples) == pytest.approx(seconds * SAMPLE_RATE, abs=2)
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * SAMPLE_RATE / len(samples) == pytest.approx(440, abs=2)
    assert np.abs(samples).max() == pytest.approx(0.5, abs=0.02)


def test_flac_round_trip_is_lossless_at_16_bit():
    samples = to_mono_16k(np.linspace(-0.5, 0.5, 1600, dtype=np.float32), SAMPLE_RATE)
    assert np.abs(load_audio(encode_flac(samples)) - samples).max() < 1 / 32767 + 1e-6


@pytest.mark.parametrize("content", [b"", b"this is not audio at all", b"RIFF\x00\x00"])
def test_undecodable_input_raises_audio_error_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match="bad.wav"):
        load_audio(path)


def test_missing_file_raises_audio_error(tmp_path):
    with pytest.raises(AudioError, match="nothere.mp3"):
        load_audio(tmp_path / "nothere.mp3")


def test_a_chunk_decodes_at_its_own_rate_with_the_same_caps(tmp_path):
    from svwhisper.audio import AudioTooLong, load_audio_at_own_rate

    t = np.arange(48000) / 48000
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.1 * np.sin(2 * np.pi * 440 * t)], axis=1)
    sf.write(tmp_path / "chunk.wav", stereo.astype(np.float32), 48000, subtype="PCM_16")
    rate, mono = load_audio_at_own_rate(tmp_path / "chunk.wav", max_duration_s=5.0)
    assert rate == 48000 and len(mono) == 48000  # not resampled: the session resamples its chunks as one stream
    assert abs(np.abs(mono).max() - 0.2) < 0.01  # the mean of the two channels
    with pytest.raises(AudioTooLong):  # refused from the header, as load_audio does
        load_audio_at_own_rate(tmp_path / "chunk.wav", max_duration_s=0.5)
