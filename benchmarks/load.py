"""Benchmark: the served page under many clients at once, polite and hostile, on 127.0.0.1 only.

Starts `app.py`'s page in its own process (so that its memory is measured alone) with the model, then
`--clients` threads each send `--requests` requests, cycling through a mix: a good clip and a 3-minute
recording through gradio_client (the queue), the same through raw HTTP to the queue's route
(/gradio_api/call/transcribe), a file that is not audio, an HLS playlist naming a private file outside
every upload dir, and direct POSTs to the routes that would skip the queue (/gradio_api/run/transcribe,
/gradio_api/api/transcribe). Beside them `--live-clients` drive the Live tab over HTTP as a browser does:
hogs sending chunks back to back, clients that send one chunk and vanish, and hostile ones sending an
hour-long FLAC, a 6 s chunk or a playlist as chunks; after the burst a new live client must be served
again once the idle sweep has freed the vanished clients' places. Then each upload kind once more, alone
on the idle queue (none may be busy there), and it waits past the page's cache window and counts the files
left in its temp dirs.

Classified per request: answered (a transcript, or a ⚠️ message for bad input), busy (the queue is full,
or the upload budget says try later: 429), refused (404 from a direct route), error (anything else: an
HTTP 500, a traceback, a playlist that was read; for a live chunk also no answer). Targets: errors == 0 and
live_errors == 0, a new live client served again within the idle timeout, the private file's words never
come back, peak RSS of the server below idle + 1 GB (one request at a time decodes: one recording's
samples and the model's activations, whatever the number of clients), files_left == 0.

    python benchmarks/load.py                                  # 32 clients x 4 requests on models/final
    python benchmarks/load.py --backend ctranslate2 --clients 16 --requests 2
    python benchmarks/load.py --model-dir DIR --long-s 60      # a shorter long recording

Needs `dvc repro` first (models/final, models/ct2). Every request loop is bounded in count and time.
The last line printed is one JSON object.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.backend import default_model_dir
from svwhisper.paramfile import load_params
from svwhisper.params import BACKENDS, Paths
from svwhisper.sources import Source, iter_clips

REPO = Path(__file__).resolve().parents[1]
KINDS = ("client_clip", "raw_run", "client_bad", "raw_call_clip", "client_playlist", "raw_api", "client_long")
SERVER = """
import sys, app
from svwhisper.params import AppParams, LiveParams
model_dir, backend, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
check, age, idle = float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
params = AppParams(backend=backend, live=LiveParams(idle_s=idle))
app.cached_backend(backend, model_dir)
demo = app.build_demo(model_dir, params, delete_cache=(check, age))
demo.launch(**app.launch_options(params, "127.0.0.1", port), quiet=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_inputs(work: Path, long_s: float) -> dict[str, Path]:
    """The files the clients send: a test clip, a recording of about `long_s` seconds, bad files, a playlist."""
    test = [c for c in iter_clips(Source(kind="commonvoice", path=str(REPO / "data/sample/sv-SE"), tsv="test"))]
    rng = np.random.default_rng(0)
    parts, length = [], 0
    for clip in test:
        if length >= long_s * SAMPLE_RATE:
            break
        samples = load_audio(clip.audio)
        parts += [np.zeros(int(rng.uniform(0.2, 1.5) * SAMPLE_RATE), np.float32), samples]
        length += len(parts[-2]) + len(samples)
    sf.write(work / "long.wav", np.concatenate(parts), SAMPLE_RATE)
    (work / "notes.wav").write_text("inte ljud", encoding="utf-8")
    private = work / "private"
    private.mkdir()
    secret = private / "secret.wav"
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE)
    sf.write(secret, tone.astype(np.float32), SAMPLE_RATE)
    playlist = work / "playlist.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2,\n{secret}\n#EXT-X-ENDLIST\n", encoding="utf-8")
    # live chunks: 0.5 s of a test clip at 48 kHz as a browser sends it, 6 s (over the 5 s limit), and an hour of
    # silence as a 0.5 MB FLAC (refused from its header)
    speech = np.interp(np.arange(0, len(samples), 1 / 3), np.arange(len(samples)), samples).astype(np.float32)
    sf.write(work / "chunk.wav", speech[:24000], 48000, subtype="PCM_16")
    sf.write(work / "six-s.wav", np.zeros(6 * 48000, np.float32), 48000, subtype="PCM_16")
    with sf.SoundFile(work / "hour.flac", "w", samplerate=SAMPLE_RATE, channels=1, format="FLAC") as out:
        for _ in range(60):
            out.write(np.zeros(60 * SAMPLE_RATE, np.float32))
    return {"clip": Path(test[0].audio), "long": work / "long.wav", "bad": work / "notes.wav", "playlist": playlist,
            "chunk": work / "chunk.wav", "six_s": work / "six-s.wav", "hour": work / "hour.flac"}  # fmt: skip


class Server:
    """app.py's page in a child process, with its temp dirs under `temp` and its RSS sampled."""

    def __init__(self, model_dir: str, backend: str, temp: Path, cache: tuple[float, float], live_idle_s: float):
        self.port, self.temp = free_port(), temp
        env = {
            **os.environ,
            "GRADIO_TEMP_DIR": str(temp / "gradio"),
            "TMPDIR": str(temp),
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
        cmd = [sys.executable, "-c", SERVER, model_dir, backend, str(self.port), *map(str, cache), str(live_idle_s)]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.peak_mb, self.stop = 0.0, threading.Event()

    def wait_ready(self, timeout: float = 300) -> float:
        """Seconds until the page answers; then its idle RSS in MB is `self.idle_mb`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"load: the server exited: {self.proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/config", timeout=5).status_code == 200:
                    self.idle_mb = self.rss_mb()
                    threading.Thread(target=self._sample, daemon=True).start()
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"load: the server did not answer within {timeout:g} s")

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024

    def _sample(self) -> None:
        while not self.stop.wait(0.1):
            try:
                self.peak_mb = max(self.peak_mb, self.rss_mb())
            except (OSError, StopIteration):
                return

    def files_left(self) -> list[str]:
        """Files in the page's upload cache and its request dirs (a library's one 51-byte `.ses` session file in
        the temp dir's top is the process's, not a request's)."""
        dirs = [self.temp / "gradio", *self.temp.glob("svwhisper-*")]
        return [str(p.relative_to(self.temp)) for d in dirs for p in d.rglob("*") if p.is_file()]

    def close(self) -> None:
        self.stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def busy_text(text: str) -> bool:
    text = text.lower()
    return "queue is full" in text or "try again" in text or "429" in text


def via_client(url: str, path: Path | None, timeout: float) -> tuple[str, str]:
    """(outcome, detail) of one request through gradio_client (the queue)."""
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False, httpx_kwargs={"timeout": timeout})
        job = client.submit(handle_file(str(path)) if path else None, api_name="/transcribe")
        text = job.result(timeout=timeout)[0]
    except Exception as err:  # noqa: BLE001 (each failure is classified, none stops the load)
        return ("busy" if busy_text(str(err)) else "error"), f"{type(err).__name__}: {err}"[:300]
    return "answered", text[:120]


def via_raw_call(url: str, path: Path, timeout: float) -> tuple[str, str]:
    """Upload, then POST /gradio_api/call/transcribe and read its event stream: the queue over plain HTTP."""
    with httpx.Client(base_url=url, timeout=timeout) as http:
        with path.open("rb") as handle:
            upload = http.post("/gradio_api/upload", files={"files": (path.name, handle)})
        if upload.status_code == 429:
            return "busy", upload.text
        if upload.status_code != 200:
            return "error", f"upload HTTP {upload.status_code}"
        data = [{"path": upload.json()[0], "meta": {"_type": "gradio.FileData"}}]
        call = http.post("/gradio_api/call/transcribe", json={"data": data})
        if call.status_code != 200:  # 503: Gradio's "queue is full" on this route
            return ("busy" if call.status_code in (429, 503) else "error"), f"call HTTP {call.status_code}: {call.text}"
        event = call.json()["event_id"]
        with http.stream("GET", f"/gradio_api/call/transcribe/{event}") as stream:
            kind, lines = "", []
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    lines.append(line[5:].strip())
                    break
        payload = lines[0] if lines else ""
        if kind == "complete":
            return "answered", payload[:120]
        return ("busy" if busy_text(payload) else "error"), f"{kind}: {payload}"[:300]


def via_direct_route(url: str, route: str, timeout: float) -> tuple[str, str]:
    answer = httpx.post(f"{url}/gradio_api/{route}/transcribe", json={"data": [None]}, timeout=timeout)
    if answer.status_code == 404:
        return "refused", "404"
    return "error", f"HTTP {answer.status_code}: {answer.text[:200]}"


class LiveClient:
    """One browser tab's Live tab over plain HTTP, as Gradio's page drives it: each chunk is uploaded, the first
    joins the queue as the `live` stream event, the next ones are posted to /gradio_api/stream/<event>; the
    page's answers arrive on the session's event stream. `heartbeat()` opens the tab's heartbeat, and
    `leave()` closes it (as a closed tab does: the page's unload runs)."""

    def __init__(self, url: str, timeout: float = 60.0):
        import uuid

        self.url, self.timeout = url, timeout
        self.session = uuid.uuid4().hex[:11]
        self.http = httpx.Client(base_url=url, timeout=timeout)
        config = self.http.get("/config").json()
        live = next(d for d in config["dependencies"] if d.get("api_name") == "live")
        self.fn_index, self.trigger = live["id"], live["targets"][0][0]
        self.event: str | None = None
        self.answers: list[tuple[str, float]] = []  # (status line, when), in order
        self.arrived = threading.Condition()
        self.stop_listening = threading.Event()
        self.listener = None

    def send(self, chunk: Path) -> int:
        """Upload `chunk` and hand it to the stream; the HTTP status of the first request that was refused, or 200."""
        with chunk.open("rb") as handle:
            upload = self.http.post("/gradio_api/upload", files={"files": (chunk.name, handle)})
        if upload.status_code != 200:
            return upload.status_code
        body = {"data": [{"path": upload.json()[0], "meta": {"_type": "gradio.FileData"}}], "fn_index": self.fn_index,
                "session_hash": self.session}  # fmt: skip
        if self.event is None:
            joined = self.http.post("/gradio_api/queue/join", json=body | {"trigger_id": self.trigger})
            if joined.status_code != 200:
                return joined.status_code
            self.event = joined.json()["event_id"]
            threading.Thread(target=self._listen, daemon=True).start()
            return 200
        return self.http.post(f"/gradio_api/stream/{self.event}", json=body | {"event_id": self.event}).status_code

    def _listen(self) -> None:
        try:
            with httpx.stream(
                "GET", f"{self.url}/gradio_api/queue/data", params={"session_hash": self.session}, timeout=None
            ) as stream:
                self.listener = stream
                for line in stream.iter_lines():
                    if self.stop_listening.is_set():
                        return
                    if not line.startswith("data:"):
                        continue
                    message = json.loads(line[5:])
                    output = message.get("output") or {}
                    if message.get("msg") in ("process_streaming", "process_completed") and output.get("data"):
                        with self.arrived:
                            self.answers.append((str(output["data"][0]), time.monotonic()))
                            self.arrived.notify_all()
                    elif message.get("msg") == "process_completed":  # an error: no data
                        with self.arrived:
                            self.answers.append((f"error: {output}"[:300], time.monotonic()))
                            self.arrived.notify_all()
        except Exception:  # noqa: BLE001 (closed under it by `close`, or the server went away: no more answers)
            return

    def answer(self, count: int, timeout: float | None = None) -> str | None:
        """The `count`-th answer (1 = the first), waiting up to `timeout` s for it; None if it has not come."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.answers) >= count, timeout or self.timeout)
            return self.answers[count - 1][0] if len(self.answers) >= count else None

    def heartbeat(self) -> None:
        """Open the tab's heartbeat: a GET that Gradio holds open while the tab lives (a raw socket, so that `leave`
        drops it at once)."""
        host, port = self.url.removeprefix("http://").split(":")
        self.heartbeat_socket = socket.create_connection((host, int(port)), timeout=self.timeout)
        request = f"GET /gradio_api/heartbeat/{self.session} HTTP/1.1\r\nHost: {host}\r\n\r\n"
        self.heartbeat_socket.sendall(request.encode())
        self.heartbeat_socket.recv(1024)  # the response's head: the heartbeat is on

    def leave(self) -> None:
        """Close the tab: the heartbeat's connection drops, the page's unload runs."""
        if getattr(self, "heartbeat_socket", None) is not None:
            self.heartbeat_socket.close()
            self.heartbeat_socket = None
        self.stop_listening.set()

    def close(self) -> None:
        """Stop streaming (as the page's Stop does), leave, and drop the connections."""
        if self.event is not None:
            try:
                self.http.post(f"/gradio_api/stream/{self.event}/close")
            except httpx.HTTPError:
                pass
        self.leave()
        if self.listener is not None:  # so that the server can close without waiting for this connection
            self.listener.close()
        self.http.close()


LIVE_KINDS = ("live_hog", "live_vanish", "live_oversized", "live_playlist")
LIVE_REFUSALS = {"live_oversized": "at most 5 s are taken", "live_playlist": "not an audio file"}


def live_outcome(answer: str | None, expected: str | None = None) -> tuple[str, str]:
    """(outcome, detail) of one live chunk's answer: answered (listening, or the message `expected`), busy, or error
    (no answer, an error event, anything else: a playlist that was read would show its words)."""
    if answer is None:
        return "error", "no answer"
    if "server is busy" in answer or "behind your speech" in answer:
        return "busy", answer[:120]
    if (expected and expected in answer) or (not expected and answer.startswith("🎙️ Listening")):
        return "answered", answer[:120]
    return "error", answer[:300]


def one_live_client(kind: str, url: str, inputs: dict[str, Path], chunks: int, timeout: float) -> list[tuple[str, str]]:
    """One live client's outcomes: a hog sends `chunks` chunks back to back, a vanishing one sends one and is never
    heard from again (no Stop, no closed tab), the hostile ones send an hour-long FLAC and a 6 s chunk, or a
    playlist, as chunks."""
    client = LiveClient(url, timeout)
    outcomes = []
    try:
        sends = {"live_hog": ["chunk"] * chunks, "live_vanish": ["chunk"], "live_oversized": ["hour", "six_s"],
                 "live_playlist": ["playlist"]}[kind]  # fmt: skip
        for count, name in enumerate(sends, start=1):
            status = client.send(inputs[name])
            if status != 200:
                outcomes.append(("busy" if status == 429 else "error", f"HTTP {status}"))
                break
            outcomes.append(live_outcome(client.answer(count, timeout), LIVE_REFUSALS.get(kind)))
    except (httpx.HTTPError, OSError) as err:
        outcomes.append(("error", f"{type(err).__name__}: {err}"[:300]))
    finally:
        if kind == "live_vanish":
            client.stop_listening.set()  # vanishes: its session is left for the idle sweep
        else:
            client.close()
    return outcomes


def one_request(kind: str, url: str, inputs: dict[str, Path], timeout: float) -> tuple[str, str]:
    if kind == "raw_run":
        return via_direct_route(url, "run", timeout)
    if kind == "raw_api":
        return via_direct_route(url, "api", timeout)
    if kind == "raw_call_clip":
        return via_raw_call(url, inputs["clip"], timeout)
    outcome, detail = via_client(url, inputs[kind.removeprefix("client_")], timeout)
    expected = {"client_bad": "not an audio file", "client_playlist": "not an audio file"}.get(kind)
    if outcome == "answered" and expected and expected not in detail:  # e.g. the playlist was followed and read
        return "error", detail
    return outcome, detail


def run_load(
    model_dir: str,
    backend: str,
    clients: int,
    requests: int,
    long_s: float,
    timeout: float,
    cache: tuple[float, float],
    live_clients: int = 8,
    live_chunks: int = 20,
    live_idle_s: float = 30.0,
) -> dict:
    """Start the server, run the clients, wait out the cache window; the figures as a dict."""
    with tempfile.TemporaryDirectory(prefix="svwhisper-load-") as scratch:
        work, temp = Path(scratch) / "inputs", Path(scratch) / "server-temp"
        work.mkdir()
        temp.mkdir()
        inputs = make_inputs(work, long_s)
        server = Server(model_dir, backend, temp, cache, live_idle_s)
        try:
            ready_s = server.wait_ready()
            jobs = [(c, KINDS[(c + r) % len(KINDS)]) for c in range(clients) for r in range(requests)]
            outcomes, latencies, examples = {}, [], {}
            deadline = time.monotonic() + timeout

            def work_of(job):
                started = time.monotonic()
                left = max(1.0, deadline - started)
                outcome, detail = one_request(job[1], server.url, inputs, left)
                return job[1], outcome, detail, time.monotonic() - started

            live_jobs = [LIVE_KINDS[c % len(LIVE_KINDS)] for c in range(live_clients)]
            live: dict[str, int] = {}

            def live_of(kind: str) -> list[tuple[str, str, str]]:
                left = max(1.0, deadline - time.monotonic())
                return [(kind, *o) for o in one_live_client(kind, server.url, inputs, live_chunks, min(60.0, left))]

            started = time.monotonic()
            with ThreadPoolExecutor(clients) as pool, ThreadPoolExecutor(max(1, live_clients)) as live_pool:
                live_results = live_pool.map(live_of, live_jobs)  # submitted now: they run beside the uploads
                for kind, outcome, detail, seconds in pool.map(work_of, jobs):
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
                    if outcome in ("answered", "refused"):
                        latencies.append(seconds)
                    examples.setdefault(f"{kind}:{outcome}", detail)
                for outcome_list in live_results:
                    for kind, outcome, detail in outcome_list:
                        live[outcome] = live.get(outcome, 0) + 1
                        examples.setdefault(f"{kind}:{outcome}", detail)
            load_s = time.monotonic() - started
            # The vanished live clients hold their places until the idle sweep: then a new client is served.
            swept_s = None
            waited = time.monotonic()
            while swept_s is None and time.monotonic() - waited < live_idle_s + 30:
                if one_live_client("live_hog", server.url, inputs, 1, 60.0)[0][0] == "answered":
                    swept_s = round(time.monotonic() - waited, 1)
                else:
                    time.sleep(1.0)
            # Then each kind once on the idle queue: under load any of them may be told "busy"; here none may be.
            quiet = {}
            for kind in KINDS:
                outcome, detail = one_request(kind, server.url, inputs, max(60.0, deadline - time.monotonic()))
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                quiet[kind] = outcome
                examples.setdefault(f"{kind}:{outcome}", detail)
            time.sleep(cache[0] + cache[1] + 1)  # past the cache window: everything a request left is due
            left = server.files_left()
        finally:
            server.close()
        stderr = server.proc.stderr.read() if server.proc.stderr else ""
    latencies.sort()
    return {
        "backend": backend,
        "model_dir": Path(model_dir).name,
        "clients": clients,
        "requests": len(jobs) + len(KINDS),
        "answered": outcomes.get("answered", 0),
        "busy": outcomes.get("busy", 0),
        "refused_direct_route": outcomes.get("refused", 0),
        "errors": outcomes.get("error", 0),
        "live_clients": live_clients,
        "live_chunks": sum(live.values()),
        "live_answered": live.get("answered", 0),
        "live_busy": live.get("busy", 0),
        "live_errors": live.get("error", 0),
        "live_idle_s": live_idle_s,
        "live_served_again_after_s": swept_s,
        "http_500_in_server_log": stderr.count(" 500 ") + stderr.count("Traceback"),
        "p50_latency_s": round(float(np.percentile(latencies, 50)), 2) if latencies else None,
        "p95_latency_s": round(float(np.percentile(latencies, 95)), 2) if latencies else None,
        "load_s": round(load_s, 1),
        "server_ready_s": round(ready_s, 1),
        "server_idle_rss_mb": round(server.idle_mb),
        "server_peak_rss_mb": round(server.peak_mb),
        "rss_growth_mb": round(server.peak_mb - server.idle_mb),
        "cache_window_s": list(cache),
        "quiet": quiet,
        "files_left": len(left),
        "files_left_examples": left[:5],
        "examples": examples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=BACKENDS, default="transformers")
    parser.add_argument("--model-dir", help="default: paths.final_model, or paths.exported for ctranslate2")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--long-s", type=float, default=180.0, help="length of the long recording (s)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for the whole load")
    parser.add_argument("--cache", type=float, nargs=2, default=(10.0, 60.0), help="the page's cache window (s)")
    parser.add_argument("--live-clients", type=int, default=8, help="live clients beside the upload clients")
    parser.add_argument("--live-chunks", type=int, default=20, help="chunks a hogging live client sends")
    parser.add_argument("--live-idle-s", type=float, default=30.0, help="the page's app.live.idle_s")
    args = parser.parse_args()
    model_dir = args.model_dir or str(
        REPO / default_model_dir(args.backend, load_params(Paths, "paths", REPO / "params.yaml"))
    )
    result = run_load(
        model_dir, args.backend, args.clients, args.requests, args.long_s, args.timeout, tuple(args.cache),
        args.live_clients, args.live_chunks, args.live_idle_s,
    )  # fmt: skip
    result["targets_met"] = (
        result["errors"] == 0
        and result["live_errors"] == 0
        and result["live_served_again_after_s"] is not None
        and result["http_500_in_server_log"] == 0
        and result["rss_growth_mb"] < 1024
        and result["files_left"] == 0
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
