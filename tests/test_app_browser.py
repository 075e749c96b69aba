"""The page in a real headless Chromium, driven by Playwright: upload, wait for the transcript, download the SRT."""

import os
import re
import shutil
import socket

import pytest

import app
from conftest import MAX_CLIP_CER, clip_cer

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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


@pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("SVWHISPER_SKIP_BROWSER") == "1",
    reason="SVWHISPER_SKIP_BROWSER=1 and no chromium here",
)
def test_upload_transcribe_and_download_subtitles_in_chromium(served_page, tiny_repo, tmp_path):
    import pandas as pd
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM, (
        "chromium is missing: `make test` installs it as root (apt-get install chromium); "
        "SVWHISPER_SKIP_BROWSER=1 skips this test on purpose"
    )
    train = pd.read_parquet(tiny_repo / "data/prepared/train.parquet", columns=["id", "sentence"])
    clip = tiny_repo / "data/sample/sv-SE/clips" / f"{train['id'][0]}.mp3"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1100})
            page.goto(served_page)
            with page.expect_response(re.compile(r"/upload")) as uploaded:  # Gradio posts the file, then shows it
                page.locator("input[type=file]").first.set_input_files(str(clip))
            assert uploaded.value.ok
            expect(page.get_by_role("button", name="Clear")).to_be_visible()
            page.wait_for_timeout(500)  # the component's value is set just after the upload answers
            page.get_by_role("button", name="Transcribe").click()
            transcript = page.locator("#transcript textarea")
            expect(transcript).not_to_have_value("", timeout=60_000)
            shown = transcript.input_value()
            with page.expect_download() as download:
                page.locator("#srt a").first.click()
            srt = tmp_path / "downloaded.srt"
            download.value.save_as(srt)
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        finally:
            browser.close()
    sentence, cues = train["sentence"][0], srt.read_text(encoding="utf-8")
    assert clip_cer(sentence, shown) <= MAX_CLIP_CER, shown
    assert cues.startswith("1\n00:00:00,")
    cue_text = " ".join(line for line in cues.splitlines()[2:] if line and "-->" not in line and not line.isdigit())
    assert clip_cer(sentence, cue_text) <= MAX_CLIP_CER, cues
    assert (tmp_path / "app.png").stat().st_size > 10_000
