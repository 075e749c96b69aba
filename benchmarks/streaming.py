"""Benchmark: live captions (svwhisper.streaming) on the long recordings of benchmarks/longform.py, both backends.

Each recording (about 3 minutes of test clips with pauses of 0.2-1.5 s) is fed in pieces of 0.1 s, as a
microphone sends it, on a simulated clock: a piece is fed no earlier than it has been spoken, and each feed is
charged its measured compute time, so the clock falls behind the audio when the model cannot keep up. Reported:

- commit latency of each word: the clock when its commit came back minus the word's end in the audio (its aligned
  end); and of each clip's last word against where that clip's voice really ends (the recording is built from
  the clips, so this one needs no alignment): p50, p90, p99;
- streamed WER against the same recordings transcribed offline (`transcribe_samples`, same decoding options);
- CPU seconds per audio second while streaming (all threads of the process; 1.0 = one core busy at real time);
- RSS over one long stream (`--minutes`, the recordings looped): at its first minute, its peak, and the growth
  from its fifth minute (or its middle) to the end;
- words committed out of 30 s of silence, of low noise and of a steady tone.

Targets on 2 CPU cores with CTranslate2 int8: p50 <= 1.0 s, p90 <= 2.0 s, streamed WER <= offline WER + 0.02,
CPU < 1.0 s a second, RSS growth <= 32 MB, 0 words out of non-speech.

    python benchmarks/streaming.py --quick                    # one recording, a 3 min stream: a few minutes
    python benchmarks/streaming.py                            # three recordings, a 30 min stream, both backends
    python benchmarks/streaming.py --backend ctranslate2 --step-s 0.3 --beam-size 1

Needs `dvc repro` first (models/final, models/ct2). The last line printed is one JSON object.
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from longform import leading_silence, non_speech, recordings

from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.backend import default_model_dir
from svwhisper.metrics import error_rates
from svwhisper.paramfile import load_params
from svwhisper.params import BACKENDS, AppParams, Paths
from svwhisper.sources import Clip, Source, iter_clips
from svwhisper.streaming import StreamingTranscriber
from svwhisper.transcribe import load_backend, transcribe_samples

REPO = Path(__file__).resolve().parents[1]
PIECE_S = 0.1  # a browser's microphone sends about this much at a time
RSS_GROWTH_MB = 32.0


def rss_mb() -> float:
    """This process's resident memory now (Linux /proc; 0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def stream(live: StreamingTranscriber, samples: np.ndarray, every_s: float = 0.0, sample=None) -> dict:
    """Feed `samples` in PIECE_S pieces on the simulated clock: each committed word with its commit time, the CPU
    seconds spent; `sample(seconds_fed)` is called every `every_s` of audio (0: never)."""
    piece, clock, committed = int(PIECE_S * SAMPLE_RATE), 0.0, []
    cpu, next_sample = time.process_time(), every_s
    for first in range(0, len(samples), piece):
        chunk = samples[first : first + piece]
        clock = max(clock, (first + len(chunk)) / SAMPLE_RATE)  # not before it has been spoken
        started = time.perf_counter()
        update = live.feed(chunk)
        clock += time.perf_counter() - started
        committed += [(w, clock) for w in update.committed]
        if sample and live.received_s >= next_sample:
            sample(live.received_s)
            next_sample += every_s
    started = time.perf_counter()
    update = live.finish()
    clock += time.perf_counter() - started
    committed += [(w, clock) for w in update.committed]
    return {"committed": committed, "cpu_s": time.process_time() - cpu, "clock_s": clock}


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p90": None, "p99": None}
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in (50, 90, 99)}


def trailing_silence(clip: np.ndarray) -> int:
    """Samples after the voice (leading_silence of the reversed clip)."""
    return leading_silence(clip[::-1].copy())


def clip_end_latencies(committed: list, placed: list, audio: list[np.ndarray]) -> list[float]:
    """For each placed clip with a committed word: when its last word was committed minus where its voice ends (a
    word belongs to the clip its middle falls in, the pauses split halfway)."""
    bounds = [(s, e) for _, s, e in placed]
    out = []
    for i, ((index, _, end), (start, _)) in enumerate(zip(placed, bounds, strict=True)):
        low = (bounds[i - 1][1] + start) / 2 if i else 0
        high = (end + bounds[i + 1][0]) / 2 if i + 1 < len(bounds) else float("inf")
        inside = [t for w, t in committed if low <= (w.start_s + w.end_s) / 2 * SAMPLE_RATE < high]
        if inside:
            out.append(max(inside) - (end - trailing_silence(audio[index])) / SAMPLE_RATE)
    return out


def measure(backend, name: str, built, test, audio, params: AppParams, minutes: float, seed: int) -> dict:
    """One backend's numbers (see the module's docstring)."""

    def new() -> StreamingTranscriber:
        return StreamingTranscriber(backend, params.live, params.decoding)

    refs, streamed, offline, word_lat, end_lat, cpu, seconds = [], [], [], [], [], 0.0, 0.0
    for samples, placed in built:
        run = stream(new(), samples)
        refs.append(" ".join(test[i].sentence for i, _, _ in placed))
        streamed.append(" ".join(w.text for w, _ in run["committed"]))
        word_lat += [t - w.end_s for w, t in run["committed"]]
        end_lat += clip_end_latencies(run["committed"], placed, audio)
        cpu, seconds = cpu + run["cpu_s"], seconds + len(samples) / SAMPLE_RATE
        segments = transcribe_samples(samples, backend, params.batch_size, None, params.decoding, params.chunker)
        offline.append(" ".join(s.text for s in segments))
    memory = long_stream(new(), built, minutes)
    quiet = non_speech(np.random.default_rng(seed))
    silence = {kind: len(stream(new(), samples)["committed"]) for kind, samples in quiet.items()}
    return {
        "backend": name,
        "audio_s": round(seconds, 1),
        "word_latency_s": percentiles(word_lat),
        "clip_end_latency_s": percentiles(end_lat),
        "streamed_wer": round(error_rates(refs, streamed)["wer"], 4),
        "offline_wer": round(error_rates(refs, offline)["wer"], 4),
        "cpu_s_per_audio_s": round(cpu / seconds, 3),
        **memory,
        "non_speech_words": sum(silence.values()),
        "non_speech_words_by_input": silence,
    }


def long_stream(live: StreamingTranscriber, built, minutes: float) -> dict:
    """RSS over a stream of `minutes` of the recordings looped, sampled every minute of audio."""
    loop = np.concatenate([samples for samples, _ in built])
    repeats = int(np.ceil(minutes * 60 * SAMPLE_RATE / len(loop)))
    samples = np.tile(loop, repeats)[: int(minutes * 60 * SAMPLE_RATE)]
    seen: list[tuple[float, float]] = []
    run = stream(live, samples, every_s=60.0, sample=lambda s: seen.append((s, rss_mb())))
    seen.append((len(samples) / SAMPLE_RATE, rss_mb()))
    settled = [mb for s, mb in seen if s >= min(300.0, seen[-1][0] / 2)]
    return {
        "stream_minutes": round(len(samples) / SAMPLE_RATE / 60, 1),
        "stream_cpu_s_per_audio_s": round(run["cpu_s"] / (len(samples) / SAMPLE_RATE), 3),
        "rss_first_minute_mb": round(seen[0][1], 1),
        "rss_peak_mb": round(max(mb for _, mb in seen), 1),
        "rss_growth_mb": round(settled[-1] - settled[0], 1),
        "peak_buffer_s": round(live.peak_buffer / SAMPLE_RATE, 2),
        "stream_words": sum(len(s.words) for s in live.segments),
    }


def targets_met(result: dict) -> bool:
    """The issue's targets (see the module's docstring) for one backend's result."""
    p50, p90 = result["word_latency_s"]["p50"], result["word_latency_s"]["p90"]
    return bool(
        p50 is not None
        and p50 <= 1.0
        and p90 <= 2.0
        and result["streamed_wer"] <= result["offline_wer"] + 0.02
        and result["cpu_s_per_audio_s"] < 1.0
        and result["rss_growth_mb"] <= RSS_GROWTH_MB
        and result["non_speech_words"] == 0
    )


def parse_args() -> argparse.Namespace:
    live = AppParams().live
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one recording of ~3 min, a 3 min stream")
    parser.add_argument("--backend", choices=BACKENDS, nargs="+", default=list(BACKENDS))
    parser.add_argument("--step-s", type=float, default=live.step_s)
    parser.add_argument("--beam-size", type=int, default=live.beam_size, help="beams for the open speech's decodes")
    parser.add_argument("--minutes", type=float, help="the long stream's length (default 30; 3 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clips", type=int, default=0, help="use only the first N test clips (0: all)")
    parser.add_argument("--tsv", default="test", help="which split of the shipped corpus (tests: train)")
    parser.add_argument("--model-dir", type=Path, help="default: paths.final_model, or paths.exported for ctranslate2")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    params = load_params(AppParams, "app", REPO / "params.yaml")
    params = dataclasses.replace(
        params, live=dataclasses.replace(params.live, step_s=args.step_s, beam_size=args.beam_size)
    )
    params.live.check()
    paths = load_params(Paths, "paths", REPO / "params.yaml")
    test = [c for c in iter_clips(Source(kind="commonvoice", path=str(REPO / "data/sample/sv-SE"), tsv=args.tsv))]
    test = [c for c in test if isinstance(c, Clip)][: args.clips or None]
    audio = [load_audio(c.audio) for c in test]
    built = recordings(audio, np.random.default_rng(args.seed), 1 if args.quick else 3)
    minutes = args.minutes if args.minutes is not None else 3.0 if args.quick else 30.0
    results = {}
    for name in args.backend:
        model_dir = args.model_dir or REPO / default_model_dir(name, paths)
        if not Path(model_dir).is_dir():
            sys.exit(f"streaming: no model in {model_dir}: run `make repro` (or `dvc repro`) first")
        backend = load_backend(name, model_dir)
        results[name] = measure(backend, name, built, test, audio, params, minutes, args.seed)
        results[name]["targets_met"] = targets_met(results[name])
        print(json.dumps(results[name]), flush=True)
    summary = {"step_s": params.live.step_s, "beam_size": params.live.beam_size, "piece_s": PIECE_S}
    print(json.dumps(summary | {"backends": results, "targets_met": results.get("ctranslate2", {}).get("targets_met")}))


if __name__ == "__main__":
    main()
