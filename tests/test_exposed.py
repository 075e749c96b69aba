"""The page exposed to anyone, and hostile files: no way around the queue, requests that cannot touch each other's
files, uploads that cannot make the server read other files, a bounded upload budget, no server paths in what a
client sees. Each test names the fault it guards against (docs/security.md lists them with the threat model)."""

import asyncio
import json
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

import app
from conftest import REPO, free_port
from svwhisper.audio import SAMPLE_RATE, AudioError, load_audio

TONE = (0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)


def encode(path: Path, container: str, codec: str, rate: int = SAMPLE_RATE) -> Path:
    """TONE (2 s) encoded by FFmpeg (PyAV) into `container` with `codec`."""
    import av

    samples = (
        TONE if rate == SAMPLE_RATE else np.interp(np.arange(2 * rate) * SAMPLE_RATE / rate, np.arange(len(TONE)), TONE)
    )
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        frame = av.AudioFrame.from_ndarray(samples.astype(np.float32)[None, :], format="flt", layout="mono")
        frame.rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The page, as `python app.py` launches it, over a dir with no model (every request answers with a message)."""
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    port = free_port()
    params = app.AppParams(max_upload_storage_mb=1.0)
    demo = app.build_demo(str(tmp_path / "secret-server-dir" / "final"), params)
    demo.launch(**app.launch_options(params, "127.0.0.1", port), prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}", demo
    demo.close()


# --- the queue cannot be bypassed ---


def test_direct_posts_to_the_api_routes_are_refused_and_the_queue_still_serves(served):
    url, demo = served
    for route in ("/gradio_api/run/transcribe", "/gradio_api/api/transcribe"):
        answer = httpx.post(f"{url}{route}", json={"data": [None]}, timeout=30)
        assert answer.status_code == 404 and "join the queue" in answer.text, (route, answer.text)
    from gradio_client import Client

    text = Client(url, verbose=False).predict(None, api_name="/transcribe")[0]
    assert text.startswith("⚠️") and "no audio" in text


def test_the_page_shows_the_models_name_not_where_the_server_keeps_it(served, tmp_path):
    url, demo = served
    config = httpx.get(f"{url}/config", timeout=30).text
    assert "`final`" in config and "secret-server-dir" not in config
    from gradio_client import Client, handle_file

    sf.write(tmp_path / "tone.wav", TONE, SAMPLE_RATE)  # a request that reaches the missing model
    text = Client(url, verbose=False).predict(handle_file(str(tmp_path / "tone.wav")), api_name="/transcribe")[0]
    assert "no model in final" in text and "secret-server-dir" not in text, text


# --- requests never remove each other's files ---


def test_requests_at_once_each_keep_their_own_files(tmp_path):
    outputs = app.OutputDirs(tmp_path / "out")
    results, errors = {}, []

    def request(i: int) -> None:
        try:
            result = app.Result(text=f"svar {i}", segments=[app.Segment(0.0, 1.0, f"svar {i}")])
            results[i] = app.page_outputs(result, outputs.new())
        except Exception as err:  # noqa: BLE001 (collected: the assertion below names it)
            errors.append(err)

    threads = [threading.Thread(target=request, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for i, (_, _, srt, vtt, words) in results.items():
        assert f"svar {i}" in Path(srt).read_text(encoding="utf-8")
        assert Path(vtt).is_file() and Path(words).is_file()
    assert len({Path(r[2]).parent for r in results.values()}) == 16


# --- the upload budget ---


async def _echo(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"stored"})


def test_request_bodies_over_the_budget_get_429_until_the_window_has_passed():
    clock = [0.0]
    budget = app.BodyBudget(_echo, limit_bytes=1000, window_s=60, clock=lambda: clock[0])

    async def post(size: int):  # in process, through the middleware
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=budget), base_url="http://page") as c:
            return await c.post("/gradio_api/upload", content=b"x" * size)

    assert asyncio.run(post(600)).status_code == 200
    refused = asyncio.run(post(600))
    assert refused.status_code == 429 and "try again" in refused.text and refused.headers["retry-after"]
    assert asyncio.run(post(300)).status_code == 200  # what still fits is taken
    clock[0] = 61.0
    assert asyncio.run(post(900)).status_code == 200  # the earlier uploads have left the window


def test_the_served_page_refuses_uploads_past_its_storage_budget(served, tmp_path):
    url, _ = served  # a budget of 1 MB
    sf.write(tmp_path / "clip.wav", np.tile(TONE, 5), SAMPLE_RATE)  # 10 s, 320 kB
    codes = []
    for _ in range(6):
        with open(tmp_path / "clip.wav", "rb") as handle:
            codes.append(httpx.post(f"{url}/gradio_api/upload", files={"files": handle}, timeout=30).status_code)
    assert codes[:3] == [200, 200, 200] and set(codes[3:]) == {429}, codes


# --- hostile files: playlists, lists of other files, NaN, unknown lengths ---


@pytest.fixture
def private_media(tmp_path) -> Path:
    """A media file outside every upload and data dir, as FFmpeg's HLS demuxer would take it as a segment."""
    private = tmp_path / "private"
    private.mkdir()
    return encode(private / "secret.ts", "mpegts", "mp2", rate=48000)


PLAYLISTS = {
    "x.m3u8": "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2,\n{target}\n#EXT-X-ENDLIST\n",
    "renamed.wav": "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2,\n{target}\n#EXT-X-ENDLIST\n",
    "list.ffconcat": "ffconcat version 1.0\nfile '{target}'\n",
}


@pytest.mark.parametrize("name", PLAYLISTS)
@pytest.mark.parametrize("target", ["relative", "absolute"])
def test_playlists_and_file_lists_are_refused_and_never_read_the_files_they_name(tmp_path, private_media, name, target):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    shown = "../private/secret.ts" if target == "relative" else str(private_media)
    (uploads / name).write_text(PLAYLISTS[name].format(target=shown), encoding="utf-8")
    with pytest.raises(AudioError, match="not an audio file"):
        load_audio(uploads / name)
    result = app.transcribe(str(uploads / name), model=str(tmp_path / "no_model"), params=app.AppParams())
    assert "not an audio file" in result.message and not result.text
    assert str(tmp_path) not in result.message


def test_a_playlist_inside_local_data_is_dropped_by_prepare_and_the_file_outside_is_not_read(tmp_path, private_media):
    from svwhisper.params import PrepareParams, Source
    from svwhisper.prepare import prepare_split

    data = tmp_path / "data"
    data.mkdir()
    (data / "clip.m3u8").write_text(PLAYLISTS["x.m3u8"].format(target=str(private_media)), encoding="utf-8")
    sf.write(data / "good.wav", TONE, SAMPLE_RATE)
    (data / "list.tsv").write_text("path\tsentence\nclip.m3u8\tHemligt.\ngood.wav\tEn ton.\n", encoding="utf-8")
    params = PrepareParams(local_data=str(data), min_chars_per_second=0.0)
    table, report = prepare_split(
        [Source(kind="manifest", path=str(data / "list.tsv"))], params, tmp_path / "o.parquet"
    )
    assert table["sentence"].tolist() == ["En ton."]
    assert report["dropped"]["undecodable_clip"] == 1


@pytest.mark.parametrize(
    "name, container, codec",
    [("a.m4a", "mp4", "aac"), ("a.webm", "webm", "libopus"), ("a.ogg", "ogg", "vorbis"), ("a.aac", "adts", "aac"),
     ("a.mp3", "mp3", "mp3"), ("a.flac", "flac", "flac"), ("a.wav", "wav", "pcm_s16le")],
)  # fmt: skip
def test_every_allowed_container_still_decodes(tmp_path, name, container, codec):
    if codec == "vorbis":  # PyAV's FFmpeg has no Vorbis encoder; libsndfile writes it
        sf.write(tmp_path / name, TONE, SAMPLE_RATE, format="OGG", subtype="VORBIS")
        path = tmp_path / name
    else:
        path = encode(tmp_path / name, container, codec, 48000 if codec == "libopus" else SAMPLE_RATE)
    samples = load_audio(path)
    assert abs(len(samples) / SAMPLE_RATE - 2.0) < 0.15  # AAC and Opus add an encoder delay
    assert 0.2 < np.abs(samples[SAMPLE_RATE // 2 : SAMPLE_RATE]).max() < 0.4  # the tone, not noise


def test_nan_or_infinite_samples_are_refused_with_a_message(tmp_path):
    spoken = np.tile(TONE, 2)
    spoken[SAMPLE_RATE] = np.nan
    sf.write(tmp_path / "nan.wav", spoken, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(tmp_path / "nan.wav")
    for chunker in ("vad", "energy"):
        params = app.AppParams(chunker=chunker)
        from_file = app.transcribe(str(tmp_path / "nan.wav"), model=str(tmp_path / "no_model"), params=params)
        assert "NaN or infinite" in from_file.message, chunker
    infinite = spoken.copy()
    infinite[SAMPLE_RATE] = np.inf
    from_microphone = app.transcribe((SAMPLE_RATE, infinite), model=str(tmp_path / "no_model"))
    assert "NaN or infinite" in from_microphone.message


def test_a_flac_that_does_not_say_its_length_decodes_within_the_limit(tmp_path):
    sf.write(tmp_path / "clip.flac", np.tile(TONE, 3), SAMPLE_RATE, subtype="PCM_16")
    data = bytearray((tmp_path / "clip.flac").read_bytes())
    # STREAMINFO (after "fLaC" and the 4-byte block header): the 36-bit total sample count at bytes 21-25, 0 = unknown
    data[21] &= 0xF0
    data[22:26] = bytes(4)
    (tmp_path / "unknown.flac").write_bytes(data)
    assert sf.info(tmp_path / "unknown.flac").frames > 1e15  # libsndfile's "unknown": 9.2e16 s at 16 kHz
    samples = load_audio(tmp_path / "unknown.flac", max_duration_s=60)
    assert len(samples) == 6 * SAMPLE_RATE
    with pytest.raises(AudioError, match="more than the 4 s limit"):  # the running cap still holds
        load_audio(tmp_path / "unknown.flac", max_duration_s=4)


def test_a_fifo_or_a_device_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.wav")
    started = time.monotonic()
    for path in (tmp_path / "pipe.wav", Path("/dev/zero")):
        with pytest.raises(AudioError, match="not a regular file"):
            load_audio(path)
    assert time.monotonic() - started < 5


# --- folder sources: transcripts stay inside the folder ---


def test_folder_transcripts_that_leave_the_folder_or_never_end_are_dropped(tmp_path):
    from svwhisper.sources import BadRow, Clip, Source, iter_clips

    secret = tmp_path / "home" / ".cache" / "huggingface" / "token"
    secret.parent.mkdir(parents=True)
    secret.write_text("hf_very_secret_token")
    root = tmp_path / "data"
    root.mkdir()
    for name in ("token", "zero", "pipe", "huge", "good"):
        sf.write(root / f"{name}.wav", TONE, SAMPLE_RATE)
    (root / "token.txt").symlink_to(secret)
    (root / "zero.txt").symlink_to("/dev/zero")
    os.mkfifo(root / "pipe.txt")
    (root / "huge.txt").write_text("ord " * 20_000)
    (root / "good.txt").write_text("En bra mening.")
    found: list = []
    reader = threading.Thread(target=lambda: found.extend(iter_clips(Source(kind="folder", path=str(root)))))
    reader.start()
    reader.join(30)
    assert not reader.is_alive(), "a FIFO transcript blocked the reader"
    clips = [c for c in found if isinstance(c, Clip)]
    bad = {Path(b.where).name: b.reason for b in found if isinstance(b, BadRow)}
    assert [c.sentence for c in clips] == ["En bra mening."]
    assert bad == {"token.txt": "outside_data", "zero.txt": "outside_data", "pipe.txt": "unreadable_transcript",
                   "huge.txt": "unreadable_transcript"}  # fmt: skip
    assert all("hf_very_secret" not in json.dumps(c.sentence) for c in clips)


# --- params that would reach a shell or leave the data ---


@pytest.mark.parametrize(
    "block, line, key",
    [
        ("paths", 'final_model: "models/$(touch pwned)"', "final_model"),
        ("paths", "features: 'data/x; rm -rf ~'", "features"),
        ("paths", "metrics: ../../etc/metrics.json", "metrics"),
        ("paths", "checkpoints: --help", "checkpoints"),
        ("train", "max_steps: 1" + "0" * 400, "max_steps"),
        ("train", "seed: 99999999999999999999", "seed"),
    ],
)
def test_paths_with_shell_characters_and_huge_numbers_are_refused_with_file_line_and_key(tmp_path, block, line, key):
    from test_hostile import params_with

    from svwhisper.paramfile import ParamsError, load_params
    from svwhisper.params import BLOCKS

    path, number = params_with(tmp_path, block, line)
    with pytest.raises(ParamsError, match=rf"params\.yaml:{number}: {block}\.{key}"):
        load_params(BLOCKS[block], block, path)


@pytest.mark.parametrize("tsv", ["../../outside", "sub/train", "/etc/passwd"])
def test_a_commonvoice_tsv_is_a_name_inside_the_release(tmp_path, monkeypatch, tsv):
    from svwhisper.paramfile import ParamsError, parse_block
    from svwhisper.params import PrepareParams

    monkeypatch.chdir(REPO)
    raw = {
        "sources": {
            s: [{"kind": "commonvoice", "path": "data/sample/sv-SE", "tsv": tsv}] for s in ("train", "dev", "test")
        }
    }
    with pytest.raises(ParamsError, match="tsv"):
        parse_block(PrepareParams, raw, "prepare")


# --- secrets in messages and in git ---


@pytest.mark.parametrize(
    "url, shown",
    [
        ("s3://AKIAEXAMPLE:wJalrSECRET@bucket/dvc", "s3://bucket/dvc"),
        ("https://user:hunter2@dvc.example.org:8443/store?token=abc#x", "https://dvc.example.org:8443/store"),
        ("ssh://deploy@host/srv/dvc", "ssh://host/srv/dvc"),
        ("gdrive://1AbCfolder/svwhisper", "gdrive://1AbCfolder/svwhisper"),
        ("/mnt/dvc-remote", "/mnt/dvc-remote"),
    ],
)
def test_remote_urls_in_messages_have_no_credentials(url, shown):
    from svwhisper.remote import shown_url

    assert shown_url(url) == shown


def test_an_unreachable_remote_with_a_password_in_its_url_is_reported_without_it(tmp_path):
    from conftest import run
    from svwhisper.remote import RemoteError, connect

    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    with socket.socket() as stalled:  # takes the connection, never answers
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(8)
        port = stalled.getsockname()[1]
        run(["dvc", "remote", "add", "-d", "store", f"http://alice:hunter2@127.0.0.1:{port}/dvc?sig=s3cr3t"], tmp_path)
        with pytest.raises(RemoteError, match="did not answer") as caught:
            connect(tmp_path, "store", timeout=3)
    assert "hunter2" not in str(caught.value) and "s3cr3t" not in str(caught.value) and "alice" not in str(caught.value)
    assert f"127.0.0.1:{port}" in str(caught.value)
