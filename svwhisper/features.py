"""Log-mel features stored compactly: trimmed of their constant padded tail, in float16.

Whisper pads every clip with zeros to the full window, then clamps the log-mel to
(its max - 8) and rescales by (x + 4) / 4. The frames after the audio therefore all hold one
value, `max - 2` in the rescaled units. We store the frames up to the last one that differs
and rebuild the rest with `pad_features`, so the model sees what the extractor produced
(up to float16 rounding, about 1e-3).
"""

import numpy as np

PAD_OFFSET = 2.0  # 8 (clamp range) / 4 (rescale): the padded tail sits this far below the max


def trim_features(features: np.ndarray) -> np.ndarray:
    """(mel, frames) full-window features -> (kept_frames, mel) float16 without the constant tail."""
    pad_value = features.max() - PAD_OFFSET
    differs = np.any(features != pad_value, axis=0)
    kept = int(np.nonzero(differs)[0][-1]) + 1 if differs.any() else 1
    return np.ascontiguousarray(features[:, :kept].T).astype(np.float16)


def pad_features(trimmed: np.ndarray, n_frames: int) -> np.ndarray:
    """(kept_frames, mel) trimmed features -> (mel, n_frames) float32, the tail rebuilt."""
    trimmed = trimmed.astype(np.float32)
    if len(trimmed) > n_frames:
        raise ValueError(f"{len(trimmed)} stored frames exceed the model window of {n_frames}")
    out = np.full((trimmed.shape[1], n_frames), trimmed.max() - PAD_OFFSET, dtype=np.float32)
    out[:, : len(trimmed)] = trimmed.T
    return out


def log_mel_batch(feature_extractor, clips: list[np.ndarray]) -> list[np.ndarray]:
    """16 kHz clips -> trimmed float16 features, one (frames, mel) array per clip."""
    batch = feature_extractor(clips, sampling_rate=feature_extractor.sampling_rate, return_tensors="np")
    return [trim_features(f) for f in batch.input_features]
