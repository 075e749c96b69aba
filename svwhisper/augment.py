"""Augmented copies of training clips with audiomentations, each draw seeded by (seed, copy, clip id).

The featurize stage writes `copies` augmented versions of every training clip beside the clean one (as
Kaldi's recipes write speed- and noise-perturbed copies), so training reads log-mel as before and pays
nothing per step. At the default budget (120 steps of 16 clips, about half an epoch) no clip is drawn
twice, so fixed copies are what on-the-fly augmentation would give; a run of many epochs sees each copy
again, which is why `copies` can be raised. The same params give the same samples in any process, with
any number of workers: every random draw of a clip comes from its own seed.
"""

import hashlib
import random

import numpy as np
from audiomentations import AddColorNoise, Compose, Gain, HighPassFilter, LowPassFilter, TimeStretch

from svwhisper.audio import SAMPLE_RATE
from svwhisper.params import AUGMENTATIONS, AugmentParams

TELEPHONE_HIGH_PASS_HZ = 300.0


def clip_seed(seed: int, copy: int, clip_id: str) -> int:
    """A 32-bit seed for one copy of one clip, the same on every machine and in every process."""
    digest = hashlib.sha256(f"{seed}:{copy}:{clip_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def transforms_for(params: AugmentParams, n_samples: int, window_s: float) -> Compose:
    """The chain for one clip of `n_samples`: `params.transforms` in AUGMENTATIONS order, each always applied.

    The slowest tempo is raised for a long clip so that the stretched clip still fits the model's window.
    """
    chain = []
    for name in (t for t in AUGMENTATIONS if t in params.transforms):
        if name == "tempo":
            slowest = max(params.tempo[0], n_samples / (window_s * SAMPLE_RATE))
            fastest = max(params.tempo[1], slowest)
            chain.append(TimeStretch(min_rate=slowest, max_rate=fastest, leave_length_unchanged=False, p=1.0))
        elif name == "noise":
            low, high = params.noise_snr_db
            chain.append(AddColorNoise(min_snr_db=low, max_snr_db=high, p=1.0))
        elif name == "telephone":
            low, high = params.telephone_hz
            chain.append(HighPassFilter(TELEPHONE_HIGH_PASS_HZ, TELEPHONE_HIGH_PASS_HZ, p=1.0))
            chain.append(LowPassFilter(min_cutoff_freq=low, max_cutoff_freq=high, p=1.0))
        elif name == "gain":
            chain.append(Gain(min_gain_db=params.gain_db[0], max_gain_db=params.gain_db[1], p=1.0))
    return Compose(chain, p=1.0)


def augment(samples: np.ndarray, params: AugmentParams, clip_id: str, copy: int, window_s: float) -> np.ndarray:
    """Copy number `copy` of one clip (16 kHz float32 mono), never longer than `window_s`.

    audiomentations draws from Python's and NumPy's global generators: they are seeded for the clip and
    restored afterwards, so the caller's random state is left as it was.
    """
    saved = random.getstate(), np.random.get_state()
    seed = clip_seed(params.seed, copy, clip_id)
    random.seed(seed)
    np.random.seed(seed)
    try:
        out = transforms_for(params, len(samples), window_s)(
            samples=samples.astype(np.float32), sample_rate=SAMPLE_RATE
        )
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
    return np.ascontiguousarray(out[: round(window_s * SAMPLE_RATE)], dtype=np.float32)
