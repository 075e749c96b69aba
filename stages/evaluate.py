"""evaluate: decode the test split with the fine-tuned model, through the app's decoding code.

Each clip is decoded by svwhisper.decoding over the transformers backend, as the page and the CLI decode
a chunk: with `evaluate.decoding: app` the options of `app.decoding` (beam search, temperature fallback,
no-speech), with `greedy` one pass at temperature 0. Writes the metrics JSON (wer, cer as normalised-text
fractions, wer_orthographic, cer_orthographic, the decoding options, how many clips fell back,
n_utterances, hours), a per-utterance TSV, and the error analysis (svwhisper.errors): WER and CER per
speaker (the test clips' client_id, read from the prepared split) and per sentence length, and the ten worst
clips. Whisper as released, on the same clips with the same options, is the peers stage's (metrics/peers.json).

Then what fine-tuning must not unlearn (svwhisper.robustness), into the metrics' `robustness` block: the held-out
non-speech clips (`test_nonspeech`, no VAD in front) decoded with the same options (the share decoded to nothing,
the median P(no speech)); the share of test speech decoded to nothing; the share of test clips whose greedy output
without fallback loops; and the words deleted from one long recording built from test clips, transcribed as the
app transcribes a file (`app.chunker`, `app.batch_size`), against the same clips decoded one by one.

    python -m stages.evaluate --features data/features --model models/final --clips data/prepared/test.parquet \
        --metrics metrics/eval.json --predictions reports/predictions.tsv --errors reports/errors.json
"""

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm import tqdm

from svwhisper.atomic import write_text_atomic
from svwhisper.audio import SAMPLE_RATE, load_audio
from svwhisper.data import FeatureSplit
from svwhisper.decoding import Hypothesis, decode_features, positions_of
from svwhisper.errors import error_analysis
from svwhisper.hf_backend import TransformersBackend
from svwhisper.logmel import pad_features
from svwhisper.metrics import error_rates, word_errors
from svwhisper.paramfile import load_params
from svwhisper.params import GREEDY, HELD_OUT_NONSPEECH, AppParams, DecodeOptions, EvaluateParams
from svwhisper.robustness import longform_measures, nonspeech_measures, recording, speech_measures
from svwhisper.transcribe import transcribe_samples


def decoding_options(params: EvaluateParams, app: AppParams) -> DecodeOptions:
    """The options evaluate decodes with: the app's, or greedy; no word times (WER does not need them)."""
    options = app.decoding if params.decoding == "app" else GREEDY
    return dataclasses.replace(options, word_timestamps=False)


def transcribe_split(backend, split: FeatureSplit, batch_size: int, options: DecodeOptions, name: str):
    """Every clip of `split` decoded by `backend`, in order, as Hypotheses."""
    frames = backend.processor.feature_extractor.nb_max_frames
    hyps: list[Hypothesis] = []
    for start in tqdm(range(0, len(split), batch_size), desc=f"evaluate {name}", unit="batch"):
        rows = range(start, min(start + batch_size, len(split)))
        features = np.stack([pad_features(split[i]["input_features"], frames) for i in rows]).astype(np.float32)
        samples = [round(split.table["duration_s"].iloc[i] * SAMPLE_RATE) for i in rows]
        hyps += decode_features(backend, features, [positions_of(n, frames // 2) for n in samples], options)
    return hyps


def metrics_of(references: list[str], hyps: list[Hypothesis], options, hours: float) -> dict:
    final = error_rates(references, [h.text for h in hyps])
    orthographic = error_rates(references, [h.text for h in hyps], normalized=False)
    return {
        "wer": round(final["wer"], 4),
        "cer": round(final["cer"], 4),
        "wer_orthographic": round(orthographic["wer"], 4),
        "cer_orthographic": round(orthographic["cer"], 4),
        "fell_back": sum(h.temperature > 0 for h in hyps),  # clips the final model decoded again by sampling
        "decoding": dataclasses.asdict(options),
        "n_utterances": len(references),
        "hours": round(hours, 4),
    }


def robustness(backend, features: Path, clips: Path, hyps: list[Hypothesis], params, app: AppParams) -> dict:
    """svwhisper.robustness's measures of the model in `backend` (see the module docstring)."""
    options = decoding_options(params, app)
    nonspeech = FeatureSplit(features / HELD_OUT_NONSPEECH["test"])
    test = FeatureSplit(features / "test")
    greedy = transcribe_split(backend, test, params.batch_size, GREEDY, "greedy")
    audio = pq.read_table(clips, columns=["id", "sentence", "audio"]).to_pandas()
    long, used = recording([load_audio(a, name=i) for a, i in zip(audio["audio"], audio["id"], strict=True)])
    segments = transcribe_samples(long, backend, app.batch_size, options=options, chunker=app.chunker)
    references = [audio["sentence"].iloc[i] for i in used]
    return (
        nonspeech_measures(transcribe_split(backend, nonspeech, params.batch_size, options, "non-speech"))
        | speech_measures(hyps, greedy, options)
        | longform_measures(references, [hyps[i].text for i in used], " ".join(s.text for s in segments))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("--features", "--model", "--clips", "--metrics", "--predictions", "--errors"):
        parser.add_argument(flag, type=Path, required=True)
    args = parser.parse_args()
    params, app = load_params(EvaluateParams, "evaluate"), load_params(AppParams, "app")
    options = decoding_options(params, app)

    test = FeatureSplit(args.features / "test")
    speakers = pq.read_table(args.clips, columns=["id", "client_id"]).to_pandas()
    if speakers["id"].tolist() != test.table["id"].tolist():
        raise SystemExit(f"evaluate: {args.clips} does not hold the clips of {args.features / 'test'}: run featurize")
    references = test.table["sentence"].to_list()
    backend = TransformersBackend(args.model)
    hyps = transcribe_split(backend, test, params.batch_size, options, "final")
    hours = float(np.sum(test.table["duration_s"])) / 3600
    metrics = metrics_of(references, hyps, options, hours)
    metrics["robustness"] = robustness(backend, args.features, args.clips, hyps, params, app)
    write_text_atomic(args.metrics, json.dumps(metrics, indent=2) + "\n")
    texts = [h.text for h in hyps]
    per_utterance = pd.DataFrame(
        {
            "id": test.table["id"],
            "reference": references,
            "hypothesis": texts,
            "errors": [word_errors(r, h) for r, h in zip(references, texts, strict=True)],
            "temperature": [h.temperature for h in hyps],
        }
    )
    write_text_atomic(args.predictions, per_utterance.to_csv(sep="\t", index=False))
    analysis = error_analysis(per_utterance[["id", "reference", "hypothesis"]].assign(speaker=speakers["client_id"]))
    write_text_atomic(args.errors, json.dumps(analysis, indent=2, ensure_ascii=False) + "\n")
    print("evaluate: " + ", ".join(f"{k} {v}" for k, v in metrics.items() if k not in ("decoding", "robustness")))
    print("evaluate: robustness: " + ", ".join(f"{k} {v}" for k, v in metrics["robustness"].items()))


if __name__ == "__main__":
    main()
