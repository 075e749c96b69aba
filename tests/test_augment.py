"""Augmentation (svwhisper.augment, the featurize stage's copies) and the learning curve's seeded subsets."""

import random

import numpy as np
import pandas as pd
import pytest
from transformers import WhisperProcessor

from conftest import SAMPLE
from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.augment import augment
from svwhisper.data import FeatureSplit
from svwhisper.featurize import featurize_split
from svwhisper.modeling import local_feature_extractor, train_tokenizer
from svwhisper.paramfile import ParamsError, load_params
from svwhisper.params import AugmentParams, FeaturizeParams, PrepareParams, Sources, TextParams
from svwhisper.prepare import prepare_split
from svwhisper.sources import Source
from svwhisper.text import normalize


def tone(seconds=2.0, hz=440.0, amplitude=0.3) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def power(x: np.ndarray) -> float:
    return float(np.mean(x.astype(np.float64) ** 2))


def band_power(x: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)[np.argmax(spectrum)])


def test_same_seed_same_samples_and_the_callers_random_state_is_left_alone():
    speech = load_audio(SAMPLE / "clips" / "common_voice_sv-SE_00004201.mp3")
    params = AugmentParams(transforms=("tempo", "noise", "telephone", "gain"))
    random.seed(7)
    np.random.seed(7)
    before = random.random(), np.random.rand()
    random.seed(7)
    np.random.seed(7)
    first = augment(speech, params, "clip-a", 1, 4.0)
    assert (random.random(), np.random.rand()) == before  # seeded for the clip, then restored
    assert np.array_equal(first, augment(speech, params, "clip-a", 1, 4.0))
    for other in (augment(speech, params, "clip-b", 1, 4.0), augment(speech, params, "clip-a", 2, 4.0)):
        assert not np.array_equal(first[: len(other)], other[: len(first)])  # another clip or copy: other draws
    reseeded = augment(speech, AugmentParams(transforms=params.transforms, seed=1), "clip-a", 1, 4.0)
    assert not np.array_equal(first[: len(reseeded)], reseeded[: len(first)])


def test_gain_changes_the_level_by_a_drawn_amount_within_the_range():
    clean = tone()
    exact = augment(clean, AugmentParams(transforms=("gain",), gain_db=(-6.0, -6.0)), "x", 1, 4.0)
    assert 10 * np.log10(power(exact) / power(clean)) == pytest.approx(-6.0, abs=0.01)
    drawn = [
        10 * np.log10(power(augment(clean, AugmentParams(transforms=("gain",)), f"c{i}", 1, 4.0)) / power(clean))
        for i in range(20)
    ]
    assert all(-12.01 <= d <= 6.01 for d in drawn) and max(drawn) - min(drawn) > 3  # drawn, not fixed


def test_noise_is_added_at_the_signal_to_noise_ratio_asked_for():
    clean = tone()
    for snr in (5.0, 20.0):
        noisy = augment(clean, AugmentParams(transforms=("noise",), noise_snr_db=(snr, snr)), "x", 1, 4.0)
        assert len(noisy) == len(clean)
        measured = 10 * np.log10(power(clean) / power(noisy - clean))
        assert measured == pytest.approx(snr, abs=0.5)


def test_tempo_changes_the_length_but_not_the_pitch_and_never_overfills_the_window():
    clean = tone(seconds=2.0, hz=500.0)
    faster = augment(clean, AugmentParams(transforms=("tempo",), tempo=(1.25, 1.25)), "x", 1, 4.0)
    assert len(faster) == pytest.approx(len(clean) / 1.25, rel=0.02)
    assert peak_hz(faster) == pytest.approx(500.0, abs=10)  # a speed change by resampling would move it to 625
    long = tone(seconds=3.8)
    slowed = augment(long, AugmentParams(transforms=("tempo",), tempo=(0.5, 0.6)), "x", 1, 4.0)
    assert len(long) < len(slowed) <= 4 * SAMPLE_RATE  # slowed only as far as the 4 s window allows


def test_telephone_channel_removes_what_a_phone_line_cannot_carry():
    noise = np.random.default_rng(0).normal(0, 0.1, 2 * SAMPLE_RATE).astype(np.float32)
    phone = augment(noise, AugmentParams(transforms=("telephone",), telephone_hz=(3000.0, 3000.0)), "x", 1, 4.0)
    assert band_power(phone, 6000, 8000) < 0.01 * band_power(noise, 6000, 8000)
    assert band_power(phone, 0, 100) < 0.1 * band_power(noise, 0, 100)
    assert band_power(phone, 800, 2000) > 0.5 * band_power(noise, 800, 2000)  # speech's band goes through


@pytest.mark.parametrize(
    "line, message",
    [
        ("transforms: [tempo, reverbb]", r"featurize\.augment\.transforms: unknown \['reverbb'\]"),
        ("noise_snr_db: [30, 10]", r"featurize\.augment\.noise_snr_db: must be \[min, max\]"),
        ("tempo: [0.9]", r"featurize\.augment\.tempo: must be \[min, max\]"),
        ("copies: 0", r"featurize\.augment\.copies"),
    ],
)
def test_bad_augment_params_name_the_key(tmp_path, line, message):
    path = tmp_path / "params.yaml"
    path.write_text(f"featurize:\n  augment:\n    {line}\n", encoding="utf-8")
    with pytest.raises(ParamsError, match=message):
        load_params(FeaturizeParams, "featurize", path)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    source = Source(kind="commonvoice", path=str(SAMPLE), tsv="train")
    params = PrepareParams(Sources((source,), (source,), (source,)), max_clips_per_split=12)
    path = tmp_path_factory.mktemp("prepared") / "train.parquet"
    prepare_split([source], params, path)
    table = pd.read_parquet(path)
    tokenizer = train_tokenizer(map(normalize, table["sentence"]), vocab_size=300)
    return path, table, WhisperProcessor(feature_extractor=local_feature_extractor(4, 80), tokenizer=tokenizer)


def test_featurize_writes_the_augmented_copies_beside_the_clean_clips_the_same_with_any_workers(prepared, tmp_path):
    path, table, processor = prepared
    augment_params = AugmentParams(transforms=("tempo", "noise"), copies=2)
    outputs = {}
    for workers in (1, 2):
        params = FeaturizeParams(shard_size=5, num_proc=workers, augment=augment_params)
        out = tmp_path / f"w{workers}"
        assert featurize_split(path, out, processor, params, TextParams(), 64, augmented=True) == (36, 3)
        outputs[workers] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert outputs[1] == outputs[2]
    clean = featurize_split(
        path, tmp_path / "clean", processor, FeaturizeParams(augment=augment_params), TextParams(), 64
    )
    assert clean == (12, 1)  # dev and test: augmented=False, the params are not applied

    rows, plain = FeatureSplit(tmp_path / "w2").table, FeatureSplit(tmp_path / "clean").table
    ids = table["id"].tolist()
    first = rows[rows["id"].isin(ids[:5]) | rows["id"].str.startswith(tuple(ids[:5]))]["id"].tolist()
    assert first == ids[:5] + [f"{i}~aug1" for i in ids[:5]] + [f"{i}~aug2" for i in ids[:5]]  # the first shard
    by_id = rows.set_index("id")
    for clip in ids:
        copy = by_id.loc[f"{clip}~aug1"]
        original = plain.set_index("id").loc[clip]
        assert copy["sentence"] == original["sentence"] and list(copy["labels"]) == list(original["labels"])
        assert copy["features"] != original["features"] and copy["features"] != by_id.loc[f"{clip}~aug2"]["features"]
        assert abs(copy["duration_s"] - original["duration_s"]) <= 0.12 * original["duration_s"]  # tempo 0.9-1.1
    assert plain["features"].tolist() == by_id.loc[ids]["features"].tolist()  # the clean rows are untouched


def test_a_share_of_the_training_clips_is_seeded_nested_and_counted(tmp_path):
    source = Source(kind="commonvoice", path=str(SAMPLE), tsv="test")  # 300 clips: quick to decode
    kept = {}
    for fraction, seed in ((1.0, 0), (0.5, 0), (0.25, 0), (0.5, 1)):
        params = PrepareParams(Sources((source,), (source,), (source,)), max_clips_per_split=0, subset_seed=seed)
        meta, report = prepare_split([source], params, tmp_path / f"{fraction}-{seed}.parquet", fraction=fraction)
        kept[fraction, seed] = set(meta["id"])
        assert report["kept"] + sum(report["dropped"].values()) == report["rows"]
        assert report["dropped"]["outside_subset"] == report["rows"] - report["kept"] - sum(
            n for reason, n in report["dropped"].items() if reason != "outside_subset"
        )
    everything = len(kept[1.0, 0])
    assert everything == 300
    for fraction in (0.5, 0.25):
        assert abs(len(kept[fraction, 0]) - fraction * everything) < 4 * (everything * fraction) ** 0.5
    assert kept[0.25, 0] < kept[0.5, 0] < kept[1.0, 0]  # nested: a learning curve adds clips, never swaps them
    assert kept[0.5, 1] != kept[0.5, 0]
