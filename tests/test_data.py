import numpy as np
import pytest
from transformers import WhisperFeatureExtractor

from conftest import SAMPLE
from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.data import SpeechCollator
from svwhisper.logmel import compact_log_mel, pad_features, trim_features
from svwhisper.modeling import local_feature_extractor


@pytest.mark.parametrize(
    "extractor",
    [
        local_feature_extractor(chunk_length_s=4, num_mel_bins=80),  # the default model's
        WhisperFeatureExtractor(feature_size=80),  # whisper-small's: 30 s window
        WhisperFeatureExtractor(feature_size=128),  # whisper-large-v3's: 128 mel bins
    ],
    ids=["4s-80", "30s-80", "30s-128"],
)
def test_trimmed_float16_features_pad_back_to_what_the_extractor_gives(extractor):
    clips = [load_audio(p) for p in sorted((SAMPLE / "clips").glob("*.mp3"))[:6]]
    clips.append(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))  # silence: everything is "tail"
    full = extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
    trimmed = [compact_log_mel(clip, extractor) for clip in clips]
    for clip, reference, stored in zip(clips, full, trimmed, strict=True):
        assert stored.dtype == np.float16 and stored.shape[1] == extractor.feature_size
        # the tail after the audio is gone (quiet frames that the log-mel clamp makes equal to
        # the padding may go too: the round trip below shows nothing is lost)
        if clip.any():  # (pure silence is all "max": nothing to trim, stored whole)
            assert stored.shape[0] <= len(clip) / 160 + 4
        assert np.abs(pad_features(stored, extractor.nb_max_frames) - reference).max() <= 1e-3


def test_trim_of_a_full_window_keeps_every_frame():
    features = np.random.default_rng(0).normal(size=(80, 400)).astype(np.float32)
    assert trim_features(features).shape == (400, 80)
    with pytest.raises(ValueError, match="exceed the model window"):
        pad_features(trim_features(features), 300)


def test_collator_pads_labels_with_minus_100_and_drops_the_start_token():
    start = 7
    collate = SpeechCollator(n_frames=10, decoder_start_token_id=start)
    items = [
        {"input_features": np.ones((4, 3), dtype=np.float16), "labels": [start, 1, 2, 3, 9]},
        {"input_features": np.ones((10, 3), dtype=np.float16), "labels": [start, 5, 9]},
    ]
    batch = collate(items)
    assert batch["input_features"].shape == (2, 3, 10)
    assert batch["labels"].tolist() == [[1, 2, 3, 9], [5, 9, -100, -100]]


def test_collator_keeps_labels_when_not_every_row_starts_with_the_start_token():
    collate = SpeechCollator(n_frames=4, decoder_start_token_id=7)
    items = [{"input_features": np.zeros((2, 3), dtype=np.float16), "labels": labels} for labels in ([7, 1], [2])]
    assert collate(items)["labels"].tolist() == [[7, 1], [2, -100]]


def test_a_no_speech_row_learns_nocaptions_at_the_start_and_an_empty_transcript_after_the_prompt():
    start, sv, transcribe, notimestamps, nocaptions, eot = 7, 20, 21, 22, 30, 9
    collate = SpeechCollator(4, start, no_speech_token_id=nocaptions, prompt=(start, sv, transcribe, notimestamps))
    speech = {
        "input_features": np.zeros((2, 3), dtype=np.float16),
        "labels": [start, sv, transcribe, notimestamps, 1, 2, eot],
    }
    silent = {"input_features": np.zeros((2, 3), dtype=np.float16), "labels": [start, nocaptions, eot]}
    batch = collate([speech, silent])
    assert batch["decoder_input_ids"].tolist() == [
        [start, sv, transcribe, notimestamps, 1, 2],  # the labels shifted right, as the model would
        [start, sv, transcribe, notimestamps, eot, eot],  # the prompt decoding forces
    ]
    assert batch["labels"].tolist() == [
        [sv, transcribe, notimestamps, 1, 2, eot],
        [nocaptions, transcribe, notimestamps, eot, -100, -100],  # P(no speech) at the start; then nothing to say
    ]
    # a batch of speech alone is what it always was: the model shifts the labels itself
    assert set(collate([speech, speech])) == {"input_features", "labels"}
    # without a prompt, a no-speech row keeps Whisper's target alone
    assert SpeechCollator(4, start, nocaptions)([silent])["labels"].tolist() == [[nocaptions, eot]]
