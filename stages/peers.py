"""peers: the test split transcribed by Whisper as released, the model a user would run instead of fine-tuning.

`peers.model` (Whisper base from the verified packages by default) at its own 30 s window, with Swedish set
(`model.language`, `model.task`) and the app's decoding options (`app.decoding`: beam search, temperature
fallback, the no-speech rule), decoded twice (svwhisper.peers):
- by faster-whisper (`WhisperModel.transcribe`, int8 on a CPU): what a user who does not fine-tune runs;
- by our transformers backend (svwhisper.decoding) on the first `peers.transformers_max_clips` clips: the code
  evaluate decodes the fine-tuned model with, so the difference to evaluate's figures is the fine-tuning, not
  the decoder. (The released model loops on most of these clips, and a Python decoder running each loop to the
  token cap with beam 5 and fallback takes about 6 s a clip on 2 cores; faster-whisper about 3 s.)
It depends on the test split's file and its own code, never on the fine-tuned model: training again reruns
nothing here. Writes metrics (WER/CER of both, normalised and orthographic) and a per-utterance TSV.

`robustness` in the metrics: what Whisper as released does without speech, the baseline for the fine-tuned model's
own block in metrics/eval.json (svwhisper.robustness). The held-out non-speech clips of the test split (generated as
featurize generates them: `featurize.nonspeech.seed`, `eval_clips` (at most `peers.max_clips` when that is set),
every kind, `model.chunk_length_s` long, padded to the released window) without VAD, through our decoder (share
decoded to nothing, median P(no speech)) and faster-whisper (share decoded to nothing); the share of test speech
decoded to nothing by each; and the share of our decoder's clips whose greedy output without fallback loops.

    python -m stages.peers --test data/prepared/test.parquet --metrics metrics/peers.json \
        --predictions reports/peers.tsv
"""

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import pandas as pd

from svwhisper import whisper_base
from svwhisper.atomic import write_text_atomic
from svwhisper.audio import load_audio
from svwhisper.hf_backend import TransformersBackend
from svwhisper.nonspeech import corpus_edges, generate
from svwhisper.paramfile import load_params
from svwhisper.params import AppParams, FeaturizeParams, ModelParams
from svwhisper.peers import (
    DECODERS,
    PeersParams,
    by_faster_whisper,
    by_transformers,
    metrics_of,
    released_robustness,
    write_released,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("--test", "--metrics", "--predictions"):
        parser.add_argument(flag, type=Path, required=True)
    args = parser.parse_args()
    params, model = load_params(PeersParams, "peers"), load_params(ModelParams, "model")
    options = dataclasses.replace(load_params(AppParams, "app").decoding, word_timestamps=False)

    test = pd.read_parquet(args.test, columns=["id", "sentence", "audio"])
    test = test.head(params.max_clips) if params.max_clips else test
    clips = [load_audio(audio, name=clip_id) for audio, clip_id in zip(test["audio"], test["id"], strict=True)]
    held_out = load_params(FeaturizeParams, "featurize").nonspeech
    count = min(held_out.eval_clips, params.max_clips or held_out.eval_clips)  # max_clips caps this set too
    generated = generate(
        "test", count, held_out.seed, model.chunk_length_s, edges=corpus_edges(args.test), full_window=True
    )
    nonspeech = [samples for _, _, samples in generated]
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        try:
            for_faster_whisper, hf_dir = write_released(params.model, Path(tmp), model.language, model.task)
        except (ValueError, whisper_base.VerificationError) as err:
            raise SystemExit(f"peers: {err}") from None
        language, task, compute = model.language, model.task, params.faster_whisper_compute_type
        ours = clips[: params.transformers_max_clips or None]
        backend = TransformersBackend(hf_dir)
        hyps = by_transformers(backend, ours, options, params.batch_size)
        texts = {
            "faster_whisper": by_faster_whisper(for_faster_whisper, clips, options, language, task, compute),
            "transformers": [h.text for h in hyps],
        }
        robustness = {"transformers": released_robustness(backend, nonspeech, hyps, ours, options, params.batch_size)}
        silent = by_faster_whisper(for_faster_whisper, nonspeech, options, language, task, compute)
    robustness["faster_whisper"] = {
        "nonspeech_clips": len(silent),
        "nonspeech_empty_share": round(sum(not t for t in silent) / len(silent), 4),
        "speech_empty_share": round(sum(not t for t in texts["faster_whisper"]) / len(clips), 4),
    }
    references = test["sentence"].to_list()
    metrics = metrics_of(references, texts, params.model, options) | {"robustness": robustness}
    write_text_atomic(args.metrics, json.dumps(metrics, indent=2) + "\n")
    table = pd.DataFrame({"id": test["id"], "reference": references, **{k: pd.Series(v) for k, v in texts.items()}})
    write_text_atomic(args.predictions, table.to_csv(sep="\t", index=False))
    print("peers: " + ", ".join(f"{d} WER {metrics[d]['wer']} CER {metrics[d]['cer']}" for d in DECODERS))


if __name__ == "__main__":
    main()
