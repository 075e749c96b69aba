"""The Live tab and the upload budget exposed to anyone, driven through the served page over HTTP as a hostile
client would (benchmarks/load.py's LiveClient): chunks that name other files or hold hours of audio, bodies
longer than they say or holding a thousand files, clients that vanish and sessions that are abandoned.
docs/security.md lists each with the threat model. ffmpeg/ffprobe on PATH, as a Hugging Face Space has them,
where a finding needed them."""

import importlib.util
import os
import shutil
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
from svwhisper.audio import SAMPLE_RATE
from svwhisper.params import AppParams, LiveParams

NEEDS_FFMPEG = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
    reason="ffmpeg/ffprobe are not on PATH (a Space has them; `make test` installs Debian's ffmpeg)",
)


def load_benchmark():
    spec = importlib.util.spec_from_file_location("load_benchmark", REPO / "benchmarks" / "load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LiveClient = load_benchmark().LiveClient


@pytest.fixture
def serve(tmp_path, monkeypatch):
    """serve(model, params) -> (the page's URL, its Blocks), launched as `python app.py` does, its uploads under
    tmp/gradio."""
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    launched = []

    def start(model: str, params: AppParams) -> tuple[str, object]:
        port = free_port()
        demo = app.build_demo(model, params)
        demo.launch(**app.launch_options(params, "127.0.0.1", port), prevent_thread_lock=True, quiet=True)
        launched.append(demo)
        return f"http://127.0.0.1:{port}", demo

    yield start
    for demo in launched:
        demo.close()


def stored(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "gradio").rglob("*") if p.is_file()]


def wav(path: Path, seconds: float, rate: int = 48000) -> Path:
    """Speech-band noise at `rate` Hz, 16-bit mono: what a browser's microphone chunk looks like."""
    rng = np.random.default_rng(int(seconds * 1000))
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32), rate, subtype="PCM_16")
    return path


# --- chunks that name other files, or hold hours ---


@NEEDS_FFMPEG
@pytest.mark.parametrize("name", ["live.m3u8", "chunk.wav"])
def test_a_playlist_sent_as_a_live_chunk_is_refused_and_never_opens_the_file_it_names(serve, tmp_path, name):
    private = tmp_path / "private"
    private.mkdir()
    secret = private / "secret.ts"
    os.mkfifo(secret)  # whoever follows the playlist blocks opening it: the test sees a reader there
    url, _ = serve(str(tmp_path / "no-model" / "final"), AppParams())
    chunk = tmp_path / name
    chunk.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2,\n{secret}\n#EXT-X-ENDLIST\n", encoding="utf-8")
    client = LiveClient(url, timeout=30)
    try:
        assert client.send(chunk) == 200
        answer = client.answer(1, timeout=30)
        time.sleep(1.0)  # a decoder that followed the playlist would be waiting in open() by now
        with pytest.raises(OSError):  # ENXIO: no process has the FIFO open for reading
            os.close(os.open(secret, os.O_WRONLY | os.O_NONBLOCK))
    finally:
        try:  # release anything that did open it, so that the server can close
            os.close(os.open(secret, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        client.close()
    assert answer is not None and answer.startswith("⚠️") and "not an audio file" in answer, answer
    assert str(tmp_path) not in answer


def test_a_live_chunk_to_a_page_without_its_model_names_the_folder_not_its_path(serve, tmp_path):
    url, _ = serve(str(tmp_path / "secret-server-dir" / "final"), AppParams())
    client = LiveClient(url, timeout=30)
    try:
        assert client.send(wav(tmp_path / "c.wav", 0.5)) == 200
        answer = client.answer(1, timeout=30)
    finally:
        client.close()
    assert answer is not None and "no model in final" in answer and "secret-server-dir" not in answer, answer


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


@NEEDS_FFMPEG
def test_a_one_hour_flac_live_chunk_is_refused_from_its_header_within_100_mb(serve, tmp_path):
    hour = tmp_path / "hour.flac"
    with sf.SoundFile(hour, "w", samplerate=SAMPLE_RATE, channels=1, format="FLAC", subtype="PCM_16") as out:
        block = np.zeros(SAMPLE_RATE * 60, np.float32)
        for _ in range(60):
            out.write(block)
    assert hour.stat().st_size < 2e6  # silence compresses: a small upload, 230 MB as float32
    url, _ = serve(str(tmp_path / "no-model" / "final"), AppParams())
    client = LiveClient(url, timeout=60)
    peak, done = [rss_mb()], threading.Event()
    before = peak[0]

    def sample() -> None:
        while not done.wait(0.01):
            peak.append(rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        assert client.send(hour) == 200
        answer = client.answer(1, timeout=60)
    finally:
        done.set()
        sampler.join()
        client.close()
    assert answer is not None and "at most 5 s are taken" in answer, answer
    assert max(peak) - before < 100, f"server RSS {before:.0f} -> {max(peak):.0f} MB"


# --- the upload budget counts what arrives ---


def test_chunked_uploads_are_refused_before_they_are_stored(serve, tmp_path):
    url, _ = serve(str(tmp_path / "no-model" / "final"), AppParams(max_upload_storage_mb=10.0))
    port = int(url.rsplit(":", 1)[1])
    boundary = "b0undary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="x.wav"\r\n\r\n'
    part = head.encode() + b"\0" * 4_000_000 + f"\r\n--{boundary}--\r\n".encode()
    codes = []
    for _ in range(10):  # 40 MB against a 10 MB budget, each saying it is 100 bytes long
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(
                b"POST /gradio_api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Length: 100\r\nContent-Type: multipart/form-data; boundary=" + boundary.encode() + b"\r\n\r\n"
            )
            try:
                for start in range(0, len(part), 65536):
                    piece = part[start : start + 65536]
                    conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                conn.sendall(b"0\r\n\r\n")
            except OSError:  # the server answered and closed before the body was all sent
                pass
            codes.append(int(conn.recv(1024).split(b" ")[1]))
    assert set(codes) == {411}, codes
    assert stored(tmp_path) == []


def test_a_body_longer_than_its_content_length_is_cut_off_and_nothing_of_it_is_kept(serve, tmp_path):
    """In process, under the HTTP server: what the budget does if a server ever hands it more than was declared."""
    _, demo = serve(str(tmp_path / "no-model" / "final"), AppParams())
    boundary = b"b0undary"
    body = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="files"; filename="x.wav"\r\n\r\n'
            + b"\0" * 300_000 + b"\r\n--" + boundary + b"--\r\n")  # fmt: skip
    pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    scope = {"type": "http", "method": "POST", "path": "/gradio_api/upload", "raw_path": b"/gradio_api/upload",
             "query_string": b"", "root_path": "", "scheme": "http", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 5), "http_version": "1.1", "asgi": {"version": "3.0"},
             "headers": [(b"host", b"127.0.0.1"), (b"content-length", b"1000"),
                         (b"content-type", b"multipart/form-data; boundary=" + boundary)]}  # fmt: skip
    sent = []

    async def receive():
        return {"type": "http.request", "body": pieces.pop(0), "more_body": bool(pieces)} if pieces else {
            "type": "http.disconnect"}  # fmt: skip

    async def send(message):
        sent.append(message)

    import asyncio

    asyncio.run(demo.app(scope, receive, send))
    assert sent[0]["status"] == 413 and b"longer than its Content-Length" in sent[1]["body"]
    assert stored(tmp_path) == []


def test_a_post_of_a_thousand_files_is_refused_and_stores_none(serve, tmp_path):
    url, _ = serve(str(tmp_path / "no-model" / "final"), AppParams())
    files = [("files", (f"f{i}.wav", b"RIFF")) for i in range(1000)]
    answer = httpx.post(f"{url}/gradio_api/upload", files=files, timeout=60)
    assert answer.status_code == 413 and "1 file" in answer.text, (answer.status_code, answer.text)
    assert stored(tmp_path) == []
    one = httpx.post(f"{url}/gradio_api/upload", files=[("files", ("f.wav", b"RIFF"))], timeout=60)
    assert one.status_code == 200 and len(stored(tmp_path)) == 1  # one file a request is taken


# --- vanished clients and abandoned sessions ---


def listening(answer: str | None) -> bool:
    return answer is not None and answer.startswith("🎙️ Listening")


@pytest.mark.slow
def test_two_vanished_clients_do_not_block_a_third_past_the_idle_timeout(serve, tiny_repo, tmp_path):
    params = AppParams(backend="ctranslate2", live=LiveParams(max_sessions=2, idle_s=3.0))
    url, _ = serve(str(tiny_repo / "models/ct2"), params)
    refused = LiveClient(url)  # a chunk that is refused makes no session: both places stay free
    (tmp_path / "bad.wav").write_text("inte ljud", encoding="utf-8")
    assert refused.send(tmp_path / "bad.wav") == 200 and "not an audio file" in refused.answer(1)
    vanished = [LiveClient(url) for _ in range(2)]
    for client in vanished:  # each sends one chunk and is never heard from again
        assert client.send(wav(tmp_path / "c.wav", 0.5)) == 200
        assert listening(client.answer(1)), client.answers
    third = LiveClient(url)
    started = time.monotonic()
    assert third.send(wav(tmp_path / "c.wav", 0.5)) == 200
    first = third.answer(1, timeout=10)
    assert first is not None and "server is busy" in first, first  # told at once, not left waiting
    count = 1
    while not listening(third.answers[-1][0]) and time.monotonic() - started < 30:
        time.sleep(0.5)
        assert third.send(wav(tmp_path / "c.wav", 0.5)) == 200
        count += 1
        assert third.answer(count, timeout=10) is not None
    waited = time.monotonic() - started
    for client in [refused, *vanished, third]:
        client.close()
    assert listening(third.answers[-1][0]), third.answers
    assert waited < params.live.idle_s + 5.0, waited  # the idle sweep's timer freed the places


def live_workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "live-session" and t.is_alive()]


@pytest.mark.slow
def test_a_session_whose_client_leaves_stops_decoding_within_one_step(serve, tiny_repo, tmp_path, monkeypatch):
    from svwhisper.streaming import StreamingTranscriber, Update

    def slow_feed(self, samples):  # 1 s of work per second of audio: the 20 s sent take 20 s to decode
        time.sleep(len(samples) / SAMPLE_RATE)
        self.received += len(samples)
        return Update()

    monkeypatch.setattr(StreamingTranscriber, "feed", slow_feed)
    url, _ = serve(str(tiny_repo / "models/ct2"), AppParams(backend="ctranslate2"))
    client = LiveClient(url)
    client.heartbeat()
    for count in range(1, 5):  # 4 chunks of 4.9 s, sent faster than they decode
        assert client.send(wav(tmp_path / f"c{count}.wav", 4.9)) == 200
        assert client.answer(count) is not None
    assert live_workers(), "no session was made"
    client.leave()  # the tab is closed with some 18 s of audio still queued
    left = time.monotonic()
    while live_workers() and time.monotonic() - left < 20:
        time.sleep(0.05)
    ended = time.monotonic() - left
    client.close()
    assert not live_workers()
    # the page hears of the closed tab within a second or two (Gradio's heartbeat), then the worker ends its step
    assert ended < 5.0, f"the worker went on decoding for {ended:.1f} s after its client left"


# --- a stopped server leaves nothing in /tmp ---


def test_a_new_page_removes_the_output_roots_of_servers_that_are_gone(tmp_path, monkeypatch):
    import subprocess
    import sys
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"{app.ROOT_PREFIX}{int(gone.stdout)}-abc123"  # a server killed with -9
    (dead / "request-x").mkdir(parents=True)
    (dead / "request-x" / "transcript.srt").write_text("1\n")
    running = tmp_path / f"{app.ROOT_PREFIX}{os.getppid()}-def456"  # a server that still runs
    running.mkdir()
    outputs = app.OutputDirs()
    assert not dead.exists() and running.is_dir() and outputs.root.is_dir()
    assert outputs.root.name.startswith(f"{app.ROOT_PREFIX}{os.getpid()}-")
    outputs.close()


@pytest.mark.slow
def test_a_page_stopped_by_sigterm_removes_its_output_root(tiny_repo, tmp_path):
    import signal
    import subprocess
    import sys

    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path), "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    cmd = [sys.executable, "app.py", "--backend", "ctranslate2", "--model", str(tiny_repo / "models/ct2")]
    log = tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen([*cmd, "--port", str(port)], cwd=REPO, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None and "Running on" not in log.read_text():
            time.sleep(0.5)  # its own line, not /config: another server may have taken the port meanwhile
        assert server.poll() is None, log.read_text()[-2000:]
        roots = list(tmp_path.glob(f"{app.ROOT_PREFIX}{server.pid}-*"))
        assert len(roots) == 1, list(tmp_path.iterdir())
        server.send_signal(signal.SIGTERM)  # as systemd, docker stop and a Space's restart stop it
        assert server.wait(60) == 0, log.read_text()[-2000:]  # closed as after Ctrl-C, not killed
    finally:
        if server.poll() is None:
            server.kill()
    assert not roots[0].exists(), "the output root outlived the server"
