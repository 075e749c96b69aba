"""The app's transcribe() on the memorised tiny model, bad inputs, and the served page via gradio_client."""

import socket

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import app
from svwhisper.text import normalize

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tiny_repo):
    return str(tiny_repo / "models/final")


@pytest.fixture(scope="module")
def memorised(tiny_repo):
    """(clip path, sentence) of the clips the tiny model was trained on."""
    train = pd.read_parquet(tiny_repo / "data/prepared/train.parquet", columns=["id", "sentence"])
    return [
        (tiny_repo / "data/sample/sv-SE/clips" / f"{i}.mp3", s)
        for i, s in zip(train["id"], train["sentence"], strict=True)
    ]


def test_transcribe_a_file_path(model_dir, memorised):
    clip, sentence = memorised[0]
    assert app.transcribe(str(clip), model_dir=model_dir) == normalize(sentence)


def test_transcribe_a_microphone_tuple_at_44k_stereo(model_dir, memorised):
    clip, sentence = memorised[1]
    samples, rate = sf.read(clip, dtype="float32")
    upsampled = np.interp(np.arange(0, len(samples), rate / 44100), np.arange(len(samples)), samples)
    stereo = (np.stack([upsampled, upsampled], axis=1) * 32767).astype(np.int16)
    assert app.transcribe((44100, stereo), model_dir=model_dir) == normalize(sentence)


def test_bad_inputs_get_a_message_and_the_next_request_works(model_dir, memorised, tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.wav").write_text("not audio", encoding="utf-8")
    sf.write(tmp_path / "silence.wav", np.zeros(16000, dtype=np.float32), 16000)
    cases = [
        (None, "no audio"),
        (str(tmp_path / "empty.wav"), "empty"),
        (str(tmp_path / "notes.wav"), "cannot decode"),
        (str(tmp_path / "silence.wav"), "silent"),
        (str(tmp_path / "missing.wav"), "no such file"),
        ((16000, np.zeros(0, dtype=np.int16)), "no samples"),
    ]
    for audio, message in cases:
        answer = app.transcribe(audio, model_dir=model_dir)
        assert answer.startswith("⚠️") and message in answer, (audio, answer)
    clip, sentence = memorised[2]
    assert "make repro" in app.transcribe(str(clip), model_dir=str(tmp_path / "no_model"))
    assert app.transcribe(str(clip), model_dir=model_dir) == normalize(sentence)


def test_served_page_transcribes_an_upload(model_dir, memorised, monkeypatch):
    from gradio_client import Client, handle_file

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.build_demo(model_dir)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        clip, sentence = memorised[3]
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        assert client.predict(handle_file(str(clip)), api_name="/transcribe") == normalize(sentence)
    finally:
        demo.close()
