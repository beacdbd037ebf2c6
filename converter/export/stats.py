"""What an exported .tflite file really holds: encoder weight sparsity, gzip size, which ops run in int8."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import numpy as np

from converter.modeling import names
from device_runtime.interpreter import TFLiteModel


def encoder_weights(path: Path) -> dict[str, np.ndarray]:
    """The constant weight of every encoder FULLY_CONNECTED op, by tensor name (through DEQUANTIZE)."""
    return {name: array for name, (array, _) in _encoder_weight_tensors(path).items()}


def encoder_weight_scales(path: Path) -> dict[str, int]:
    """How many quantization scales each encoder weight carries (1 = per tensor, rows = per channel)."""
    return {name: len(detail["quantization_parameters"]["scales"])
            for name, (_, detail) in _encoder_weight_tensors(path).items()}


def _encoder_weight_tensors(path: Path) -> dict[str, tuple[np.ndarray, dict]]:
    interpreter = TFLiteModel(path).interpreter
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    producer = {out: op for op in ops for out in op["outputs"]}
    weights = {}
    for op in ops:
        if op["op_name"] != "FULLY_CONNECTED":
            continue
        index = op["inputs"][1]
        if index in producer and producer[index]["op_name"] == "DEQUANTIZE":
            index = producer[index]["inputs"][0]
        name = tensors[index]["name"]
        if names.ENCODER_WEIGHT_TENSOR.search(name):
            weights[name] = (interpreter.get_tensor(index), tensors[index])
    return weights


def int8_ops(path: Path) -> Counter:
    """How many ops of each type compute in int8 (an int8 output), QUANTIZE and DEQUANTIZE aside."""
    interpreter = TFLiteModel(path).interpreter
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    return Counter(op["op_name"] for op in interpreter._get_ops_details()
                   if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
                   and any(dtypes.get(i) == np.int8 for i in op["outputs"]))


def encoder_sparsity(path: Path) -> float:
    """Fraction of exactly-zero values over all encoder Dense weights in the file."""
    weights = encoder_weights(path)
    if not weights:
        raise ValueError(f"{path}: no encoder FULLY_CONNECTED weights found")
    zeros = sum(int(np.count_nonzero(w == 0)) for w in weights.values())
    return zeros / sum(w.size for w in weights.values())


def gzip_bytes(path: Path) -> int:
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=9))
