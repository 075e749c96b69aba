"""Log-mel features stored compactly: trimmed of their constant padded tail, in float16.

Whisper pads every clip with zeros to the full window, then clamps the log-mel to
(its max - 8) and rescales by (x + 4) / 4. The frames after the audio therefore all hold one
value: `max - 2` in the rescaled units, or the floor (-1.5) for near-silent clips. We store
the frames up to the last one that differs and rebuild the rest with `pad_features`, so the
model sees what the extractor produced (up to float16 rounding, below 1e-3).
"""

import numpy as np
import torch

PAD_OFFSET = 2.0  # 8 (clamp range) / 4 (rescale): the padded tail sits this far below the max
SILENCE = (np.log10(1e-10) + 4.0) / 4.0  # -1.5: Whisper's floor, rescaled; zeros never go below it


def tail_value(features: np.ndarray) -> float:
    """The value Whisper gives every frame of zero padding: max - 2, or the floor for near-silence."""
    return max(float(features.max()) - PAD_OFFSET, SILENCE)


def trim_features(features: np.ndarray) -> np.ndarray:
    """(mel, frames) full-window features -> (kept_frames, mel) float16 without the constant tail."""
    pad_value = tail_value(features)
    differs = np.any(features != pad_value, axis=0)
    kept = int(np.nonzero(differs)[0][-1]) + 1 if differs.any() else 1
    return np.ascontiguousarray(features[:, :kept].T).astype(np.float16)


def pad_features(trimmed: np.ndarray, n_frames: int) -> np.ndarray:
    """(kept_frames, mel) trimmed features -> (mel, n_frames) float32, the tail rebuilt."""
    trimmed = trimmed.astype(np.float32)
    if len(trimmed) > n_frames:
        raise ValueError(f"{len(trimmed)} stored frames exceed the model window of {n_frames}")
    out = np.full((trimmed.shape[1], n_frames), tail_value(trimmed), dtype=np.float32)
    out[:, : len(trimmed)] = trimmed.T
    return out


def log_mel(samples: np.ndarray, feature_extractor) -> np.ndarray:
    """16 kHz samples -> (mel, frames) log-mel, equal to the first frames of Whisper's padded window.

    Whisper pads with zeros to the whole window (30 s for whisper-small) before its STFT; after
    the clamp every frame of pure padding holds `max - 2`. Computing the STFT over the clip plus
    N_FFT zeros gives the same leading frames and the same max, for a fraction of the work
    (about 2 s instead of 30 s of audio per clip). The caller trims or pads the tail.
    """
    n_fft, hop = feature_extractor.n_fft, feature_extractor.hop_length
    samples = samples[: feature_extractor.n_samples]  # the extractor truncates to its window, too
    padded = torch.from_numpy(np.pad(samples.astype(np.float32), (0, n_fft)))
    stft = torch.stft(padded, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
    magnitudes = (stft[..., :-1].abs() ** 2).contiguous()
    mel = torch.from_numpy(feature_extractor.mel_filters).float().T @ magnitudes
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).numpy()[:, : feature_extractor.nb_max_frames]


def compact_log_mel(samples: np.ndarray, feature_extractor) -> np.ndarray:
    """16 kHz samples -> trimmed float16 (frames, mel) features, what featurize stores."""
    return trim_features(log_mel(samples, feature_extractor))
