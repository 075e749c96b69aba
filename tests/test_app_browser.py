"""The page in a real headless Chromium, driven by Playwright: upload, wait for the transcript, download the SRT."""

import socket

import pytest

import app
from conftest import MAX_CLIP_CER, NO_BROWSER, clip_cer, transcribe_in_chromium

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served_page(tiny_repo):
    """The page on a free localhost port, serving the tiny memorised model."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.build_demo(str(tiny_repo / "models/final"), app.AppParams())
    demo.launch(**app.launch_options(app.AppParams(), "127.0.0.1", port), prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.mark.skipif(NO_BROWSER, reason="SVWHISPER_SKIP_BROWSER=1 and no chromium here")
def test_upload_transcribe_and_download_subtitles_in_chromium(served_page, memorised, tmp_path):
    clip, sentence = memorised[0]
    shown, cues, heading = transcribe_in_chromium(served_page, clip, tmp_path)
    assert clip_cer(sentence, shown) <= MAX_CLIP_CER, shown
    assert cues.startswith("1\n00:00:00,")
    cue_text = " ".join(line for line in cues.splitlines()[2:] if line and "-->" not in line and not line.isdigit())
    assert clip_cer(sentence, cue_text) <= MAX_CLIP_CER, cues
    assert "`final` (transformers)" in heading or "final (transformers)" in heading, heading
    assert (tmp_path / "app.png").stat().st_size > 10_000
