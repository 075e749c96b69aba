"""How fast `prepare` reads the same clips from three kinds of source: a Common Voice tree, a Parquet
dataset through `datasets`, and that dataset with `streaming: true`. No target: it says what
streaming costs. Prints one JSON object as its last line.

    python benchmarks/prepare.py [--clips 4000]
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from svwhisper.params import PrepareParams, Sources
from svwhisper.prepare import prepare_split
from svwhisper.sources import Clip, Source, iter_clips

REPO = Path(__file__).resolve().parents[1]

SAMPLE = REPO / "data" / "sample" / "sv-SE"


def write_parquet(n: int, path: Path) -> None:
    """The first `n` clips of the shipped train split as a Parquet dataset with an Audio column."""
    from datasets import Audio, Dataset

    cv = Source(kind="commonvoice", path=str(SAMPLE), tsv="train")
    clips = [c for c in iter_clips(cv) if isinstance(c, Clip)][:n]
    table = {
        "audio": [{"bytes": c.audio.read_bytes(), "path": c.audio.name} for c in clips],
        "sentence": [c.sentence for c in clips],
    }
    Dataset.from_dict(table).cast_column("audio", Audio()).to_parquet(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["HF_HOME"] = str(tmp / "hf")  # a cold datasets cache: the Arrow conversion is counted
        write_parquet(args.clips, tmp / "sv.parquet")
        sources = {
            "commonvoice": Source(kind="commonvoice", path=str(SAMPLE), tsv="train"),
            "hf_parquet": Source(kind="hf", name="parquet", path=str(tmp / "sv.parquet")),
            "hf_parquet_streaming": Source(kind="hf", name="parquet", path=str(tmp / "sv.parquet"), streaming=True),
        }
        result = {"clips": args.clips}
        for name, source in sources.items():
            params = PrepareParams(Sources((source,), (source,), (source,)), max_clips_per_split=args.clips)
            start = time.perf_counter()
            meta, _ = prepare_split([source], params, tmp / f"{name}.parquet")
            seconds = time.perf_counter() - start
            result[f"{name}_kept"] = len(meta)
            result[f"{name}_clips_per_s"] = round(len(meta) / seconds, 1)
            result[f"{name}_audio_s_per_s"] = round(float(meta["duration_s"].sum()) / seconds, 1)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
