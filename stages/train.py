"""train: fine-tune the base model with Seq2SeqTrainer; the best checkpoint by dev WER is the final model.

Checkpoints go to `<checkpoints>/<fingerprint of params, inputs, code and libraries>/` every `save_steps`;
a rerun after a kill resumes from the newest complete one of the same fingerprint, here or, when this
machine has none as new, on the remote (svwhisper.checkpoints, svwhisper.remote).

    python -m stages.train --base-model models/base --features data/features \
        --checkpoints checkpoints --dvclive dvclive --out models/final
"""

import argparse
import os
import resource
from pathlib import Path

import torch
from dvclive import Live
from transformers import (
    WhisperConfig,
    WhisperProcessor,
    set_seed,
)

from svwhisper.checkpoints import MarkComplete, resumable, run_fingerprint, start_or_resume
from svwhisper.data import FeatureSplit, SpeechCollator
from svwhisper.paramfile import PARAMS_FILE, ParamsError, load_params
from svwhisper.params import RemoteParams, TrainParams
from svwhisper.remote import CheckpointMirror, fetch_run_from_remote
from svwhisper.text import no_speech_token
from svwhisper.trainer import (
    JointCTCTrainer,
    TrainStepDVCLive,
    build_model,
    check_generation_fits,
    resolve_precision,
    save_final,
    train_or_explain_oom,
    training_args,
    wer_metric,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--checkpoints", type=Path, required=True, help="checkpoint root, one dir per run")
    parser.add_argument("--dvclive", type=Path, required=True, help="dvclive directory")
    parser.add_argument("--out", type=Path, required=True, help="final model dir")
    return parser.parse_args()


def checked_precision(params: TrainParams, base_model: Path) -> str:
    """The precision to train in; SystemExit naming the key for what this machine or the decoder cannot take."""
    try:
        precision = resolve_precision(params.precision)
    except ValueError as err:
        raise SystemExit(f"params.yaml: {err}") from None
    positions = WhisperConfig.from_pretrained(base_model).max_target_positions
    try:  # generation_max_length counts the prompt: it must fit the decoder, or the first evaluation fails
        check_generation_fits(PARAMS_FILE, "train", "generation_max_length", params.generation_max_length, 0, positions)
    except ParamsError as err:
        raise SystemExit(f"train: {err}") from None
    return precision


def dev_split(features: Path, params: TrainParams):
    dev = FeatureSplit(features / "dev")
    if params.eval_max_samples and params.eval_max_samples < len(dev):
        dev = torch.utils.data.Subset(dev, range(params.eval_max_samples))  # the same clips at every eval
    return dev


def collator_for(processor, model) -> SpeechCollator:
    """The collator, told the no-speech token and the prompt decoding forces (see SpeechCollator)."""
    prompt = tuple(processor.tokenizer("").input_ids[:-1])  # start, language, task, no timestamps: as featurize
    return SpeechCollator(
        processor.feature_extractor.nb_max_frames,
        model.config.decoder_start_token_id,
        no_speech_token(processor.tokenizer),
        prompt,
    )


def report_kept(run_dir: Path) -> None:
    kept = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file()) / 1e6
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"train: peak RSS {peak_mb:.0f} MB; checkpoints kept in {run_dir}: {kept:.0f} MB")


def main() -> None:
    args = parse_args()
    params = load_params(TrainParams, "train")
    precision = checked_precision(params, args.base_model)
    set_seed(params.seed)  # before anything draws random numbers (the CTC head's init): reruns are repeatable
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun/accelerate, one process logs and saves
    processor = WhisperProcessor.from_pretrained(args.base_model)
    eot = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model = build_model(params, args.base_model, eot)
    digest = run_fingerprint(params, [args.base_model, args.features])
    run_dir, remote = args.checkpoints / digest, load_params(RemoteParams, "remote")
    resume_from, mirror, live = None, None, None
    if main_process:
        if remote.push_checkpoints:  # a run preempted on another machine goes on from its newest pushed checkpoint
            fetch_run_from_remote(Path.cwd(), remote, run_dir, digest)
        resume_from = start_or_resume(run_dir, args.dvclive)
        mirror = CheckpointMirror(Path.cwd(), remote, run_dir, digest) if remote.push_checkpoints else None
        live = Live(dir=str(args.dvclive), dvcyaml=None, save_dvc_exp=False, report=None, resume=bool(resume_from))
    trainer = JointCTCTrainer(
        model=model,
        args=training_args(params, run_dir, precision),
        train_dataset=FeatureSplit(args.features / "train"),
        eval_dataset=dev_split(args.features, params),
        data_collator=collator_for(processor, model),
        processing_class=processor,
        compute_metrics=wer_metric(processor),
        callbacks=[TrainStepDVCLive(live=live, log_model=None), MarkComplete(args.dvclive), *filter(None, [mirror])],
        ctc_weight=params.ctc_weight,
        blank_id=eot,
    )
    trainer.accelerator.wait_for_everyone()  # the other ranks look for a checkpoint once rank 0 has fetched/cleaned
    resume_from = resume_from if main_process else resumable(run_dir)[0]
    try:
        train_or_explain_oom(trainer, params, resume_from)
        if trainer.is_world_process_zero():
            save_final(trainer, processor, args.out)  # before the mirror's last upload is waited for
    finally:
        if mirror is not None:
            mirror.close(remote.close_timeout_s)  # the newest checkpoint reaches the remote even after an error
    if live is not None:
        live.end()
    if trainer.is_world_process_zero():
        report_kept(run_dir)


if __name__ == "__main__":
    main()
