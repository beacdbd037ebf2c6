"""4-bit and mixed 4/8-bit weights (quantization `int4w`): weights of each layer group at 4 or 8 bits,
symmetric, one scale per output channel (per row for the word table); activations stay float and
the fully-connected kernels quantize them on the fly (dynamic range), as `dynamic` does at 8 bits.

The weights are first put on their grid in Keras (fake_quantize: w -> round(w / s) * s with
s = max|w| / (2^(bits-1) - 1) per channel), then the float file is converted and litert-quantizer
writes the integer tensors with the same per-channel scales, so the file's integers times its
scales are the fake-quantized Keras weights (tests/test_lowbit.py). The word-table GATHER is
rewritten into EMBEDDING_LOOKUP first (converter.export.lookup): the quantizer leaves a GATHER's
table in float. The head (pooler, classifier) stays at 8 bits: a few thousand weights."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converter.errors import ConfigError
from converter.export.lookup import gather_to_embedding_lookup
from converter.export.tflite import convert, write_checked
from converter.modeling import names
from converter.quiet import native_output_parked
from device_runtime.interpreter import ModelLoadError

log = logging.getLogger(__name__)

GROUPS = ("embeddings", "attention", "ffn")
HEAD_BITS = 8
# TFLite op output names of each group's fully-connected ops (the query's carries the folded
# 1/sqrt(head_size) `attn_core/mul` in its name too, and still matches attn_query).
_FC_PATTERN = {
    "embeddings": rf"{names.PROJECT}/",
    "attention": rf"layer_\d+_({'|'.join(names.ATTN_DENSE)})/",
    "ffn": rf"layer_\d+_({'|'.join(names.FFN_DENSE)})/",
}  # matched (re.search) after a "/" or ";": the model itself is named bert_classifier. Every other
# fully-connected op (pooler, and the classifier, whose output tensor is the signature's `logits`) is the head.


@dataclass(frozen=True)
class WeightBits:
    """Bits per weight of each layer group: 4 or 8."""

    embeddings: int = 4
    attention: int = 4
    ffn: int = 4

    def __post_init__(self):
        for group in GROUPS:
            if getattr(self, group) not in (4, 8):
                raise ConfigError(f"WeightBits.{group}: {getattr(self, group)}; 4 or 8")

    @property
    def tag(self) -> str:
        """e4a4f4: embeddings, attention, FFN bits."""
        return "".join(f"{group[0]}{getattr(self, group)}" for group in GROUPS)

    def as_dict(self) -> dict:
        return {**{group: getattr(self, group) for group in GROUPS}, "head": HEAD_BITS}

    @classmethod
    def every(cls) -> list[WeightBits]:
        """All eight combinations, all-4 first."""
        return [cls(e, a, f) for e in (4, 8) for a in (4, 8) for f in (4, 8)]


def on_grid(weights: np.ndarray, bits: int, axis: int) -> np.ndarray:
    """Symmetric per-channel fake quantization along `axis` (the channel axis), as litert-quantizer
    computes it: scale = max|w| / (2^(bits-1) - 1) per channel, w -> round(w / scale) * scale."""
    qmax = 2 ** (bits - 1) - 1
    reduce = tuple(i for i in range(weights.ndim) if i != axis % weights.ndim)
    bound = np.maximum(np.abs(weights).max(axis=reduce, keepdims=True), 1e-9)
    scale = (bound / qmax).astype(np.float32)
    return (np.clip(np.rint(weights / scale), -qmax, qmax) * scale).astype(np.float32)


def layer_groups(model) -> dict[str, list]:
    """Keras layers with weight matrices by group (embeddings, attention, ffn, head)."""
    groups = {group: [] for group in (*GROUPS, "head")}
    block = re.compile(r"^layer_\d+_(.+)$")
    for layer in model.layers:
        part = block.match(layer.name)
        if layer.name in (names.WORD, names.PROJECT):
            groups["embeddings"].append(layer)
        elif part and part.group(1) in names.ATTN_DENSE:
            groups["attention"].append(layer)
        elif part and part.group(1) in names.FFN_DENSE:
            groups["ffn"].append(layer)
        elif layer.name in names.HEAD:
            groups["head"].append(layer)
    return groups


def fake_quantize(model, bits: WeightBits) -> None:
    """Put every weight matrix of `model` on its group's grid, in place (biases, norms and the
    position table stay float). Dense kernels [in, out]: one scale per output column; the word
    table [rows, width]: one per row."""
    for group, layers in layer_groups(model).items():
        count = HEAD_BITS if group == "head" else getattr(bits, group)
        for layer in layers:
            weights = layer.get_weights()
            axis = 0 if layer.name == names.WORD else -1
            weights[0] = on_grid(weights[0], count, axis)
            layer.set_weights(weights)


def recipe(bits: WeightBits, lookup: bool):
    """litert-quantizer's recipe: dynamic-range, channel-wise, per group's bits."""
    from litert_quantizer import qtyping, recipe_manager

    op = qtyping.TFLOperationName
    manager = recipe_manager.RecipeManager()
    manager.add_dynamic_config(".*", op.FULLY_CONNECTED, HEAD_BITS, qtyping.QuantGranularity.CHANNELWISE)
    for group, pattern in _FC_PATTERN.items():  # the last matching config wins
        manager.add_dynamic_config(f"(?:^|[/;]){pattern}", op.FULLY_CONNECTED, getattr(bits, group),
                                   qtyping.QuantGranularity.CHANNELWISE)
    if lookup:
        manager.add_dynamic_config(".*", op.EMBEDDING_LOOKUP, bits.embeddings, qtyping.QuantGranularity.CHANNELWISE)
    return manager.get_quantization_recipe()


def lowbit_bytes(model, seq_len: int, bits: WeightBits) -> bytes:
    """The `int4w` flatbuffer of a model whose weights are already on the grid (fake_quantize)."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # litert-quantizer's progress bars
    from litert_quantizer import quantizer

    data, tables = gather_to_embedding_lookup(convert(model, seq_len, "float32"))
    if names.WORD not in " ".join(tables):
        raise ModelLoadError(f"{model.name}: no word-table GATHER found to quantize (tables rewritten: {tables})")
    with native_output_parked():
        job = quantizer.Quantizer(bytearray(data))
        job.load_quantization_recipe(recipe(bits, lookup=True))
        return bytes(job.quantize().quantized_model)


def export_lowbit(model, seq_len: int, bits: WeightBits, path: Path) -> Path:
    """Fake-quantized `model` (see fake_quantize) -> its int4w file at `path`, checked for a
    [1, seq_len] signature before it replaces anything (as export_tflite)."""
    return write_checked(Path(path), lowbit_bytes(model, seq_len, bits), seq_len)


def file_weights(path: Path) -> dict[str, tuple[int, np.ndarray]]:
    """Every integer weight tensor of a .tflite file -> {name: (bits, integers times scales)}, the
    integers unpacked (INT4: two per byte, low nibble first) and scaled along the quantized dimension."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    graph, out = model.subgraphs[0], {}
    for tensor in graph.tensors:
        params, data = tensor.quantization, model.buffers[tensor.buffer].data
        if params is None or params.scale is None or data is None or len(data) == 0:
            continue
        shape, raw = [int(d) for d in tensor.shape], np.asarray(data, np.uint8)
        if tensor.type == schema.TensorType.INT4:
            values = np.empty(raw.size * 2, np.int8)
            values[0::2], values[1::2] = raw & 0xF, raw >> 4
            values = ((values ^ 8) - 8)[: int(np.prod(shape))]
            bits = 4
        elif tensor.type == schema.TensorType.INT8:
            values, bits = raw.view(np.int8), 8
        else:
            continue
        scale = np.asarray(params.scale, np.float32)
        axis = int(params.quantizedDimension)
        view = [1] * len(shape)
        view[axis] = -1 if scale.size > 1 else 1
        out[tensor.name.decode()] = (bits, values.reshape(shape).astype(np.float32) * scale.reshape(view))
    return out
