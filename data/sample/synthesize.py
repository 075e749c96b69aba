"""Synthesise the shipped sample corpus, laid out like a Common Voice release.

Reads `sv-sentences-cc0.txt` beside this file and writes `sv-SE/{train,dev,test,validated}.tsv`
and `sv-SE/clips/*.mp3` (16 kHz mono, 16 kbit/s). Speakers are espeak-ng voice variants with a
fixed speed and pitch each; the three splits use disjoint sentences and disjoint speakers, so
the test split measures generalisation to unseen text *and* unseen voices.

Needs the Debian packages espeak-ng and sox (with libsox-fmt-mp3). Only this generator needs
them: the pipeline reads the committed mp3 files. Deterministic: the same inputs and tool
versions give the same TSVs and the same audio.

    python data/sample/synthesize.py            # rewrites data/sample/sv-SE
"""

import argparse
import hashlib
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAX_CHARS = 42  # longer sentences rarely fit the 4 s window of the default model
MAX_SECONDS = 4.0
BITRATE_KBPS = 16
SPLIT_SENTENCES = {"test": 300, "dev": 200}  # the rest go to train
# Common Voice 17 column order; the pipeline reads columns by name, so order is cosmetic.
COLUMNS = [
    "client_id",
    "path",
    "sentence_id",
    "sentence",
    "sentence_domain",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "variant",
    "locale",
    "segment",
]


@dataclass(frozen=True)
class Speaker:
    variant: str  # espeak-ng voice variant, e.g. "m3"
    speed_wpm: int
    pitch: int  # espeak-ng pitch, 0-99

    @property
    def voice(self) -> str:
        return f"sv+{self.variant}"

    @property
    def client_id(self) -> str:
        key = f"espeak-ng:{self.voice}:s{self.speed_wpm}:p{self.pitch}"
        return hashlib.sha256(key.encode()).hexdigest()

    @property
    def gender(self) -> str:
        return "female_feminine" if self.variant.startswith("f") else "male_masculine"


def speakers_for(variants: list[str], rng: random.Random, per_variant: int) -> list[Speaker]:
    """Each variant at `per_variant` distinct (speed, pitch) settings."""
    out = []
    for v in variants:
        for _ in range(per_variant):
            out.append(Speaker(v, rng.randrange(135, 186, 5), rng.randrange(25, 76, 5)))
    return out


SPLIT_VARIANTS = {
    "train": ["m1", "m2", "m4", "m5", "m7", "f1", "f3", "f4", "klatt", "klatt3", "Annie", "john"],
    "dev": ["m6", "f5", "klatt4"],
    "test": ["m3", "f2", "klatt2", "Andy"],
}


def synthesize(text: str, speaker: Speaker, out: Path) -> float:
    """Speak `text` into `out` (mp3, 16 kHz mono, silence trimmed); returns its duration in s."""
    wav = subprocess.run(
        ["espeak-ng", "-v", speaker.voice, "-s", str(speaker.speed_wpm), "-p", str(speaker.pitch), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    trim = ["silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse", "pad", "0.1", "0.1"]
    subprocess.run(
        ["sox", "-t", "wav", "-", "-r", "16000", "-c", "1", "-C", str(BITRATE_KBPS), str(out), *trim],
        input=wav,
        check=True,
        capture_output=True,
    )
    secs = subprocess.run(["soxi", "-D", str(out)], check=True, capture_output=True, text=True).stdout
    return float(secs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "sv-SE")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--train-clips", type=int, default=4000, help="cap on training clips (git size)")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    lines = (HERE / "sv-sentences-cc0.txt").read_text(encoding="utf-8").splitlines()
    sentences = sorted({s.strip() for s in lines if 0 < len(s.strip()) <= MAX_CHARS})
    rng.shuffle(sentences)
    n_test, n_dev = SPLIT_SENTENCES["test"], SPLIT_SENTENCES["dev"]
    split_sentences = {
        "test": sentences[:n_test],
        "dev": sentences[n_test : n_test + n_dev],
        "train": sentences[n_test + n_dev :][: args.train_clips],
    }
    split_speakers = {name: speakers_for(v, rng, per_variant=2) for name, v in SPLIT_VARIANTS.items()}

    if args.out.exists():
        shutil.rmtree(args.out)
    (args.out / "clips").mkdir(parents=True)
    jobs = []  # (split, sentence, speaker, clip path)
    for split in ("train", "dev", "test"):
        for sentence in split_sentences[split]:
            speaker = rng.choice(split_speakers[split])
            clip = args.out / "clips" / f"common_voice_sv-SE_{len(jobs) + 1:08d}.mp3"
            jobs.append((split, sentence, speaker, clip))

    with ThreadPoolExecutor(max_workers=4) as pool:
        durations = list(pool.map(lambda j: synthesize(j[1], j[2], j[3]), jobs))

    rows = {"train": [], "dev": [], "test": []}
    dropped = 0
    for (split, sentence, speaker, clip), secs in zip(jobs, durations, strict=True):
        if secs > MAX_SECONDS:
            clip.unlink()
            dropped += 1
            continue
        sid = hashlib.sha256(sentence.encode()).hexdigest()
        rows[split].append(
            [speaker.client_id, clip.name, sid, sentence, "", 2, 0, "", speaker.gender, "", "", "sv-SE", ""]
        )
    for split, split_rows in [*rows.items(), ("validated", rows["train"] + rows["dev"] + rows["test"])]:
        # Common Voice writes quotes inside sentences unescaped, so no csv quoting here either.
        lines = ["\t".join(COLUMNS)] + ["\t".join(map(str, r)) for r in split_rows]
        (args.out / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    size = sum(p.stat().st_size for p in (args.out / "clips").iterdir())
    counts = {k: len(v) for k, v in rows.items()}
    print(f"clips per split {counts}; dropped {dropped} over {MAX_SECONDS} s; {size / 1e6:.1f} MB of mp3")


if __name__ == "__main__":
    main()
