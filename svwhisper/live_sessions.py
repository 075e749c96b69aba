"""The page's live captions: a browser's microphone chunks, checked and decoded as strictly as an upload, and the
sessions that turn them into committed text, bounded in number, in time and in the work they leave behind.

A chunk arrives as a file in Gradio's upload cache. `LiveSessions.decode` takes it only if it is small enough
to be a 5 s chunk (MAX_CHUNK_BYTES), of an allowed container, and says no more than MAX_CHUNK_S in its header;
it is decoded by svwhisper.audio (fixed demuxer, no protocols, running cap), a few at a time. Gradio never
decodes it. A session counts against `max_sessions` until its worker thread has exited.
"""

import queue
import threading
import time
from pathlib import Path

import numpy as np
import soxr

from svwhisper.audio import SAMPLE_RATE, AudioError, AudioTooLong, load_audio_at_own_rate, to_float_mono
from svwhisper.params import AppParams
from svwhisper.periodic import run_every
from svwhisper.streaming import StreamingTranscriber
from svwhisper.timing import Word

MIN_RATE, MAX_RATE = 8000, 192000  # sample rates a live chunk may have, Hz
MAX_CHUNK_S = 5.0  # the longest live chunk taken (a browser sends 0.1-0.5 s)
MAX_CHUNK_CHANNELS = 2
# the largest file that can hold MAX_CHUNK_S: uncompressed float32 at MAX_RATE, stereo, and a header's margin
MAX_CHUNK_BYTES = int(MAX_CHUNK_S * MAX_RATE * MAX_CHUNK_CHANNELS * 4) + 64 * 1024
DECODES_AT_ONCE = 4  # chunks decoded at the same time, whatever the number of clients: memory stays bounded


def check_chunk(rate: int, samples: np.ndarray) -> None:
    """AudioError when a chunk of `samples` at `rate` Hz is one a browser never sends."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"a microphone chunk at {rate} Hz: {MIN_RATE}-{MAX_RATE} Hz are taken")
    if len(samples) > MAX_CHUNK_S * rate:  # a client sending hours is refused
        raise AudioError(f"a microphone chunk of {len(samples) / rate:.0f} s: at most {MAX_CHUNK_S:.0f} s are taken")


def read_chunk(path: str | Path) -> tuple[int, np.ndarray]:
    """A microphone chunk's file -> (rate in Hz, mono float32 samples at that rate); AudioError naming the file by
    its own name when it is too big, not audio this reads, over MAX_CHUNK_S, or at a rate a browser never sends."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        raise AudioError(f"{path.name}: no such file") from None
    if size > MAX_CHUNK_BYTES:
        raise AudioError(f"a microphone chunk of {size / 1e6:.1f} MB: a {MAX_CHUNK_S:.0f} s chunk is smaller")
    try:
        rate, samples = load_audio_at_own_rate(path, MAX_CHUNK_S, name=path.name)
    except AudioTooLong:
        raise AudioError(
            f"a microphone chunk of over {MAX_CHUNK_S:.0f} s: at most {MAX_CHUNK_S:.0f} s are taken"
        ) from None
    check_chunk(rate, samples)
    return rate, samples


class LiveSession:
    """One client's live captions. Its microphone's chunks (any rate, int or float, mono or not) are resampled as one
    stream to 16 kHz and queued; a worker thread of its own feeds them to a StreamingTranscriber, a step at a time,
    and publishes what is committed. `feed` never waits for the model: Gradio hands a stream handler only the latest
    chunk, and drops those that arrive while it is busy, so a handler that decoded would lose the speech it did not
    hear."""

    def __init__(self, backend, params: AppParams, clock=time.monotonic):
        self.live = StreamingTranscriber(backend, params.live, params.decoding)
        self.step = max(1, int(params.live.step_s * SAMPLE_RATE))  # the worker's unit of work, samples
        self.clock, self.last_seen = clock, clock()
        self.rate, self.resampler = None, None
        self.queued_s = 0.0  # audio taken so far, seconds
        self.pending: queue.Queue[np.ndarray | None] = queue.Queue()
        self.cancelled = threading.Event()
        self.lock = threading.Lock()
        self.shown: tuple[list[str], tuple[Word, ...]] = ([], ())  # (committed lines, tentative words), published
        self.failure = ""
        self.worker = threading.Thread(target=self._work, name="live-session", daemon=True)
        self.worker.start()

    def feed(self, rate: int, samples: np.ndarray) -> None:
        """Queue a chunk of the microphone's audio (at once: the model runs in the worker)."""
        self.last_seen = self.clock()
        if np.asarray(samples).size == 0:
            return
        check_chunk(rate, samples)
        samples = to_float_mono(samples)
        if rate != self.rate:  # the first chunk (or a microphone that changed): a new resampler
            self.rate = rate
            self.resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, "float32", "HQ")
        if self.resampler is not None:
            samples = self.resampler.resample_chunk(samples)
        self.queued_s += len(samples) / SAMPLE_RATE
        self.pending.put(samples)

    def shown_now(self) -> tuple[list[str], tuple[Word, ...]]:
        """The committed lines and the tentative words as the worker last published them."""
        with self.lock:
            return self.shown

    @property
    def alive(self) -> bool:
        return self.worker.is_alive()

    def stop(self, timeout_s: float | None = None) -> bool:
        """End the stream: the worker decodes what is queued, commits the rest and stops. Waits up to `timeout_s`
        (None: as long as it takes; 0: not at all); whether the worker has finished."""
        self.pending.put(None)
        self.worker.join(timeout_s)
        return not self.worker.is_alive()

    def cancel(self) -> None:
        """End the stream without its queued audio: the worker stops after the step it is in (nothing is
        committed); waits for nothing."""
        self.cancelled.set()
        self.pending.put(None)

    def _work(self) -> None:
        try:
            while (piece := self.pending.get()) is not None:
                for start in range(0, len(piece), self.step):  # a step at a time, so that a cancel takes at once
                    if self.cancelled.is_set():
                        return
                    update = self.live.feed(piece[start : start + self.step])
                    self._publish(update.tentative)
            if not self.cancelled.is_set():
                self.live.finish()
                self._publish(())
        except Exception as err:  # noqa: BLE001 (any failure ends this session only; the page says so)
            self.failure = f"the live session failed: {err}"

    def _publish(self, tentative: tuple[Word, ...]) -> None:
        lines = self.live.lines()
        with self.lock:
            self.shown = (lines, tentative)


class LiveSessions:
    """The page's live sessions: one per client (a browser tab: Gradio's session hash), at most `limit` at once,
    counting those that have ended but whose worker still runs. A session ends when its client stops recording or
    leaves the page, or when it has sent nothing for `idle_s` (swept by `sweep_every`'s timer, also while no chunk
    comes); an abandoned one is cancelled. Safe with requests running at once."""

    def __init__(self, limit: int, idle_s: float, clock=time.monotonic):
        self.limit, self.idle_s, self.clock = limit, idle_s, clock
        self.sessions: dict[str, LiveSession] = {}
        self.ending: list[LiveSession] = []  # ended, worker still running: they keep their place
        self.lock = threading.Lock()
        self.decoding = threading.BoundedSemaphore(DECODES_AT_ONCE)

    def _busy(self) -> int:
        self.ending = [s for s in self.ending if s.alive]
        return len(self.sessions) + len(self.ending)

    def admits(self, client: str) -> bool:
        """Whether a chunk of `client`'s would get a session now (before it is decoded)."""
        with self.lock:
            return client in self.sessions or self._busy() < self.limit

    def start(self, client: str, new) -> LiveSession | None:
        """`client`'s session, made by `new()` when it has none; None when `limit` others hold places (the server is
        busy)."""
        self.sweep()
        with self.lock:
            if client not in self.sessions:
                if self._busy() >= self.limit:
                    return None
                self.sessions[client] = new()
            return self.sessions[client]

    def end(self, client: str) -> LiveSession | None:
        """`client`'s session, taken out (it holds its place until its worker exits); None when it has none."""
        with self.lock:
            session = self.sessions.pop(client, None)
            if session is not None:
                self.ending.append(session)
            return session

    def decode(self, path: str | Path) -> tuple[int, np.ndarray]:
        """read_chunk, at most DECODES_AT_ONCE at a time."""
        with self.decoding:
            return read_chunk(path)

    def sweep(self) -> None:
        """Cancel the sessions that have sent nothing for `idle_s`."""
        now = self.clock()
        with self.lock:
            idle = [c for c, s in self.sessions.items() if now - s.last_seen > self.idle_s]
        for client in idle:
            if session := self.end(client):
                session.cancel()

    def sweep_every(self, seconds: float) -> threading.Event:
        """Sweep from a daemon thread every `seconds`; set the event to stop it."""
        return run_every(seconds, self.sweep, "live-sweeper")
