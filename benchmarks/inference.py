"""Ablation: the app's two backends on the same test clips, in one run: CTranslate2 (int8) against transformers.

Not a comparison with a peer (benchmarks/serving.py is that): which of our own backends to serve with.
Both transcribe every clip of the test split (as the app decodes a chunk: batches of `--batch-size`,
beam 5 with temperature fallback, Swedish/transcribe) from the decoded 16 kHz audio, features included; each backend's
fastest of `--repeats` passes counts (a 100-clip pass lasts under a second, so one pass is noisy).
Targets: speedup_vs_transformers >= 2 (audio seconds per wall second) and wer_delta (CTranslate2 minus
transformers) <= 0.01. Also the real-time factor of each and the model size on disk.

    python benchmarks/inference.py --quick      # 100 test clips
    python benchmarks/inference.py              # all 300

Needs `dvc repro` first (models/final and models/ct2). The last line printed is one JSON object.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.metrics import error_rates
from svwhisper.paramfile import load_params
from svwhisper.params import Paths
from svwhisper.sources import Clip, Source, iter_clips
from svwhisper.transcribe import load_backend

REPO = Path(__file__).resolve().parents[1]


def dir_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6, 2)


def timed_transcripts(backend, clips: list, batch_size: int, repeats: int) -> tuple[list[str], float]:
    """The transcripts of `clips`, and the shortest wall time of `repeats` passes (after a warm-up batch)."""
    backend(clips[:batch_size])  # warm-up: one-off allocations out of the timing
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        texts = []
        for i in range(0, len(clips), batch_size):
            texts += backend(clips[i : i + batch_size])
        walls.append(time.perf_counter() - start)
    return texts, min(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 clips")
    parser.add_argument("--clips", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="passes per backend; the fastest counts")
    parser.add_argument("--final", type=Path, help="transformers model dir (default: paths.final_model)")
    parser.add_argument("--exported", type=Path, help="CTranslate2 model dir (default: paths.exported)")
    args = parser.parse_args()
    paths = load_params(Paths, "paths", REPO / "params.yaml")
    final, exported = args.final or REPO / paths.final_model, args.exported or REPO / paths.exported
    for model_dir in (final, exported):
        if not model_dir.is_dir():
            sys.exit(f"inference: no model in {model_dir}: run `make repro` (or `dvc repro`) first")

    test = [c for c in iter_clips(Source(kind="commonvoice", path=str(REPO / "data/sample/sv-SE"), tsv="test"))]
    test = [c for c in test if isinstance(c, Clip)][: args.clips or (100 if args.quick else 300)]
    audio = [load_audio(c.audio) for c in test]
    seconds = sum(len(a) for a in audio) / SAMPLE_RATE
    references = [c.sentence for c in test]

    result = {"clips": len(test), "audio_s": round(seconds, 1), "batch_size": args.batch_size, "repeats": args.repeats}
    rates = {}
    for name, model_dir in (("transformers", final), ("ctranslate2", exported)):
        texts, wall = timed_transcripts(load_backend(name, model_dir), audio, args.batch_size, args.repeats)
        rates[name] = error_rates(references, texts)
        result[f"{name}_audio_s_per_s"] = round(seconds / wall, 1)
        result[f"{name}_rtf"] = round(wall / seconds, 4)
        result[f"{name}_wer"] = round(rates[name]["wer"], 4)
        result[f"{name}_model_mb"] = dir_mb(model_dir)
    result["speedup_vs_transformers"] = round(
        result["ctranslate2_audio_s_per_s"] / result["transformers_audio_s_per_s"], 2
    )
    result["wer_delta"] = round(rates["ctranslate2"]["wer"] - rates["transformers"]["wer"], 4)
    result["targets_met"] = result["speedup_vs_transformers"] >= 2 and result["wer_delta"] <= 0.01
    print(json.dumps(result))


if __name__ == "__main__":
    main()
