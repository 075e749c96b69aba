"""Serve the final model in a Gradio page: microphone or upload in; transcript, timed segments, SRT and WebVTT out.

    python app.py                              # what dvc repro / dvc pull produced, on 127.0.0.1:7860
    python app.py --backend ctranslate2        # the int8 export (models/ct2): faster on a CPU
    python app.py --model you/svwhisper-small-sv   # a published model, by its Hub id (owner/name[@revision])
    python app.py --model models/base --port 8000 --host 0.0.0.0

`transcribe(audio)` is the whole logic and never raises on bad input: it returns a Result whose
`message` says what was wrong. The page only wires it to the widgets.
"""

import argparse
import atexit
import dataclasses
import functools
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from svwhisper.atomic import sweep_dead
from svwhisper.audio import SAMPLE_RATE, AudioError, AudioTooLong, load_audio, to_mono_16k
from svwhisper.backend import default_model_dir
from svwhisper.hub import Model, ModelError, looks_like_path, resolve
from svwhisper.live_sessions import LiveSession, LiveSessions
from svwhisper.longform import Segment, to_json, to_srt, to_vtt
from svwhisper.paramfile import load_params
from svwhisper.params import BACKENDS, AppParams, Paths
from svwhisper.periodic import run_every
from svwhisper.transcribe import load_backend, transcribe_samples
from svwhisper.upload_budget import BodyBudget

SILENCE_PEAK = 1e-3  # peak amplitude below which a recording is treated as silence


@dataclass(frozen=True)
class Result:
    text: str = ""
    segments: list[Segment] = field(default_factory=list)
    message: str = ""  # "" when it worked; else what was wrong with the input, in a line


@functools.lru_cache(maxsize=2)
def cached_backend(backend: str, model_dir: str):
    """The backend over `model_dir`, loaded once per process."""
    return load_backend(backend, model_dir)


@functools.lru_cache(maxsize=8)
def served_model(spec: str, backend: str) -> Model:
    """The model `spec` names (a folder or a Hub id, see svwhisper.hub), looked up once per process."""
    return resolve(spec, backend)


def model_spec(params: AppParams) -> str:
    """What the page serves: `app.model`, else the pipeline's own model for the backend."""
    return params.model or default_model_dir(params.backend, load_params(Paths, "paths"))


def to_samples(audio, params: AppParams) -> np.ndarray:
    """Gradio's (sample_rate, samples) tuple, a file path, or None -> 16 kHz mono float32, within the limits."""
    if audio is None:
        raise AudioError("no audio: record something or upload a file")
    if isinstance(audio, tuple):
        rate, samples = audio
        samples = to_mono_16k(samples, rate)
    else:
        path = Path(audio)
        if not path.is_file():
            raise AudioError(f"{path.name}: no such file")
        size_mb = path.stat().st_size / 1e6
        if size_mb == 0:
            raise AudioError(f"{path.name}: the file is empty")
        if size_mb > params.max_file_mb:
            raise AudioError(
                f"{path.name}: {size_mb:.0f} MB is more than the {params.max_file_mb:.0f} MB this page takes"
            )
        try:
            samples = load_audio(path, max_duration_s=params.max_duration_s, name=path.name)  # no server paths
        except AudioTooLong as err:
            over = spoken_length(err.duration_s) if err.duration_s is not None else f"over {spoken_length(err.limit_s)}"
            raise AudioError(
                f"the recording is {over} long; this page takes up to {spoken_length(params.max_duration_s)}"
            ) from None
    if len(samples) / SAMPLE_RATE > params.max_duration_s:
        length, limit = spoken_length(len(samples) / SAMPLE_RATE), spoken_length(params.max_duration_s)
        raise AudioError(f"the recording is {length} long; this page takes up to {limit}")
    return samples


def spoken_length(seconds: float) -> str:
    """4.2 -> "4 s", 600 -> "10 min", 10800 -> "3.0 h"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def transcribe(audio, model: Model | str | None = None, params: AppParams | None = None, progress=None) -> Result:
    """Transcribe `audio` (see to_samples) with `model` (a Model, a folder or a Hub id; default `model_spec`); bad
    input gives a Result with a message."""
    params = params or load_params(AppParams, "app")
    try:
        samples = to_samples(audio, params)
    except AudioError as err:
        return Result(message=str(err))
    if max(samples.max(), -samples.min()) < SILENCE_PEAK:  # no |samples| copy: a 3 h recording is 690 MB
        return Result(message="the recording is silent")
    spec = "" if isinstance(model, Model) else str(model or model_spec(params))
    try:
        model = model if isinstance(model, Model) else served_model(spec, params.backend)
    except ModelError as err:
        return Result(message=without_server_paths(str(err), spec))
    backend = cached_backend(params.backend, str(model.path))
    segments = transcribe_samples(samples, backend, params.batch_size, progress, params.decoding, params.chunker)
    if not segments:
        return Result(message="no speech recognised in the recording")
    return Result(text=" ".join(s.text for s in segments), segments=segments)


def without_server_paths(text: str, spec: str) -> str:
    """`text` with the model folder `spec` (as written, or resolved) shown by its name alone: a client learns
    what is missing, not where the server keeps it."""
    if not looks_like_path(spec):
        return text  # a Hub id is public
    folder = Path(spec).expanduser()
    for shown in sorted({str(folder.resolve()), str(folder), spec}, key=len, reverse=True):
        text = text.replace(shown, folder.name)
    return text


def page_outputs(result: Result, out_dir: Path) -> tuple[str, list[list], str | None, str | None, str | None]:
    """What the page shows: transcript (or ⚠️ message), segment rows (with each word's start), and the SRT,
    WebVTT and JSON (segments and word timings) files."""
    if result.message:
        return f"⚠️ {result.message}", [], None, None, None
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"srt": to_srt(result.segments), "vtt": to_vtt(result.segments), "json": to_json(result.segments)}
    for suffix, text in files.items():
        (out_dir / f"transcript.{suffix}").write_text(text, encoding="utf-8")
    rows = [[s.start_s, s.end_s, s.text, word_starts(s)] for s in result.segments]
    return result.text, rows, *(str(out_dir / f"transcript.{suffix}") for suffix in files)


def word_starts(segment: Segment) -> str:
    """`word (start s)` for each word of a segment, e.g. "Hej (0.12) då (0.40)"."""
    return " ".join(f"{w.text} ({w.start_s:.2f})" for w in segment.words)


ROOT_PREFIX = "svwhisper-page-"  # a page's output root in the temp dir: svwhisper-page-<pid>-<random>
ROOT_NAME = re.compile(rf"{ROOT_PREFIX}(\d+)-\w+")


class OutputDirs:
    """One temp dir per request for its subtitle files, under one root; none is removed by another request.

    Gradio copies a result's files into its own cache as soon as the request returns, so a dir is no
    longer needed after that; `sweep` (at each new request, and from `sweep_every`'s thread) removes the
    dirs older than `max_age_s` (an hour, Gradio's own cache window), and `close` removes the root (at
    exit). The root's name holds the server's pid: a new page removes the roots of servers that are no
    longer running (killed, or stopped by a signal before `close`). Safe with requests running at once.
    """

    def __init__(self, root: Path | None = None, max_age_s: float = 3600.0):
        if root is None:
            sweep_dead(Path(tempfile.gettempdir()), ROOT_NAME)  # roots of servers killed before `close`
            root = tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{os.getpid()}-")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s

    def new(self) -> Path:
        self.sweep()
        return Path(tempfile.mkdtemp(prefix="request-", dir=self.root))

    def sweep(self) -> None:
        """Remove the request dirs older than `max_age_s`."""
        cutoff = time.time() - self.max_age_s
        for old in self.root.iterdir() if self.root.is_dir() else []:
            try:
                if old.stat().st_mtime < cutoff:
                    shutil.rmtree(old, ignore_errors=True)
            except FileNotFoundError:  # another request removed it first
                pass

    def sweep_every(self, seconds: float) -> threading.Event:
        """Sweep from a daemon thread every `seconds`, also while no request comes; set the event to stop it."""
        return run_every(seconds, self.sweep, "output-sweeper")

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


LIVE_LINES_SHOWN = 40  # the live box shows the last lines; the downloads hold the whole session
STOP_WAIT_S = 60.0  # how long Stop waits for a session's worker to decode what it still holds
MAX_BEHIND_S = 30.0  # audio a session's worker may have waiting; past that, chunks are refused with a message


def shown_text(lines: list[str]) -> str:
    """The committed lines the page shows: the last LIVE_LINES_SHOWN of them."""
    return "\n".join((["…"] if len(lines) > LIVE_LINES_SHOWN else []) + lines[-LIVE_LINES_SHOWN:])


def busy_message(params: AppParams) -> str:
    count = f"{params.live.max_sessions} live session{'s' if params.live.max_sessions > 1 else ''}"
    return f"⚠️ The server is busy: it serves {count} at a time. Try again in a minute."


CACHE_CLEANUP = (600, 3600)  # Gradio deletes its cached uploads and results older than 1 h, checking every 10 min


def build_demo(model: Model | str, params: AppParams, delete_cache: tuple[float, float] = CACHE_CLEANUP):
    """The page serving `model` (a Model, or a folder or Hub id to resolve); one request at a time on the one loaded
    model, up to 16 waiting, and no way around the queue (api_open=False: Gradio's direct routes /run/<name> and
    /api/<name> are refused)."""
    import gradio as gr

    if isinstance(model, Model):
        label = model.label
    else:
        try:
            model = served_model(str(model), params.backend)
            label = model.label
        except ModelError:  # each request then says what is missing (see transcribe); never a server path
            label = Path(model).name if looks_like_path(str(model)) else str(model)

    outputs = OutputDirs(max_age_s=delete_cache[1])  # (check every, remove older than) seconds, as Gradio's
    stop_sweeping = outputs.sweep_every(delete_cache[0])
    atexit.register(outputs.close)
    atexit.register(stop_sweeping.set)

    def handle(audio, progress=gr.Progress()):  # noqa: B008 (Gradio injects the tracker through this default)
        def report(done: int, total: int) -> None:
            progress(done / total, desc=f"{done} of {total} chunks")

        result = transcribe(audio, model, params, report)
        return page_outputs(result, outputs.new())

    sessions = LiveSessions(params.live.max_sessions, params.live.idle_s)
    stop_idle_sweep = sessions.sweep_every(min(5.0, params.live.idle_s / 2))
    atexit.register(stop_idle_sweep.set)

    def new_session() -> LiveSession:
        resolved = model if isinstance(model, Model) else served_model(str(model), params.backend)
        return LiveSession(cached_backend(params.backend, str(resolved.path)), params)

    def live_chunk(chunk: str | None, request: gr.Request):
        """A chunk from the microphone (a file in Gradio's upload cache): (status, committed lines, tentative
        words) as they stand. A chunk is decoded by svwhisper.audio before any session is made for it."""
        if chunk is None:
            return gr.skip(), gr.skip(), gr.skip()
        if not sessions.admits(request.session_hash):
            return busy_message(params), gr.skip(), gr.skip()
        try:
            rate, samples = sessions.decode(chunk)
            session = sessions.start(request.session_hash, new_session)
        except AudioError as err:
            return f"⚠️ {err}", gr.skip(), gr.skip()
        except ModelError as err:
            return f"⚠️ {without_server_paths(str(err), str(model))}", gr.skip(), gr.skip()
        if session is None:
            return busy_message(params), gr.skip(), gr.skip()
        if session.failure:
            return f"⚠️ {session.failure}", gr.skip(), gr.skip()
        if session.queued_s >= params.live.max_session_s:
            limit = spoken_length(params.live.max_session_s)
            return f"⚠️ A live session lasts up to {limit}: stop, and start again.", gr.skip(), gr.skip()
        behind = session.queued_s - session.live.received_s
        if behind > MAX_BEHIND_S:  # the worker cannot keep up: no more audio queued than this
            late = f"⚠️ The server is {behind:.0f} s behind your speech: stop, and try again later."
            return late, gr.skip(), gr.skip()
        try:
            session.feed(rate, samples)
        except AudioError as err:
            return f"⚠️ {err}", gr.skip(), gr.skip()
        lines, words = session.shown_now()
        heard = f"🎙️ Listening: {spoken_length(session.queued_s)} heard"
        heard += f", {behind:.0f} s behind" if behind >= 2 else ""
        return heard, shown_text(lines), " ".join(w.text for w in words)

    def live_stop(request: gr.Request):
        """Recording stopped: the rest committed, and the session's SRT, WebVTT and JSON."""
        session = sessions.end(request.session_hash)
        if session is None:
            return gr.skip(), gr.skip(), "", None, None, None
        if not session.stop(STOP_WAIT_S):
            session.cancel()
            return "⚠️ The session is still being transcribed: its subtitles are lost.", gr.skip(), "", None, None, None
        if session.failure:
            return f"⚠️ {session.failure}", gr.skip(), "", None, None, None
        segments = session.live.segments
        if not segments:
            return "⚠️ No speech recognised.", "", "", None, None, None
        _, _, *files = page_outputs(Result(text=" ".join(s.text for s in segments), segments=segments), outputs.new())
        return "Stopped: the whole session's subtitles are below.", shown_text(session.live.lines()), "", *files

    def leave(request: gr.Request) -> None:
        """The client closed the page: its live session ends, its queued audio dropped (what it said is not kept)."""
        if session := sessions.end(request.session_hash):
            session.cancel()

    with gr.Blocks(title="svwhisper: Swedish speech recognition", delete_cache=delete_cache) as demo:
        gr.Markdown(f"# svwhisper\nSwedish speech to text with `{label}` ({params.backend}).")
        with gr.Tab("Recording"):
            gr.Markdown(
                f"Recordings of any length up to {spoken_length(params.max_duration_s)}: "
                "wav, mp3, flac, ogg, m4a, webm."
            )
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Swedish speech")
            button = gr.Button("Transcribe", variant="primary")
            transcript = gr.Textbox(label="Transcript", lines=6, elem_id="transcript")
            segments = gr.Dataframe(
                headers=["start (s)", "end (s)", "text", "words (start s)"], label="Segments", interactive=False
            )
            with gr.Row():
                srt = gr.File(label="SRT subtitles", elem_id="srt")
                vtt = gr.File(label="WebVTT subtitles", elem_id="vtt")
                words = gr.File(label="JSON with word timings", elem_id="json")
        with gr.Tab("Live"):
            gr.Markdown(
                "Live captions: words appear while you speak. Committed text is final; the tentative words may "
                f"still change. Up to {spoken_length(params.live.max_session_s)} a session; the subtitles of "
                "the whole session come when you stop."
            )
            microphone = gr.Audio(  # chunks as files: svwhisper.audio decodes them, never Gradio (pydub, ffmpeg)
                sources=["microphone"], type="filepath", streaming=True, label="Microphone", elem_id="live-audio"
            )
            status = gr.Markdown(elem_id="live-status")
            committed = gr.Textbox(label="Committed", lines=8, max_lines=LIVE_LINES_SHOWN, elem_id="live-committed")
            tentative = gr.Textbox(label="Tentative (may still change)", elem_id="live-tentative")
            with gr.Row():
                live_files = [
                    gr.File(label="SRT subtitles", elem_id="live-srt"),
                    gr.File(label="WebVTT subtitles", elem_id="live-vtt"),
                    gr.File(label="JSON with word timings", elem_id="live-json"),
                ]
        button.click(handle, inputs=audio, outputs=[transcript, segments, srt, vtt, words], api_name="transcribe")
        microphone.stream(
            live_chunk,
            inputs=microphone,
            outputs=[status, committed, tentative],
            time_limit=int(params.live.max_session_s) + 60,
            concurrency_limit=None,  # a stream waiting for its next chunk holds no slot: LiveSessions bounds them
            show_progress="hidden",
            api_name="live",
        )
        microphone.stop_recording(live_stop, outputs=[status, committed, tentative, *live_files], api_name=False)
        demo.unload(leave)
    demo.queue(default_concurrency_limit=1, max_size=16, api_open=False)
    return demo


def main() -> None:
    params = load_params(AppParams, "app")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=BACKENDS, default=params.backend)
    parser.add_argument(
        "--model",
        "--model-dir",
        default=params.model,
        help="a model folder or a Hub id (owner/name[@revision]); default: app.model, else paths.final_model "
        "(paths.exported for ctranslate2)",
    )
    parser.add_argument("--host", default=params.host, help="127.0.0.1 by default; 0.0.0.0 exposes the page")
    parser.add_argument("--port", type=int, default=params.port)
    args = parser.parse_args()
    params = dataclasses.replace(params, backend=args.backend, model=args.model or "")
    try:
        model = served_model(model_spec(params), args.backend)
    except ModelError as err:
        raise SystemExit(f"app: {err}") from None
    cached_backend(args.backend, str(model.path))  # load before serving, so the first request is not slow
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped like Ctrl-C: the server closes, atexit runs
    try:
        build_demo(model, params).launch(**launch_options(params, args.host, args.port))
    except KeyboardInterrupt:  # stopped while it was still starting: atexit removes what it made all the same
        pass


def launch_options(params: AppParams, host: str, port: int) -> dict:
    """`Blocks.launch` keywords: where to listen, the upload size and storage limits."""
    from starlette.middleware import Middleware

    budget = Middleware(BodyBudget, limit_bytes=int(params.max_upload_storage_mb * 1e6), window_s=sum(CACHE_CLEANUP))
    return {
        "server_name": host,
        "server_port": port,
        "share": False,
        "max_file_size": f"{params.max_file_mb:.0f}mb",
        "app_kwargs": {"middleware": [budget]},
    }


if __name__ == "__main__":
    main()
