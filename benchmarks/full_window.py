"""Benchmark: serve the fine-tuned model at its training window, or put back to Whisper's standard 30 s?

The final model (trained on a cut window, e.g. 4 s) is put back to 30 s with
svwhisper.modeling.set_audio_window (its positions kept, the rest Whisper's sinusoids), the form
faster-whisper and transformers' chunked pipeline expect. Both forms transcribe the first `--clips`
test clips, greedy, on both backends (transformers float32, CTranslate2 int8 from the export code),
in one run on this machine.

    python benchmarks/full_window.py --clips 100      # about 4 minutes on 2 cores

The last line printed is one JSON object: normalised WER and CER and seconds per clip of each form
and backend, and the 30 s form's slowdown against the cut one.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from svwhisper.audio import load_audio
from svwhisper.ct2_backend import CTranslate2Backend
from svwhisper.export import export
from svwhisper.hf_backend import TransformersBackend, load_model
from svwhisper.metrics import error_rates
from svwhisper.modeling import set_audio_window

REPO = Path(__file__).resolve().parents[1]


def timed(backend, clips: list, batch_size: int) -> tuple[list[str], float]:
    start = time.perf_counter()
    texts = [t for i in range(0, len(clips), batch_size) for t in backend(clips[i : i + batch_size])]
    return texts, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models/final")
    parser.add_argument("--prepared", type=Path, default=REPO / "data/prepared/test.parquet")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    import pandas as pd

    test = pd.read_parquet(args.prepared).head(args.clips)
    clips = [load_audio(a) for a in test["audio"]]
    references = test["sentence"].to_list()

    model, processor = load_model(args.model)
    window = processor.feature_extractor.chunk_length
    result = {"clips": len(clips), "trained_window_s": window}
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "full"
        set_audio_window(model, processor, 30)
        model.save_pretrained(full)
        processor.save_pretrained(full)
        forms = {f"{window}s": args.model, "30s": full}
        for name, model_dir in list(forms.items()):
            export(Path(model_dir), Path(tmp) / f"ct2-{name}", "int8")
        for name, model_dir in forms.items():
            for backend_name, backend in (
                ("transformers", TransformersBackend(model_dir)),
                ("ctranslate2", CTranslate2Backend(Path(tmp) / f"ct2-{name}")),
            ):
                texts, seconds = timed(backend, clips, args.batch_size)
                rates = error_rates(references, texts)
                key = f"{name}_{backend_name}"
                result[f"{key}_wer"] = round(rates["wer"], 4)
                result[f"{key}_cer"] = round(rates["cer"], 4)
                result[f"{key}_s_per_clip"] = round(seconds / len(clips), 4)
                print(key, result[f"{key}_wer"], result[f"{key}_s_per_clip"], "s/clip", flush=True)
    for backend_name in ("transformers", "ctranslate2"):
        result[f"slowdown_30s_{backend_name}"] = round(
            result[f"30s_{backend_name}_s_per_clip"] / result[f"{window}s_{backend_name}_s_per_clip"], 2
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
