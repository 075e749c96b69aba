"""Benchmark: our featurize stage against the Hugging Face blog's way, same clips, same workers, in one run.

Peer (the blog "Fine-Tune Whisper For Multilingual ASR with Transformers", which the course lab follows):
`datasets.Dataset.map(prepare_dataset, num_proc=N)`, where prepare_dataset decodes the clip, calls
WhisperFeatureExtractor with whisper-small's front end (30 s window, 80 mel bins) and tokenizes; `datasets`
stores the padded float32 (80, 3000) arrays in its Arrow cache.
Ours: `svwhisper.featurize.featurize_split`: log-mel over the clip only, trimmed float16, Parquet
shards, N workers. Both start from the same prepared Parquet (FLAC bytes) and include decoding,
tokenizing and writing to disk. Targets: speedup_vs_datasets_map >= 2, size_ratio_vs_datasets_map >= 8,
max_abs_diff <= 1e-3 between the model inputs, and peak RSS that does not grow with the number of clips
(measured in a fresh process at 1x and 4x the clips).

    python benchmarks/featurize.py --quick     # 600 clips, about 30 s on 2 cores
    python benchmarks/featurize.py --clips 1000

The last line printed is one JSON object.
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
from svwhisper.data import FeatureSplit
from svwhisper.featurize import featurize_split
from svwhisper.logmel import pad_features
from svwhisper.modeling import train_tokenizer
from svwhisper.params import (
    FeaturizeParams,
    PrepareParams,
    Sources,
)
from svwhisper.prepare import prepare_split
from svwhisper.sources import Source
from svwhisper.text import TextParams, normalize

REPO = Path(__file__).resolve().parents[1]

SAMPLE = REPO / "data" / "sample" / "sv-SE"
SHARD_SIZE = 64  # small shards, so the memory bound shows at benchmark sizes


def whisper_small_processor(sentences):
    """whisper-small's front end (30 s, 80 mel bins) with a local tokenizer: no hub needed."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    tokenizer = train_tokenizer(map(normalize, sentences), vocab_size=320)
    return WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)


def prepared_clips(n: int, path: Path) -> None:
    """The first `n` clips of the shipped train split, prepared (FLAC bytes) into `path`, as prepare writes them."""
    source = Source(kind="commonvoice", path=str(SAMPLE), tsv="train")
    params = PrepareParams(Sources((source,), (source,), (source,)), max_duration_s=30.0, max_clips_per_split=n)
    prepare_split([source], params, path)


def peer_featurize(prepared: Path, out: Path, processor, num_proc: int):
    """The blog's `dataset.map(prepare_dataset, num_proc=...)`: 30 s padded float32 features and label ids, in
    datasets' Arrow cache under `out`; the mapped dataset."""
    import datasets

    def prepare_dataset(batch):
        audio = load_audio(batch["audio"])
        batch["input_features"] = processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE).input_features[0]
        batch["labels"] = processor.tokenizer(normalize(batch["sentence"])).input_ids
        return batch

    dataset = datasets.Dataset.from_parquet(str(prepared), cache_dir=str(out))
    return dataset.map(prepare_dataset, remove_columns=dataset.column_names, num_proc=num_proc)


def ours_featurize(prepared: Path, out: Path, processor, num_proc: int) -> None:
    params = FeaturizeParams(shard_size=SHARD_SIZE, num_proc=num_proc)
    featurize_split(prepared, out, processor, params, TextParams(), max_label_len=448)


def peak_rss_mb(prepared: Path, num_proc: int) -> float:
    """Peak RSS of our featurize in a fresh process (the parent; workers each hold one chunk).

    VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would start at ours.
    """
    code = (
        "import runpy, sys, pandas as pd; bench = runpy.run_path(sys.argv[1]);"
        "ours_featurize, whisper_small_processor = bench['ours_featurize'], bench['whisper_small_processor'];"
        "from pathlib import Path; p = Path(sys.argv[2]);"
        "proc = whisper_small_processor(pd.read_parquet(p, columns=['sentence'])['sentence']);"
        "ours_featurize(p, Path(sys.argv[3]), proc, int(sys.argv[4]));"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                str(Path(__file__).resolve()),
                str(prepared),
                str(Path(tmp) / "f"),
                str(num_proc),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    return int(out.stdout.strip().splitlines()[-1]) / 1024  # VmHWM is in KiB


def time_both(tmp: Path, processor, num_proc: int):
    """Seconds of the peer's featurize and ours on tmp/prepared.parquet, after a warm-up of each on
    tmp/warmup.parquet (one-off costs out of the timing); the peer's mapped dataset."""
    peer_featurize(tmp / "warmup.parquet", tmp / "warmup_peer", processor, num_proc)
    ours_featurize(tmp / "warmup.parquet", tmp / "warmup_ours", processor, num_proc)
    start = time.perf_counter()
    mapped = peer_featurize(tmp / "prepared.parquet", tmp / "peer", processor, num_proc)
    peer_s = time.perf_counter() - start
    start = time.perf_counter()
    ours_featurize(tmp / "prepared.parquet", tmp / "ours", processor, num_proc)
    return peer_s, time.perf_counter() - start, mapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="600 clips (the default is 1200)")
    parser.add_argument("--clips", type=int, default=0)
    parser.add_argument("--num-proc", type=int, default=2)
    args = parser.parse_args()
    n = args.clips or (600 if args.quick else 1200)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepared_clips(4 * n, tmp / "prepared4x.parquet")
        import pandas as pd

        table = pd.read_parquet(tmp / "prepared4x.parquet")
        table.iloc[:n].to_parquet(tmp / "prepared.parquet", index=False)
        processor = whisper_small_processor(table["sentence"])
        table.iloc[:8].to_parquet(tmp / "warmup.parquet", index=False)
        peer_s, ours_s, mapped = time_both(tmp, processor, args.num_proc)
        peer_bytes = sum(Path(f["filename"]).stat().st_size for f in mapped.cache_files)  # the mapped arrays only
        ours_bytes = sum(p.stat().st_size for p in (tmp / "ours").iterdir())
        ours, peer = FeatureSplit(tmp / "ours"), mapped.with_format("numpy")
        frames = processor.feature_extractor.nb_max_frames
        max_abs_diff = max(
            float(np.abs(pad_features(ours[i]["input_features"], frames) - peer[i]["input_features"]).max())
            for i in range(n)
        )
        rss_1x = peak_rss_mb(tmp / "prepared.parquet", args.num_proc)
        rss_4x = peak_rss_mb(tmp / "prepared4x.parquet", args.num_proc)

    result = {
        "clips": n,
        "num_proc": args.num_proc,
        "datasets_map_clips_per_s": round(n / peer_s, 1),
        "ours_clips_per_s": round(n / ours_s, 1),
        "datasets_map_bytes_per_clip": round(peer_bytes / n),
        "ours_bytes_per_clip": round(ours_bytes / n),
        "speedup_vs_datasets_map": round(peer_s / ours_s, 2),
        "size_ratio_vs_datasets_map": round(peer_bytes / ours_bytes, 1),
        "max_abs_diff": max_abs_diff,
        "peak_rss_mb_1x": round(rss_1x),
        "peak_rss_mb_4x": round(rss_4x),
        "rss_growth_4x": round(rss_4x / rss_1x, 3),
        "this_process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    result["targets_met"] = (
        result["speedup_vs_datasets_map"] >= 2
        and result["size_ratio_vs_datasets_map"] >= 8
        and result["max_abs_diff"] <= 1e-3
        and result["rss_growth_4x"] <= 1.25
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
