"""Read a CTranslate2 Whisper `model.bin` and turn it into transformers' `WhisperForConditionalGeneration`.

The file is CTranslate2's binary layout (ctranslate2/specs/model_spec.py, `_serialize`), all
integers little-endian:

    uint32 version (6) | string spec name ("WhisperSpec") | uint32 spec revision | uint32 n_variables
    n_variables x ( string name | uint8 rank | rank x uint32 dim | uint8 dtype | uint32 n_bytes | bytes )
    uint32 n_aliases | n_aliases x ( string alias | string variable name )

where a string is uint16 length (terminating NUL included), UTF-8 bytes, NUL, and dtype indexes
(float32, int8, int16, int32, float16, bfloat16). The variables map one to one onto transformers'
names (`L` a layer index; every weight is (out, in), as in torch's Linear and Conv1d):

    encoder/conv1, encoder/conv2                  model.encoder.conv1, conv2
    {enc,dec}oder/position_encodings/encodings    model.{enc,dec}oder.embed_positions.weight
    {enc,dec}oder/layer_L/self_attention/linear_0 q | k | v stacked on the output axis (k has no bias:
                                                  its bias slice is zero) -> self_attn.{q,k,v}_proj
    {enc,dec}oder/layer_L/self_attention/linear_1 self_attn.out_proj
    decoder/layer_L/attention/linear_0            encoder_attn.q_proj (cross-attention)
    decoder/layer_L/attention/linear_1            encoder_attn.k_proj | v_proj stacked (k without bias)
    decoder/layer_L/attention/linear_2            encoder_attn.out_proj
    .../self_attention/layer_norm                 self_attn_layer_norm      (gamma -> weight, beta -> bias)
    .../attention/layer_norm                      encoder_attn_layer_norm
    .../ffn/linear_0, ffn/linear_1, ffn/layer_norm  fc1, fc2, final_layer_norm
    {enc,dec}oder/layer_norm                      model.{enc,dec}oder.layer_norm
    decoder/embeddings/weight                     model.decoder.embed_tokens.weight; the output projection
                                                  (alias decoder/projection/weight) is tied to it: proj_out

A variable equal to one already written is stored as an alias of it (the tied projection, and in a
fresh model the zero biases and unit LayerNorm scales); the reader resolves aliases. Scalars such as
`decoder/num_heads` or `encoder/num_heads` describe the architecture.
"""

import re
import struct
from dataclasses import dataclass

import numpy as np
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

BINARY_VERSION = 6
SPEC_NAME = "WhisperSpec"
DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)  # None: bfloat16, not in numpy


@dataclass(frozen=True)
class CT2Model:
    """The parsed contents of a CTranslate2 `model.bin`; `variables` includes each alias, resolved."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.offset = memoryview(data), 0

    def unpack(self, fmt: str):
        value = struct.unpack_from("<" + fmt, self.data, self.offset)[0]
        self.offset += struct.calcsize("<" + fmt)
        return value

    def string(self) -> str:
        length = self.unpack("H")
        text = bytes(self.data[self.offset : self.offset + length - 1]).decode("utf-8")
        self.offset += length
        return text

    def take(self, n_bytes: int) -> memoryview:
        if self.offset + n_bytes > len(self.data):
            raise ValueError(f"model.bin is truncated: a variable needs {n_bytes} bytes at offset {self.offset}")
        chunk = self.data[self.offset : self.offset + n_bytes]
        self.offset += n_bytes
        return chunk


def read_model_bin(data: bytes) -> CT2Model:
    """Parse the bytes of a CTranslate2 `model.bin` (binary version 6). Arrays are copies, writable."""
    reader = _Reader(data)
    version = reader.unpack("I")
    if version != BINARY_VERSION:
        raise ValueError(f"model.bin has binary version {version}; this reader knows version {BINARY_VERSION}")
    spec, revision = reader.string(), reader.unpack("I")
    variables = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        shape = [reader.unpack("I") for _ in range(reader.unpack("B"))]
        dtype_id = reader.unpack("B")
        if dtype_id >= len(DTYPES) or DTYPES[dtype_id] is None:
            raise ValueError(f"model.bin: {name} has dtype id {dtype_id}, which this reader does not handle")
        raw = reader.take(reader.unpack("I"))
        variables[name] = np.frombuffer(raw, dtype=DTYPES[dtype_id]).reshape(shape).copy()
    aliases = {}
    for _ in range(reader.unpack("I")):
        alias = reader.string()
        aliases[alias] = reader.string()
        # the converter stores equal variables once (a tied projection; zero biases of a fresh model)
        variables[alias] = variables[aliases[alias]]
    if reader.offset != len(data):
        raise ValueError(f"model.bin has {len(data) - reader.offset} unexpected bytes after its aliases")
    return CT2Model(spec, revision, variables, aliases)


def _layer_count(variables: dict[str, np.ndarray], stack: str) -> int:
    return len({name.split("/")[1] for name in variables if re.match(rf"{stack}/layer_\d+/", name)})


def whisper_config(ct2: CT2Model, **token_ids) -> WhisperConfig:
    """The WhisperConfig whose shapes match `ct2`'s variables; `token_ids` (pad_token_id, ...) pass through."""
    if ct2.spec != SPEC_NAME:
        raise ValueError(f"model.bin holds a {ct2.spec}, not a {SPEC_NAME}")
    v = ct2.variables
    vocab_size, d_model = v["decoder/embeddings/weight"].shape
    return WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=v["encoder/conv1/weight"].shape[1],
        d_model=d_model,
        encoder_layers=_layer_count(v, "encoder"),
        decoder_layers=_layer_count(v, "decoder"),
        encoder_attention_heads=int(v["encoder/num_heads"]),
        decoder_attention_heads=int(v["decoder/num_heads"]),
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        scale_embedding=bool(v.get("decoder/scale_embeddings", np.int8(0))),
        tie_word_embeddings=True,
        **token_ids,
    )


def _split_linear(v: dict, prefix: str, names: list[str], biasless: set[str]) -> dict[str, np.ndarray]:
    """A fused linear `prefix` (rows stacked in `names` order) -> {name.weight, name.bias} per part."""
    weight, bias = v[f"{prefix}/weight"], v[f"{prefix}/bias"]
    rows = weight.shape[0] // len(names)
    out = {}
    for i, name in enumerate(names):
        out[f"{name}.weight"] = weight[i * rows : (i + 1) * rows]
        part = bias[i * rows : (i + 1) * rows]
        if name in biasless:
            if np.any(part != 0):
                raise ValueError(f"{prefix}: the bias of {name} must be zero (transformers' Whisper has none)")
        else:
            out[f"{name}.bias"] = part
    return out


def _linear(v: dict, prefix: str, name: str) -> dict[str, np.ndarray]:
    return {f"{name}.weight": v[f"{prefix}/weight"], f"{name}.bias": v[f"{prefix}/bias"]}


def _norm(v: dict, prefix: str, name: str) -> dict[str, np.ndarray]:
    return {f"{name}.weight": v[f"{prefix}/gamma"], f"{name}.bias": v[f"{prefix}/beta"]}


def _layer(v: dict, stack: str, i: int) -> dict[str, np.ndarray]:
    src, dst = f"{stack}/layer_{i}", f"model.{stack}.layers.{i}"
    qkv = [f"{dst}.self_attn.{p}_proj" for p in "qkv"]
    state = {
        **_split_linear(v, f"{src}/self_attention/linear_0", qkv, {qkv[1]}),
        **_linear(v, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj"),
        **_norm(v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm"),
        **_linear(v, f"{src}/ffn/linear_0", f"{dst}.fc1"),
        **_linear(v, f"{src}/ffn/linear_1", f"{dst}.fc2"),
        **_norm(v, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm"),
    }
    if stack == "decoder":
        kv = [f"{dst}.encoder_attn.{p}_proj" for p in "kv"]
        state |= {
            **_linear(v, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj"),
            **_split_linear(v, f"{src}/attention/linear_1", kv, {kv[0]}),
            **_linear(v, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj"),
            **_norm(v, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm"),
        }
    return state


def state_dict(ct2: CT2Model, config: WhisperConfig) -> dict[str, torch.Tensor]:
    """transformers' state dict (float32) of `ct2`'s weights, `proj_out` left to the tied embeddings."""
    v = ct2.variables
    projection = v.get("decoder/projection/weight", v["decoder/embeddings/weight"])
    if not np.array_equal(projection, v["decoder/embeddings/weight"]):
        raise ValueError("model.bin: the output projection is not tied to the token embeddings")
    state = {
        **_linear(v, "encoder/conv1", "model.encoder.conv1"),
        **_linear(v, "encoder/conv2", "model.encoder.conv2"),
        "model.encoder.embed_positions.weight": v["encoder/position_encodings/encodings"],
        **_norm(v, "encoder/layer_norm", "model.encoder.layer_norm"),
        "model.decoder.embed_tokens.weight": v["decoder/embeddings/weight"],
        "model.decoder.embed_positions.weight": v["decoder/position_encodings/encodings"],
        **_norm(v, "decoder/layer_norm", "model.decoder.layer_norm"),
    }
    for stack, n_layers in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers)):
        for i in range(n_layers):
            state |= _layer(v, stack, i)
    return {name: torch.from_numpy(np.asarray(array, dtype=np.float32)) for name, array in state.items()}


def to_transformers(ct2: CT2Model, **token_ids) -> WhisperForConditionalGeneration:
    """`ct2` as a float32 WhisperForConditionalGeneration; every one of its weights is set from the file."""
    config = whisper_config(ct2, **token_ids)
    model = WhisperForConditionalGeneration(config)
    weights = state_dict(ct2, config)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [name for name in missing if name != "proj_out.weight"]  # tied to embed_tokens
    if missing or unexpected:
        raise ValueError(f"model.bin does not fit transformers' Whisper: missing {missing}, extra {unexpected}")
    model.tie_weights()
    return model.eval()
