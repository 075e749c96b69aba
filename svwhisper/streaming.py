"""Live transcription: 16 kHz samples in as they arrive, committed words (final) and tentative words (may change) out.

    arecord -f S16_LE -r 16000 -c 1 | svwhisper live -          # raw 16 kHz s16le mono PCM from stdin
    svwhisper live talk.mp3 --realtime --srt talk.srt           # a file, played at the speed it was spoken
    svwhisper live - --backend ctranslate2 --step-s 0.3         # the int8 export; decode the open speech more often

Each line printed is what one step committed, with its start and end in the stream, as soon as it is committed.

In code:

    live = StreamingTranscriber(backend, LiveParams(), DecodeOptions())
    for piece in microphone:              # any size
        update = live.feed(piece)         # update.committed: words final from now on; update.tentative: the rest
    update = live.finish()                # the end of the stream: everything left is committed
    live.segments                         # the session's timed segments (SRT/VTT/JSON: svwhisper.longform)

How (the anchors: ufal/whisper_streaming's LocalAgreement-2, and the offline path's VAD chunks):
- Audio waits in a buffer that starts at the first sample not yet dealt with. After every `step_s` of new audio
  (counted from the stream's start, so the result does not depend on how the audio was cut into pieces), Silero VAD
  looks for speech in it (svwhisper.vad.speech_regions). Audio without speech is dropped, but for its last PAD_S
  where a voice may be starting: silence, noise and tones never reach the model. With `app.live.vad: false`
  (`--no-vad`) the whole buffer is one open region: every step decodes it, and only the model's own P(no speech)
  (the no-speech rule) keeps noise out of the captions, which is what a fine-tune must not unlearn.
- A speech region that has ended (Silero's MIN_SILENCE_MS of non-speech after it) is decoded once, from PAD_S before
  it, with the app's decoding options (beam search, temperature fallback, the no-speech rule); its words past those
  committed already are committed, its audio is dropped, and its segment is closed.
- The open region (speech up to the buffer's end) is decoded again each step at temperature 0 with `beam_size`
  beams (the no-speech rule holds there too). The words past those committed that this hypothesis and the previous
  one agree on, from the first on, are committed (LocalAgreement-2); the rest is tentative.
- Before the open region outgrows the model window, the buffer is cut at the end of its last committed word (when
  none is committed yet, the hypothesis but its last word is committed first), and a segment is closed there. The
  model never hears more than its window, and memory stays bounded however long the stream runs: only the
  session's words are kept.

Which words are past the committed ones is counted, not timed: a word's end from the alignment drifts between
decodes of a growing buffer (the last word of a hypothesis is stretched to the buffer's end), while the words a
region committed come back first in its next hypothesis (`past_committed` allows for words merged, split or heard
otherwise there); after a cut, a first word repeating the last committed one is dropped (it was heard on both sides
of the cut). A model without alignment heads (a scratch model) has no word
times: its words are spread evenly over the decoded audio, so the same rules hold.
"""

import argparse
import dataclasses
import string
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from svwhisper.audio import SAMPLE_RATE
from svwhisper.decoding import DecodeOptions, add_flags, decode_clips, from_flags
from svwhisper.longform import Segment, to_json, to_srt, to_vtt
from svwhisper.params import BACKENDS, AppParams, LiveParams
from svwhisper.timing import Word
from svwhisper.vad import PAD_S, speech_regions

KEEP_S = PAD_S  # audio kept when a step finds no speech: a voice may be starting at the buffer's end
NO_LIMIT_S = 24 * 3600.0  # Silero's region limit: the window is enforced here, by cutting at committed words
PUNCTUATION = string.punctuation + "«»”“–—…"


def key(word: Word) -> str:
    """What two hypotheses must share for a word to count as the same: its text, lower-cased, without punctuation."""
    return word.text.lower().strip(PUNCTUATION)


def agreed_prefix(new: list[Word], previous: list[Word]) -> int:
    """How many words from the start `new` and `previous` agree on (LocalAgreement-2)."""
    n = 0
    while n < min(len(new), len(previous)) and key(new[n]) == key(previous[n]):
        n += 1
    return n


def past_committed(words: list[Word], committed: list[Word], after_cut: str = "") -> list[Word]:
    """The words of a hypothesis of the current region that come after the `committed` ones of that region.

    The first len(committed) words are those when they read the same; else the first words that spell the same
    letters (words merged or split); else, within two of that count, a word that repeats the last committed one
    ends them (an earlier word heard otherwise); else the count does.
    With no word committed in the region since a cut, a first word repeating `after_cut` (the last word committed
    before the cut) is dropped.
    """
    count = len(committed)
    if not committed:
        return words[1:] if words and after_cut and key(words[0]) == after_cut else words
    keys, done = [key(w) for w in words], [key(w) for w in committed]
    if keys[:count] == done:
        return words[count:]
    spelled = "".join(done)
    for end in range(1, min(len(words), count + 3) + 1):  # words merged or split: the same letters
        if "".join(keys[:end]) == spelled:
            return words[end:]
    for end in (count - 1, count + 1, count - 2, count + 2):  # an earlier word heard otherwise: the last one
        if 0 < end <= len(words) and keys[end - 1] == done[-1]:
            return words[end:]
    return words[count:]


def spread(text: str, start_s: float, end_s: float) -> list[Word]:
    """Words of `text` given equal shares of [start_s, end_s]: the times of a model that has no alignment heads."""
    tokens = text.split()
    share = (end_s - start_s) / max(1, len(tokens))
    return [Word(round(start_s + i * share, 2), round(start_s + (i + 1) * share, 2), t) for i, t in enumerate(tokens)]


@dataclass(frozen=True)
class Update:
    committed: tuple[Word, ...] = ()  # words committed by this call, in order: they never change
    tentative: tuple[Word, ...] = ()  # the open speech's words after the committed ones: the next call may change them


class StreamingTranscriber:
    """One live stream: feed it 16 kHz mono float samples in pieces of any size (see the module's docstring)."""

    def __init__(self, backend, live: LiveParams | None = None, options: DecodeOptions | None = None):
        live, options = live or LiveParams(), options or DecodeOptions()
        self.backend = backend
        self.final_options = dataclasses.replace(options, word_timestamps=True)
        self.open_options = dataclasses.replace(
            options, beam_size=live.beam_size, temperatures=(0.0,), word_timestamps=True
        )
        self.window = int(backend.processor.feature_extractor.chunk_length * SAMPLE_RATE)
        self.step = int(live.step_s * SAMPLE_RATE)
        self.vad = live.vad
        self.pad = int(PAD_S * SAMPLE_RATE)
        self.buffer = np.zeros(0, dtype=np.float32)
        self.origin = 0  # the stream's sample index of buffer[0]
        self.received = 0  # samples fed so far
        self.next_step = self.step  # the step runs when this many samples have been fed
        self.tentative: list[Word] = []  # the open region's last hypothesis, past the committed words
        self.region: list[Word] = []  # words committed from the audio the buffer holds
        self.after_cut = ""  # key of the last word committed before the buffer was cut inside speech
        self.open_segment: list[Word] = []
        self.last_end_s = 0.0  # where the last committed word ends
        self.segments: list[Segment] = []
        self.decodes = 0  # decoder calls so far (the VAD keeps silence from them)
        self.peak_buffer = 0  # the most samples the buffer ever held

    @property
    def received_s(self) -> float:
        return self.received / SAMPLE_RATE

    def lines(self) -> list[str]:
        """The committed text so far, a line per segment (the last one may still grow)."""
        growing = [" ".join(w.text for w in self.open_segment)] if self.open_segment else []
        return [s.text for s in self.segments] + growing

    def feed(self, samples: np.ndarray) -> Update:
        """Take the next `samples`; words are committed (and the tentative ones revised) at each step they complete."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        committed: list[Word] = []
        while len(samples):
            take = min(len(samples), self.next_step - self.received)
            self.buffer = np.concatenate([self.buffer, samples[:take]])
            self.peak_buffer = max(self.peak_buffer, len(self.buffer))
            self.received += take
            samples = samples[take:]
            if self.received >= self.next_step:
                committed += self._step(final=False)
                self.next_step += self.step
        return Update(tuple(committed), tuple(self.tentative))

    def finish(self) -> Update:
        """The stream has ended: decode what is left as if its speech had ended, commit it, close the segment."""
        committed = self._step(final=True)
        self._close_segment()
        self.buffer = self.buffer[:0]
        return Update(tuple(committed), ())

    def _step(self, final: bool) -> list[Word]:
        committed: list[Word] = []
        while True:
            regions = self._regions()
            if not regions:
                self._drop(len(self.buffer) if final else max(0, len(self.buffer) - KEEP_S * SAMPLE_RATE))
                self.tentative, self.after_cut = [], ""
                self._close_segment()
                return committed
            start, last = max(0, regions[0][0] - self.pad), regions[0][1]
            ended = len(regions) > 1 or last < len(self.buffer)
            if (ended or final) and last - start <= self.window:
                end = (last + regions[1][0]) // 2 if len(regions) > 1 else len(self.buffer)
                end = min(end, last + self.pad, start + self.window)
                words = self._decode(start, end, self.final_options)
                committed += self._commit(past_committed(words, self.region, self.after_cut))
                self._close_segment()
                self._drop(end)
                self.tentative, self.after_cut = [], ""
                continue
            self._drop(start, words_kept=True)  # the silence before the open region is of no more use
            committed += self._open_step(0)
            if not final:
                return committed

    def _regions(self) -> list[tuple[int, int]]:
        """The buffer's speech regions (samples): Silero VAD's, or without VAD the whole buffer as one open region."""
        if not len(self.buffer):
            return []
        return speech_regions(self.buffer, NO_LIMIT_S) if self.vad else [(0, len(self.buffer))]

    def _open_step(self, start: int) -> list[Word]:
        """Decode the open region from `start`, commit what two hypotheses agree on, cut before the window fills."""
        end = min(len(self.buffer), start + self.window)
        new = past_committed(self._decode(start, end, self.open_options), self.region, self.after_cut)
        committed = self._commit(new[: agreed_prefix(new, self.tentative)])
        self.tentative = new[len(committed) :]
        if end - start + self.step <= self.window:
            return committed
        if not self.region and len(self.tentative) > 1:  # nothing agreed in a whole window: keep all but the last
            committed += self._commit(self.tentative[:-1])
            self.tentative = self.tentative[-1:]
        # at the end of the last committed word, but not past the first tentative one (a hypothesis's last word's end
        # is stretched to the end of what was decoded, over a word not recognised yet)
        cut = round(self.region[-1].end_s * SAMPLE_RATE) - self.origin if self.region else 0
        if self.tentative:
            cut = min(cut, round(self.tentative[0].start_s * SAMPLE_RATE) - self.origin)
        if not start < cut <= len(self.buffer):  # no committed word inside: keep the last second only
            cut = max(start + 1, len(self.buffer) - SAMPLE_RATE)
        self.after_cut = key(self.region[-1]) if self.region else ""
        self._close_segment()
        self._drop(cut)
        return committed

    def _decode(self, start: int, end: int, options: DecodeOptions) -> list[Word]:
        """The words of buffer[start:end], timed in the stream."""
        offset = (self.origin + start) / SAMPLE_RATE
        hyp = decode_clips(self.backend, [self.buffer[start:end]], options, [offset])[0]
        self.decodes += 1
        if hyp.text and not hyp.words:  # no alignment heads
            return spread(hyp.text, offset, (self.origin + end) / SAMPLE_RATE)
        return list(hyp.words)

    def _commit(self, words: list[Word]) -> list[Word]:
        """Make `words` final, each starting no earlier than the last committed one ended: subtitles need their cues
        in order, and a decode of another stretch of audio can time a word a little before its predecessor's end."""
        out = []
        for word in words:
            start = max(word.start_s, self.last_end_s)
            out.append(Word(start, max(word.end_s, start), word.text))
            self.last_end_s = out[-1].end_s
        self.region += out
        self.open_segment += out
        return out

    def _close_segment(self) -> None:
        if self.open_segment:
            words = tuple(self.open_segment)
            self.segments.append(Segment(words[0].start_s, words[-1].end_s, " ".join(w.text for w in words), words))
            self.open_segment = []

    def _drop(self, samples: int, words_kept: bool = False) -> None:
        """Forget the first `samples` of the buffer, and the words committed from it unless `words_kept` (the audio
        dropped holds none of them)."""
        samples = int(samples)
        if samples <= 0:
            return
        self.buffer = self.buffer[samples:].copy()  # a view would keep the whole old buffer alive
        self.origin += samples
        if not words_kept:
            self.region = []


PIECE_BYTES = 3200  # 0.1 s of 16 kHz s16le


def pcm_pieces(stream) -> Iterator[np.ndarray]:
    """16 kHz s16le mono PCM from a binary `stream` (a pipe), as float32 pieces of what each read returned."""
    left = b""
    while data := stream.read1(PIECE_BYTES) if hasattr(stream, "read1") else stream.read(PIECE_BYTES):
        data, left = left + data, b""
        if len(data) % 2:  # half a sample: it comes with the next read
            data, left = data[:-1], data[-1:]
        if data:
            yield np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def file_pieces(samples: np.ndarray, realtime: bool, piece_s: float = 0.1) -> Iterator[np.ndarray]:
    """`samples` in pieces of `piece_s`; with `realtime`, each no sooner than it would have been spoken."""
    piece, started = int(piece_s * SAMPLE_RATE), time.monotonic()
    for first in range(0, len(samples), piece):
        if realtime:
            time.sleep(max(0.0, started + (first + piece) / SAMPLE_RATE - time.monotonic()))
        yield samples[first : first + piece]


def line(words: tuple[Word, ...]) -> str:
    return f"[{words[0].start_s:8.2f} -> {words[-1].end_s:8.2f}] {' '.join(w.text for w in words)}"


def main() -> None:
    app = AppParams()  # the app's shipped settings are the CLI's defaults, as for `svwhisper transcribe`
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio", help="- for raw 16 kHz s16le mono PCM on stdin, or any file FFmpeg can decode")
    parser.add_argument("--realtime", action="store_true", help="feed a file at the speed it was spoken")
    parser.add_argument("--backend", choices=BACKENDS, default=app.backend)
    parser.add_argument("--model", "--model-dir", help="a model folder or a Hub id (owner/name[@revision])")
    parser.add_argument("--step-s", type=float, default=app.live.step_s, help="decode the open speech this often")
    parser.add_argument("--live-beam-size", type=int, default=app.live.beam_size, help="beams for those decodes")
    parser.add_argument(
        "--no-vad", dest="vad", action="store_false", default=app.live.vad, help="no VAD: the no-speech rule alone"
    )
    parser.add_argument("--srt", type=Path, help="at the end, write the session's SubRip subtitles here")
    parser.add_argument("--vtt", type=Path, help="at the end, write its WebVTT subtitles here")
    parser.add_argument("--json", type=Path, help="at the end, write its segments with every word's times here")
    add_flags(parser, app.decoding)
    args = parser.parse_args()
    from svwhisper.audio import load_audio
    from svwhisper.backend import default_model_dir
    from svwhisper.hub import ModelError, resolve
    from svwhisper.paramfile import ParamsRangeError, load_params
    from svwhisper.params import Paths
    from svwhisper.transcribe import load_backend

    try:
        live_params = dataclasses.replace(app.live, step_s=args.step_s, beam_size=args.live_beam_size, vad=args.vad)
        try:
            live_params.check()
        except ParamsRangeError as err:  # named by the flag that set it
            flag = "--live-beam-size" if err.key == "beam_size" else f"--{err.key.replace('_', '-')}"
            raise ValueError(f"{flag} {err.message}") from None
        options = from_flags(args)
        if args.model is None:
            args.model = default_model_dir(args.backend, load_params(Paths, "paths"))
        backend = load_backend(args.backend, resolve(args.model, args.backend).path)
        if args.audio == "-":
            pieces = pcm_pieces(sys.stdin.buffer)
        else:
            pieces = file_pieces(load_audio(Path(args.audio)), args.realtime)
    except (FileNotFoundError, ValueError, ModelError) as err:  # AudioError is a ValueError
        sys.exit(f"live: {err}")
    live = StreamingTranscriber(backend, live_params, options)
    try:
        for piece in pieces:
            if update := live.feed(piece).committed:
                print(line(update), flush=True)
    except KeyboardInterrupt:  # Ctrl-C ends the session: what was heard is still committed and written
        pass
    if update := live.finish().committed:
        print(line(update), flush=True)
    for path, text in ((args.srt, to_srt), (args.vtt, to_vtt)):
        if path:
            path.write_text(text(live.segments), encoding="utf-8")
    if args.json:
        args.json.write_text(to_json(live.segments), encoding="utf-8")


if __name__ == "__main__":
    main()
