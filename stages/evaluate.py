"""evaluate: decode the test split with the final and the untrained base model.

Writes the metrics JSON (wer, cer, base_wer, base_cer as normalised-text fractions, plus
wer_orthographic, cer_orthographic, n_utterances, hours) and a per-utterance TSV.

    python -m stages.evaluate --features data/features --model models/final --base-model models/base \
        --metrics metrics/eval.json --predictions reports/predictions.tsv
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm
from transformers import WhisperConfig

from svwhisper.atomic import write_text_atomic
from svwhisper.data import FeatureSplit, SpeechCollator
from svwhisper.decode import PROMPT_TOKENS, generate_text, load_model
from svwhisper.metrics import error_rates, word_errors
from svwhisper.paramfile import PARAMS_FILE, ParamsError, check_generation_fits, load_params
from svwhisper.params import EvaluateParams


def transcribe_split(model_dir: Path, split: FeatureSplit, params: EvaluateParams, name: str) -> list[str]:
    """Every clip of `split` decoded by the model in `model_dir`, in order."""
    model, processor = load_model(model_dir)
    collate = SpeechCollator(processor.feature_extractor.nb_max_frames, model.config.decoder_start_token_id)
    texts = []
    for start in tqdm(range(0, len(split), params.batch_size), desc=f"evaluate {name}", unit="batch"):
        batch = collate([split[i] for i in range(start, min(start + params.batch_size, len(split)))])
        texts += generate_text(
            model, processor, batch["input_features"].numpy(), params.max_new_tokens, params.num_beams
        )
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--base-model", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    args = parser.parse_args()
    params = load_params(EvaluateParams, "evaluate")
    positions = min(WhisperConfig.from_pretrained(m).max_target_positions for m in (args.model, args.base_model))
    try:
        tokens = params.max_new_tokens
        check_generation_fits(PARAMS_FILE, "evaluate", "max_new_tokens", tokens, PROMPT_TOKENS, positions)
    except ParamsError as err:
        raise SystemExit(f"evaluate: {err}") from None

    test = FeatureSplit(args.features / "test")
    references = test.table["sentence"].to_list()
    hypotheses = transcribe_split(args.model, test, params, "final")
    base_hypotheses = transcribe_split(args.base_model, test, params, "base")

    final = error_rates(references, hypotheses)
    base = error_rates(references, base_hypotheses)
    orthographic = error_rates(references, hypotheses, normalized=False)
    metrics = {
        "wer": round(final["wer"], 4),
        "cer": round(final["cer"], 4),
        "base_wer": round(base["wer"], 4),
        "base_cer": round(base["cer"], 4),
        "wer_orthographic": round(orthographic["wer"], 4),
        "cer_orthographic": round(orthographic["cer"], 4),
        "n_utterances": len(references),
        "hours": round(float(np.sum(test.table["duration_s"])) / 3600, 4),
    }
    write_text_atomic(args.metrics, json.dumps(metrics, indent=2) + "\n")
    per_utterance = pd.DataFrame(
        {
            "id": test.table["id"],
            "reference": references,
            "hypothesis": hypotheses,
            "errors": [word_errors(r, h) for r, h in zip(references, hypotheses, strict=True)],
        }
    )
    write_text_atomic(args.predictions, per_utterance.to_csv(sep="\t", index=False))
    print("evaluate: " + ", ".join(f"{k} {v}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
