"""Serve the final model in a Gradio page: microphone or upload in, transcript out.

    python app.py                          # the model dvc repro / dvc pull produced, on 127.0.0.1:7860
    python app.py --model-dir models/base --port 8000

`transcribe(audio)` is the whole logic; the page only wires it to the widgets.
"""

import argparse
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from svwhisper.audio import SAMPLE_RATE, AudioError, load_audio, to_mono_16k
from svwhisper.decode import generate_text, load_model
from svwhisper.params import Paths, load_params

SILENCE_PEAK = 1e-3  # peak amplitude below which a recording is treated as silence
MAX_NEW_TOKENS = 128


@dataclass(frozen=True)
class AppParams:
    host: str = "127.0.0.1"
    port: int = 7860


def missing_model(model_dir: str) -> str:
    """A message saying what to run when `model_dir` holds no model, else ""."""
    if (Path(model_dir) / "config.json").is_file():
        return ""
    return f"no model in {model_dir}: run `make repro` (trains it) or `dvc pull` (fetches it)"


@functools.lru_cache(maxsize=2)
def cached_model(model_dir: str):
    """The model and processor of `model_dir`, loaded once per process."""
    return load_model(model_dir)


def to_samples(audio) -> np.ndarray:
    """Gradio's (sample_rate, samples) tuple, a file path, or None -> 16 kHz mono float32."""
    if audio is None:
        raise AudioError("no audio: record something or upload a file")
    if isinstance(audio, tuple):
        rate, samples = audio
        return to_mono_16k(samples, rate)
    path = Path(audio)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path.name}: the file is empty")
    return load_audio(path)


def transcribe(audio, model_dir: str | Path | None = None) -> str:
    """Transcribe `audio` (see to_samples) with the model in `model_dir`; a message for bad input.

    Audio longer than the model window is cut into consecutive windows (no overlap yet).
    """
    try:
        samples = to_samples(audio)
    except AudioError as err:
        return f"⚠️ {err}"
    if np.abs(samples).max() < SILENCE_PEAK:
        return "⚠️ the recording is silent"
    model_dir = str(model_dir or load_params(Paths, "paths").final_model)
    if missing_model(model_dir):
        return f"⚠️ {missing_model(model_dir)}"
    model, processor = cached_model(model_dir)
    window = processor.feature_extractor.n_samples
    chunks = [samples[i : i + window] for i in range(0, len(samples), window)]
    features = processor.feature_extractor(chunks, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
    max_new = min(MAX_NEW_TOKENS, model.config.max_target_positions - 4)  # 4 prompt tokens
    return " ".join(t for t in generate_text(model, processor, features, max_new) if t)


def build_demo(model_dir: str):
    """The page: audio in (microphone or file), transcript out; queued one request at a time."""
    import gradio as gr

    with gr.Blocks(title="svwhisper: Swedish speech recognition") as demo:
        gr.Markdown(f"# svwhisper\nSwedish speech to text with the model in `{model_dir}`.")
        audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Swedish speech")
        button = gr.Button("Transcribe", variant="primary")
        transcript = gr.Textbox(label="Transcript", lines=4)
        button.click(
            functools.partial(transcribe, model_dir=model_dir), inputs=audio, outputs=transcript, api_name="transcribe"
        )
    demo.queue(default_concurrency_limit=1)  # one model, one request at a time
    return demo


def main() -> None:
    params = load_params(AppParams, "app")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=load_params(Paths, "paths").final_model)
    parser.add_argument("--host", default=params.host)
    parser.add_argument("--port", type=int, default=params.port)
    args = parser.parse_args()
    if missing_model(args.model_dir):
        raise SystemExit(missing_model(args.model_dir))
    cached_model(args.model_dir)  # load before serving, so the first request is not slow
    build_demo(args.model_dir).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
