"""Benchmark: serving long recordings, ours against what a user would run instead, same input, same threads.

The long recordings of benchmarks/longform.py (test clips with pauses, about 3 minutes each, seeded) are
transcribed by each system in a process of its own (so each peak RSS is its own), with `--threads` CPU threads:
- svwhisper-ctranslate2, svwhisper-transformers: the fine-tuned model through the app's code path
  (`transcribe_samples`: Silero VAD chunks, `app.decoding` of params.yaml: beam 5, fallback, word timestamps);
- faster-whisper: `WhisperModel.transcribe` with Whisper base as released (int8; Swedish, beam 5, fallback,
  Silero VAD, word timestamps, its defaults otherwise);
- faster-whisper-batched: its `BatchedInferencePipeline` (batch 8, beam 5, word timestamps);
- transformers-pipeline: `pipeline("automatic-speech-recognition", chunk_length_s=30, batch_size=8)` with
  Whisper base as released (Swedish; beam 5 and at most 256 new tokens a chunk, the pipeline's defaults).
Whisper base comes from the verified packages (svwhisper.whisper_base), as the peers stage runs it.
Each system reports audio seconds per wall second (model loading excluded), peak RSS and WER against the
recordings' sentences. Target: svwhisper-ctranslate2 at least 2x the fastest peer's speed, at a lower WER than
every peer.

    python benchmarks/serving.py --quick       # one recording of ~3 min: about 3 minutes of work
    python benchmarks/serving.py               # three recordings, about 9 minutes of audio

Needs `dvc repro` first (models/final, models/ct2). The last line printed is one JSON object.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.backend import usable_cores
from svwhisper.metrics import error_rates
from svwhisper.paramfile import load_params
from svwhisper.params import AppParams, Paths
from svwhisper.sources import Clip, Source, iter_clips

REPO = Path(__file__).resolve().parents[1]
OURS = ("svwhisper-ctranslate2", "svwhisper-transformers")
PEERS = ("faster-whisper", "faster-whisper-batched", "transformers-pipeline")
BATCH = 8


def built_recordings(clips: int, count: int, seed: int, tsv: str = "test") -> tuple[list[np.ndarray], list[str]]:
    """The long recordings (benchmarks/longform.py's, same seed) and the sentences each holds, in order."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from longform import recordings

    test = [c for c in iter_clips(Source(kind="commonvoice", path=str(REPO / "data/sample/sv-SE"), tsv=tsv))]
    test = [c for c in test if isinstance(c, Clip)][: clips or None]
    built = recordings([load_audio(c.audio) for c in test], np.random.default_rng(seed), count)
    return [s for s, _ in built], [" ".join(test[i].sentence for i, _, _ in placed) for _, placed in built]


def released_dirs(folder: Path) -> None:
    """Whisper base as released, Swedish set, under `folder` as the peers stage lays it out: ct2/ (Systran's
    CTranslate2 files) and hf/ (a transformers save_pretrained dir)."""
    from svwhisper import whisper_base
    from svwhisper.peers import write_released

    write_released(whisper_base.NAME, folder, "sv", "transcribe")


def transcriber(system: str, args):
    """A function samples -> text for `system`, loaded (its load time is not the benchmark's)."""
    threads, released = args.threads, args.released
    if system in OURS:
        from svwhisper.transcribe import load_backend, transcribe_samples

        backend_name = system.removeprefix("svwhisper-")
        options = load_params(AppParams, "app", REPO / "params.yaml").decoding
        backend = load_backend(backend_name, args.exported if backend_name == "ctranslate2" else args.final)
        return lambda s: " ".join(x.text for x in transcribe_samples(s, backend, BATCH, options=options))
    if system.startswith("faster-whisper"):
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        model = WhisperModel(str(released / "ct2"), device="cpu", compute_type="int8", cpu_threads=threads)
        if system == "faster-whisper-batched":
            batched = BatchedInferencePipeline(model)
            run = lambda s: batched.transcribe(s, language="sv", batch_size=BATCH, word_timestamps=True)[0]  # noqa: E731
        else:
            run = lambda s: model.transcribe(s, language="sv", vad_filter=True, word_timestamps=True)[0]  # noqa: E731
        return lambda s: " ".join(seg.text.strip() for seg in run(s))
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(released / "hf"), chunk_length_s=30, batch_size=BATCH)
    kwargs = {"generate_kwargs": {"language": "sv", "task": "transcribe"}}
    return lambda s: asr({"raw": s, "sampling_rate": SAMPLE_RATE}, **kwargs)["text"].strip()


def run_one(args) -> None:
    """Child process: one system over the recordings; prints its texts, wall seconds and peak RSS."""
    import torch

    torch.set_num_threads(args.threads)
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the parent's at the fork, a floor
    samples, _ = built_recordings(args.clips, args.count, args.seed, args.tsv)
    started = time.perf_counter()
    transcribe = transcriber(args.run, args)
    load_s = time.perf_counter() - started
    transcribe(samples[0][: 10 * SAMPLE_RATE])  # warm-up: one-off allocations out of the timing
    started = time.perf_counter()
    texts = [transcribe(s) for s in samples]
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"texts": texts, "wall_s": wall, "load_s": load_s, "peak_rss_mb": peak, "start_rss_mb": start}))


def measure(system: str, args, released: Path, audio_s: float, references: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--run", system, "--released", str(released), "--threads", str(args.threads)]
    cmd += ["--clips", str(args.clips), "--count", str(args.count), "--seed", str(args.seed)]
    cmd += ["--final", str(args.final), "--exported", str(args.exported), "--tsv", args.tsv]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"serving: {system} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    rates = error_rates(references, out["texts"])
    return {
        "audio_s_per_s": round(audio_s / out["wall_s"], 1),
        "wer": round(rates["wer"], 4),
        "cer": round(rates["cer"], 4),
        "peak_rss_mb": round(out["peak_rss_mb"]),
        "peak_rss_floor_mb": round(out["start_rss_mb"]),  # inherited at the fork: the peak cannot be measured below
        "load_s": round(out["load_s"], 1),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one recording of ~3 min")
    parser.add_argument("--clips", type=int, default=0, help="use only the first N test clips (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tsv", default="test", help="which split of the shipped corpus (tests: train)")
    parser.add_argument("--threads", type=int, default=usable_cores(), help="CPU threads of every system")
    parser.add_argument("--systems", default=",".join(OURS + PEERS), help="comma-separated subset")
    parser.add_argument("--final", type=Path, help="our transformers model dir (default: paths.final_model)")
    parser.add_argument("--exported", type=Path, help="our CTranslate2 model dir (default: paths.exported)")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # child process: this system only
    parser.add_argument("--released", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--write-released", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.count = args.count or (1 if args.quick else 3)
    paths = load_params(Paths, "paths", REPO / "params.yaml")
    args.final, args.exported = args.final or REPO / paths.final_model, args.exported or REPO / paths.exported
    return args


def main() -> None:
    args = parse_args()
    if args.write_released:
        return released_dirs(args.write_released)
    if args.run:
        return run_one(args)
    for model_dir in (args.final, args.exported):
        if not model_dir.is_dir():
            sys.exit(f"serving: no model in {model_dir}: run `make repro` (or `dvc repro`) first")
    samples, references = built_recordings(args.clips, args.count, args.seed, args.tsv)
    audio_s = sum(len(s) for s in samples) / SAMPLE_RATE
    systems = [s for s in args.systems.split(",") if s]
    if unknown := set(systems) - set(OURS + PEERS):
        sys.exit(f"serving: unknown systems {sorted(unknown)}; choose from {', '.join(OURS + PEERS)}")
    with tempfile.TemporaryDirectory(prefix="serving-") as tmp:
        released = Path(tmp)
        # in a process of its own: a child's peak RSS starts from its parent's at the fork, so this one stays small
        subprocess.run([sys.executable, __file__, "--write-released", str(released)], check=True, capture_output=True)
        rows = {system: measure(system, args, released, audio_s, references) for system in systems}
    result = {"recordings": len(samples), "audio_s": round(audio_s, 1), "threads": args.threads, "systems": rows}
    peers = [p for p in PEERS if p in rows]
    if "svwhisper-ctranslate2" in rows and peers:
        ours, fastest = rows["svwhisper-ctranslate2"], max(peers, key=lambda p: rows[p]["audio_s_per_s"])
        result["fastest_peer"] = fastest
        result["speedup_vs_fastest_peer"] = round(ours["audio_s_per_s"] / rows[fastest]["audio_s_per_s"], 2)
        result["wer_lower_than_every_peer"] = all(ours["wer"] < rows[p]["wer"] for p in peers)
        result["targets_met"] = result["speedup_vs_fastest_peer"] >= 2 and result["wer_lower_than_every_peer"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
