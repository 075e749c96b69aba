"""featurize: prepared splits -> log-mel input features + label ids, in Parquet shards.

Uses the base model's own processor, so a pretrained Whisper gets its own 80/128-bin front end
and vocabulary. Features are computed over each clip rather than the padded window and stored
trimmed, in float16 (see svwhisper.logmel). The prepared data is read one shard at a time,
so memory does not grow with the corpus; log-mel runs over `num_proc` worker processes. The
same inputs give byte-identical shards. With `featurize.augment.transforms` set, the train split also gets
`copies` augmented versions of every clip (svwhisper.augment); dev and test are never augmented.
`featurize.nonspeech.share` of the training rows are non-speech clips with Whisper's no-speech target
(svwhisper.nonspeech), and dev and test each get a held-out set of non-speech clips from other seeds
(`dev_nonspeech`, `test_nonspeech`), on which `evaluate` measures what the model does without speech.

    python -m stages.featurize --prepared data/prepared --base-model models/base --out data/features
    -> data/features/{train,dev,test,dev_nonspeech,test_nonspeech}/part-00000.parquet, ...
"""

import argparse
from pathlib import Path

from transformers import WhisperConfig, WhisperProcessor

from svwhisper.atomic import atomic_dir
from svwhisper.audio import SAMPLE_RATE
from svwhisper.featurize import featurize_split, nonspeech_table, training_nonspeech
from svwhisper.paramfile import load_params
from svwhisper.params import HELD_OUT_NONSPEECH, SPLITS, FeaturizeParams, TextParams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--base-model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = load_params(FeaturizeParams, "featurize")
    text = load_params(TextParams, "text")

    processor = WhisperProcessor.from_pretrained(args.base_model)
    max_label_len = WhisperConfig.from_pretrained(args.base_model).max_target_positions
    if processor.feature_extractor.sampling_rate != SAMPLE_RATE:
        raise SystemExit(f"featurize: the base model expects {processor.feature_extractor.sampling_rate} Hz audio")
    for split in SPLITS:
        clips, shards = featurize_split(
            args.prepared / f"{split}.parquet",
            args.out / split,
            processor,
            params,
            text,
            max_label_len,
            augmented=split == "train",
            extra=training_nonspeech(args.prepared / "train.parquet", params.nonspeech, processor)
            if split == "train"
            else None,
        )
        size_mb = sum(p.stat().st_size for p in (args.out / split).iterdir()) / 1e6
        print(f"featurize: {split}: {clips} rows in {shards} shard(s), {size_mb:.1f} MB")
    for split, held_out in HELD_OUT_NONSPEECH.items():
        table = nonspeech_table(
            args.prepared / f"{split}.parquet", split, params.nonspeech.eval_clips, params.nonspeech, processor, True
        )
        with atomic_dir(args.out / held_out) as partial:
            table.to_parquet(partial / "part-00000.parquet", index=False, compression="zstd")
        print(f"featurize: {held_out}: {len(table)} held-out non-speech clips")


if __name__ == "__main__":
    main()
