"""The page in a real headless Chromium, driven by Playwright: upload, wait for the transcript, download the SRT; and
the Live tab captioning Chromium's fake microphone."""

import socket
import time
from pathlib import Path

import pytest

import app
from conftest import CHROMIUM, MAX_CLIP_CER, MAX_SIX_STEP_CER, NO_BROWSER, clip_cer, sample_rows, transcribe_in_chromium

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


@pytest.fixture(scope="module")
def live_page(pretrained_repo):
    """The page on a free localhost port, serving the six-step Whisper base's int8 export."""
    params = app.AppParams(backend="ctranslate2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.cached_backend("ctranslate2", str(pretrained_repo / "models/ct2"))  # loaded before serving, as main() does
    demo = app.build_demo(str(pretrained_repo / "models/ct2"), params)
    demo.launch(**app.launch_options(params, "127.0.0.1", port), prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def fake_microphone(pretrained_repo, tmp_path_factory) -> tuple[Path, list[str], float]:
    """A WAV for Chromium's fake microphone: 2 s of silence, three phrases the model saw 1 s apart, 2 s of silence
    (the browser loops it: stopping in the silence ends the session cleanly). (path, sentences, seconds)."""
    import numpy as np
    import soundfile as sf

    from svwhisper.audio import SAMPLE_RATE, load_audio

    def gap(seconds: float) -> np.ndarray:
        return np.zeros(int(seconds * SAMPLE_RATE), np.float32)

    rows = sample_rows(3)
    parts = [gap(2.0)]
    for _, name, _ in rows:
        parts += [load_audio(pretrained_repo / "data/sample/sv-SE/clips" / name), gap(1.0)]
    samples = np.concatenate([*parts, gap(1.0)])
    path = tmp_path_factory.mktemp("microphone") / "phrases.wav"
    sf.write(path, samples, SAMPLE_RATE, subtype="PCM_16")
    return path, [sentence for _, _, sentence in rows], len(samples) / SAMPLE_RATE


@pytest.mark.skipif(NO_BROWSER, reason="SVWHISPER_SKIP_BROWSER=1 and no chromium here")
def test_live_tab_captions_a_fake_microphone_while_it_plays(live_page, fake_microphone, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    wav, sentences, seconds = fake_microphone
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    flags += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    flags += [f"--use-file-for-fake-audio-capture={wav}"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            page.goto(live_page)
            page.get_by_role("tab", name="Live").click()
            microphone = page.locator("#live-audio")
            committed = page.locator("#live-committed textarea")
            microphone.get_by_role("button", name="Record").click()
            started = time.monotonic()
            expect(committed).not_to_have_value("", timeout=seconds * 1000)  # words while the phrases still play
            first_words = time.monotonic() - started
            page.wait_for_timeout(max(0.0, seconds + 0.5 - (time.monotonic() - started)) * 1000)
            microphone.get_by_role("button", name="Stop").click()
            expect(page.locator("#live-status")).to_contain_text("Stopped", timeout=60_000)
            lines = committed.input_value().splitlines()
            with page.expect_download() as download:
                page.locator("#live-srt a").first.click()
            download.value.save_as(tmp_path / "live.srt")
            page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
        finally:
            browser.close()
    assert first_words < seconds - 2.0, first_words  # the first phrase was captioned before the last one had ended
    # the page heard the file from a moment after the microphone opened: the three phrases, each on its own line
    assert len(lines) == 3, lines
    for line, sentence in zip(lines, sentences, strict=True):
        assert clip_cer(sentence, line) <= MAX_SIX_STEP_CER, (sentence, line)
    assert (tmp_path / "live.srt").read_text(encoding="utf-8").count(" --> ") == 3
