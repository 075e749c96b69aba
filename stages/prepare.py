"""prepare: data sources (params `prepare.sources`) -> filtered 16 kHz splits (Parquet) + a JSON report.

Each split merges its list of sources: Common Voice release TSVs, CSV/TSV manifests, folders of
clips with .txt transcripts, Hugging Face datasets (see svwhisper.sources). Every clip that is
dropped is counted by reason (and the first few listed): bad rows, bad audio and hygiene rules
alike. Nothing bad stops the run; a missing column or broken encoding does, with the file and
line. Clips are decoded and written a row group at a time, so memory does not grow with the corpus.

    python -m stages.prepare --out data/prepared --report reports/prepare.json
"""

import argparse
import json
from pathlib import Path

from svwhisper.atomic import write_text_atomic
from svwhisper.audio import SAMPLE_RATE
from svwhisper.paramfile import load_params
from svwhisper.params import SPLITS, PrepareParams
from svwhisper.prepare import overlaps, prepare_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory for {train,dev,test}.parquet")
    parser.add_argument("--report", type=Path, required=True, help="JSON report path")
    args = parser.parse_args()
    params = load_params(PrepareParams, "prepare")

    report = {"sample_rate_hz": SAMPLE_RATE, "sources": {}, "splits": {}}
    tables = {}
    for split in ("test", "dev", "train"):  # test first: its speakers may be excluded from train
        excluded = frozenset()
        if split == "train" and params.drop_test_speakers_from_train:
            excluded = frozenset(tables["test"]["client_id"]) - {""}
        sources = getattr(params.sources, split)
        report["sources"][split] = [s.describe() for s in sources]
        fraction = params.train_fraction if split == "train" else 1.0  # a learning curve shrinks train only
        out = args.out / f"{split}.parquet"
        tables[split], report["splits"][split] = prepare_split(sources, params, out, excluded, fraction)
        print(
            f"prepare: {split}: {report['splits'][split]['kept']} clips, dropped {report['splits'][split]['dropped']}"
        )
        if tables[split].empty:
            raise SystemExit(f"prepare: split {split!r} kept no clips; see the counts above")
    report["sources"] = {split: report["sources"][split] for split in SPLITS}
    report["splits"] = {split: report["splits"][split] for split in SPLITS}
    report["overlap"] = overlaps(tables)
    write_text_atomic(args.report, json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
