"""Live captions: the commit policy; the streaming transcriber on the six-step Whisper base and the tiny model (both
backends); `svwhisper live` from a pipe and a file; the page's live sessions."""

import dataclasses
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import MAX_SIX_STEP_CER, REPO, clip_cer, sample_rows
from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.params import LiveParams
from svwhisper.streaming import StreamingTranscriber, agreed_prefix, past_committed, pcm_pieces, spread
from svwhisper.timing import Word


def words(text: str, start: float = 0.0) -> list[Word]:
    return [Word(start + i * 0.3, start + i * 0.3 + 0.3, w) for i, w in enumerate(text.split())]


def test_local_agreement_commits_what_two_hypotheses_share_from_the_start():
    assert agreed_prefix(words("vi ses i morgon"), words("vi ses i mörker")) == 3
    assert agreed_prefix(words("Vi ses,"), words("vi ses")) == 2  # case and punctuation are not a change of mind
    assert agreed_prefix(words("vi ses"), []) == 0  # one hypothesis alone commits nothing
    assert agreed_prefix(words("där ses vi"), words("vi ses där")) == 0


@pytest.mark.parametrize(
    "hypothesis, committed, after_cut, expected",
    [
        ("vi ses i morgon bitti", "vi ses", "", "i morgon bitti"),
        ("vi ses i morgon", "", "", "vi ses i morgon"),
        ("vises i morgon", "vi ses", "", "i morgon"),  # two committed words came back merged
        ("vi s es i morgon", "vi ses", "", "i morgon"),  # ... or split
        ("ses i morgon", "", "ses", "i morgon"),  # the word the buffer was cut after, heard again
        ("ses ses i morgon", "", "vi", "ses ses i morgon"),
    ],
)
def test_the_words_past_those_committed_are_found_by_count_then_by_the_last_word(
    hypothesis, committed, after_cut, expected
):
    got = past_committed(words(hypothesis), words(committed), after_cut)
    assert " ".join(w.text for w in got) == expected


def test_words_without_alignment_are_spread_over_the_audio():
    got = spread("ett två tre fyra", 1.0, 3.0)
    assert [(w.start_s, w.end_s) for w in got] == [(1.0, 1.5), (1.5, 2.0), (2.0, 2.5), (2.5, 3.0)]
    assert spread("", 1.0, 2.0) == []


def test_pcm_from_a_pipe_keeps_a_sample_split_across_reads():
    import io

    samples = np.array([0, 1000, -1000, 32767, -32768], dtype="<i2")
    raw = samples.tobytes()

    class Pipe(io.RawIOBase):  # returns 3 bytes a read: every other sample is split between two reads
        def __init__(self):
            self.data = raw

        def read1(self, n):
            out, self.data = self.data[:3], self.data[3:]
            return out

    got = np.concatenate(list(pcm_pieces(Pipe())))
    assert np.array_equal(np.round(got * 32768).astype(int), samples.astype(int))


def recording(clips: list[Path], pause_s: float = 1.0, lead_s: float = 0.5) -> tuple[np.ndarray, list[int]]:
    """The clips with pauses between them: (samples, end sample of each clip)."""
    parts, ends, length = [np.zeros(int(lead_s * SAMPLE_RATE), np.float32)], [], int(lead_s * SAMPLE_RATE)
    for clip in clips:
        audio = load_audio(clip)
        parts += [audio, np.zeros(int(pause_s * SAMPLE_RATE), np.float32)]
        length += len(audio)
        ends.append(length)
        length += int(pause_s * SAMPLE_RATE)
    return np.concatenate(parts), ends


def feed_in_pieces(live: StreamingTranscriber, samples: np.ndarray, piece_s: float) -> list[tuple[int, Word]]:
    """(samples fed when it was committed, word) for every committed word, the rest committed at the end."""
    piece, out = max(1, int(piece_s * SAMPLE_RATE)), []
    for first in range(0, len(samples), piece):
        update = live.feed(samples[first : first + piece])
        out += [(live.received, w) for w in update.committed]
    out += [(live.received, w) for w in live.finish().committed]
    return out


def load(repo: Path, backend: str):
    from svwhisper.transcribe import load_backend

    return load_backend(backend, repo / ("models/final" if backend == "transformers" else "models/ct2"))


BACKENDS = ["transformers", "ctranslate2"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_each_phrase_is_committed_while_the_next_is_still_being_spoken(pretrained_repo, backend):
    from svwhisper.transcribe import transcribe_samples

    rows = sample_rows(3)  # clips the six-step Whisper base saw
    samples, ends = recording([pretrained_repo / "data/sample/sv-SE/clips" / name for _, name, _ in rows])
    model = load(pretrained_repo, backend)
    live = StreamingTranscriber(model, LiveParams())
    committed = feed_in_pieces(live, samples, 0.1)
    assert len(live.segments) == 3, [s.text for s in live.segments]  # one per phrase: the pauses close them
    for segment, (_, _, sentence) in zip(live.segments, rows, strict=True):
        assert clip_cer(sentence, segment.text) <= MAX_SIX_STEP_CER, (sentence, segment.text)
    offline = " ".join(s.text for s in transcribe_samples(samples, model))
    assert clip_cer(offline, " ".join(s.text for s in live.segments)) <= 0.1, offline  # what an upload would give
    # the first phrase's words were final before the second phrase had ended, within a second of its own end
    first_done = max(fed for fed, w in committed if w in live.segments[0].words)
    assert first_done < ends[1] and first_done - ends[0] <= SAMPLE_RATE, (first_done, ends)
    starts = [w.start_s for s in live.segments for w in s.words]
    assert starts == sorted(starts) and starts[0] >= 0.3  # in order, and not before the first voice
    assert live.peak_buffer <= live.window + live.step


@pytest.fixture(scope="module", params=BACKENDS)
def tiny(request, tiny_repo):
    return load(tiny_repo, request.param)


@pytest.mark.slow
def test_the_pieces_the_audio_comes_in_do_not_change_what_is_committed(tiny, memorised):
    samples, _ = recording([clip for clip, _ in memorised[:3]], pause_s=0.6)
    texts = []
    for piece_s in (0.1, 1.37, len(samples) / SAMPLE_RATE):
        live = StreamingTranscriber(tiny, LiveParams())
        feed_in_pieces(live, samples, piece_s)
        texts.append([s.text for s in live.segments])
    assert len(texts[0]) == 3 and texts[0] == texts[1] == texts[2]  # the same machine: exactly the same


@pytest.mark.slow
def test_silence_noise_and_a_tone_give_no_words_and_never_reach_the_model(tiny):
    n = 30 * SAMPLE_RATE
    rng = np.random.default_rng(0)
    quiet = {
        "silence": np.zeros(n, np.float32),
        "noise": rng.normal(0, 0.003, n).astype(np.float32),
        "tone": (0.1 * np.sin(2 * np.pi * 440 * np.arange(n) / SAMPLE_RATE)).astype(np.float32),
    }
    for name, samples in quiet.items():
        live = StreamingTranscriber(tiny, LiveParams())
        assert feed_in_pieces(live, samples, 0.25) == [], name
        assert live.decodes == 0 and live.peak_buffer <= live.step + live.pad + 1, name


class SaysNoSpeech:
    """`backend` answering as a model that learnt non-speech does: its own words, each chunk scored as "no speech"
    (P(no speech) 0.99) with improbable words (mean log-probability -3), the no-speech rule's two conditions."""

    def __init__(self, backend):
        self.backend = backend

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def generate(self, encoded, rows, temperature, beam_size):
        found = self.backend.generate(encoded, rows, temperature, beam_size)
        return [dataclasses.replace(c, avg_logprob=-3.0, no_speech_prob=0.99) for c in found]


@pytest.mark.slow
def test_without_vad_noise_reaches_the_model_every_step_and_the_no_speech_rule_keeps_it_silent(tiny):
    """VAD off: every step decodes the buffer (with it on, `test_silence_noise_and_a_tone...` shows none does), the
    tiny model (trained on speech alone) writes words for the noise, and the same model scored as saying "no speech"
    puts none on screen, tentative or committed. (How often the committed default says so on noise:
    `benchmarks/robustness.py`'s live measures.)"""
    from svwhisper.nonspeech import generate

    clips = [s for _, kind, s in generate("test", 12, 7, 4.0, full_window=True) if kind in ("white", "hum")]
    samples = np.concatenate(clips)
    live = StreamingTranscriber(tiny, LiveParams(vad=False))
    assert feed_in_pieces(live, samples, 0.1)  # what the rule must withhold
    assert live.decodes >= 16 and live.peak_buffer <= live.window + live.step
    silent = StreamingTranscriber(SaysNoSpeech(tiny), LiveParams(vad=False))
    piece, shown = SAMPLE_RATE // 10, []
    for first in range(0, len(samples), piece):
        update = silent.feed(samples[first : first + piece])
        shown += [*update.committed, *update.tentative]
    assert shown == [] and silent.finish().committed == () and silent.lines() == []
    assert silent.decodes == live.decodes  # decoded just as often: the rule, not a skipped step, kept it silent


@pytest.mark.slow
def test_speech_without_pauses_is_cut_at_committed_words_and_the_buffer_stays_bounded(tiny, memorised):
    clips = [load_audio(clip) for clip, _ in memorised]
    samples = np.concatenate(clips * 3)  # about a minute of speech with no pause longer than a clip's own
    live = StreamingTranscriber(tiny, LiveParams())
    committed = feed_in_pieces(live, samples, 0.1)
    assert live.peak_buffer <= live.window + live.step  # never more than the window and a step of audio
    assert len(committed) >= 3 * len(memorised)  # words kept coming, cut after cut
    starts = [w.start_s for _, w in committed]
    assert starts == sorted(starts)


@pytest.mark.slow
def test_live_cli_reads_pcm_from_a_pipe_and_a_file_in_real_time(pretrained_repo, tmp_path):
    rows = sample_rows(3)
    samples, _ = recording([pretrained_repo / "data/sample/sv-SE/clips" / name for _, name, _ in rows])
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    model = ["--model", str(pretrained_repo / "models/ct2"), "--backend", "ctranslate2"]
    cli = [sys.executable, "-m", "svwhisper.cli", "live"]
    piped = subprocess.run(
        [*cli, "-", *model, "--srt", str(tmp_path / "live.srt")], input=pcm, capture_output=True, cwd=REPO
    )
    assert piped.returncode == 0, piped.stderr.decode()[-2000:]
    lines = piped.stdout.decode().splitlines()
    assert lines and all(re.fullmatch(r"\[ *\d+\.\d\d -> +\d+\.\d\d\] \S.*", line) for line in lines), lines
    text = " ".join(line.split("] ", 1)[1] for line in lines)
    assert clip_cer(" ".join(s for _, _, s in rows), text) <= MAX_SIX_STEP_CER, text
    assert (tmp_path / "live.srt").read_text(encoding="utf-8").count(" --> ") == 3

    import soundfile as sf

    sf.write(tmp_path / "three.wav", samples, SAMPLE_RATE)
    started = time.monotonic()
    proc = subprocess.Popen([*cli, str(tmp_path / "three.wav"), "--realtime", *model], stdout=subprocess.PIPE, cwd=REPO)
    first_line = proc.stdout.readline()
    first_at = time.monotonic() - started
    rest = proc.stdout.read()
    took = time.monotonic() - started
    assert proc.wait(timeout=60) == 0
    duration = len(samples) / SAMPLE_RATE
    assert first_line.startswith(b"[") and took >= duration * 0.95, (first_line, took)
    assert first_at < took - 2.0, (first_at, took)  # the first phrase was printed while the rest still played
    assert rest.count(b"\n") >= 1


@pytest.mark.parametrize("flag, value", [("--step-s", "5"), ("--live-beam-size", "0")])
def test_a_bad_live_flag_names_itself(flag, value):
    cli = [sys.executable, "-m", "svwhisper.cli", "live", "-", flag, value]
    proc = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, input="")
    assert proc.returncode != 0 and f"live: {flag} must be" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


class FakeSession:  # what LiveSessions needs of a session: when it was last fed, its worker, a way to cancel it
    def __init__(self, now: float):
        self.last_seen, self.cancelled, self.alive = now, False, True

    def cancel(self) -> None:
        self.cancelled = True


def test_live_sessions_are_one_per_client_bounded_and_hold_their_place_until_their_worker_exits():
    import app

    now = [0.0]
    sessions = app.LiveSessions(limit=2, idle_s=30.0, clock=lambda: now[0])
    a = sessions.start("a", lambda: FakeSession(now[0]))
    assert sessions.start("a", lambda: FakeSession(now[0])) is a  # the same tab keeps its session
    b = sessions.start("b", lambda: FakeSession(now[0]))
    assert sessions.start("c", lambda: FakeSession(now[0])) is None and not sessions.admits("c")  # busy
    assert sessions.admits("a")  # a client with a session is always taken
    assert sessions.end("b") is b and sessions.end("b") is None
    assert sessions.start("c", lambda: FakeSession(now[0])) is None  # b's worker still decodes: its place is held
    b.alive = False
    c = sessions.start("c", lambda: FakeSession(now[0]))
    assert c is not None  # b's worker has exited: its place is free
    now[0] = 31.0  # a and c sent nothing for 31 s: the sweep cancels both
    sessions.sweep()
    assert a.cancelled and c.cancelled and sessions.sessions == {}
    assert sessions.start("d", lambda: FakeSession(now[0])) is None  # until their workers exit
    a.alive = c.alive = False
    assert sessions.start("d", lambda: FakeSession(now[0])) is not None
    assert "2 live sessions" in app.busy_message(app.AppParams())
