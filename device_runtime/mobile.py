"""The bundle's MediaPipe-ready files (manifest key `mobile`) and the checks `verify` runs on each.

Standard library, numpy and LiteRT only: MediaPipe itself is never imported on the device side."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from device_runtime.format import MOBILE_INPUT_NAMES, MOBILE_OUTPUT_NAME, Key
from device_runtime.interpreter import ModelLoadError, TFLiteModel
from device_runtime.validate import BundleError


def mobile_entries(manifest: dict) -> list[dict]:
    """The manifest's `mobile` entries (a checked manifest: a list of objects, or absent)."""
    return list(manifest.get(Key.MOBILE, []))


def check_mobile_file(path: Path, seq_len: int, num_labels: int) -> TFLiteModel:
    """Load `path` with LiteRT and check MediaPipe's BERT signature: the three MOBILE_INPUT_NAMES, int32
    [1, seq_len], and one float32 output MOBILE_OUTPUT_NAME [1, num_labels]. Raises ModelLoadError."""
    model = TFLiteModel(path, seq_len=seq_len)
    if sorted(model.inputs) != sorted(MOBILE_INPUT_NAMES):
        raise ModelLoadError(f"{path}: inputs {sorted(model.inputs)}, expected {sorted(MOBILE_INPUT_NAMES)}")
    wrong = [name for name, detail in model.inputs.items() if np.dtype(detail["dtype"]) != np.int32]
    if wrong:
        raise ModelLoadError(f"{path}: inputs {wrong} are not int32")
    if list(model.outputs) != [MOBILE_OUTPUT_NAME]:
        raise ModelLoadError(f"{path}: outputs {list(model.outputs)}, expected [{MOBILE_OUTPUT_NAME!r}]")
    output = model.outputs[MOBILE_OUTPUT_NAME]
    shape = [int(d) for d in output["shape"]]
    if np.dtype(output["dtype"]) != np.float32 or shape != [1, num_labels]:
        raise ModelLoadError(f"{path}: output {MOBILE_OUTPUT_NAME!r} is {np.dtype(output['dtype'])} {shape}, "
                             f"expected float32 [1, {num_labels}]")
    return model


def mobile_problems(bundle, entry: dict) -> list[str]:
    """Every problem of one mobile entry of `bundle` (a device_runtime.bundle.Bundle): its source model, the
    file's size and sha256, and its signature. Each problem starts with the entry's name."""
    name = entry[Key.NAME]
    sources = {m[Key.NAME]: m for m in bundle.models}
    source = sources.get(entry[Key.SOURCE_MODEL])
    if source is None:
        return [f"{name}: source_model {entry[Key.SOURCE_MODEL]!r} is not a model of this bundle"]
    try:
        path = bundle.file(entry[Key.FILE])
    except BundleError as err:
        return [f"{name}: {err}"]
    if not path.is_file():
        return [f"{name}: {path} missing"]
    if path.stat().st_size != entry[Key.BYTES]:
        return [f"{name}: {path} has {path.stat().st_size} bytes, manifest says {entry[Key.BYTES]}"]
    if hashlib.sha256(path.read_bytes()).hexdigest() != entry[Key.SHA256]:
        return [f"{name}: {path} sha256 differs from the manifest"]
    problems = []
    if entry[Key.SOURCE_SHA256] != source[Key.SHA256]:
        problems.append(f"{name}: built from another {source[Key.NAME]} (source_sha256 differs); rebuild it with "
                        f"python -m converter mobile --bundle {bundle.folder} --model {source[Key.NAME]}")
    try:
        check_mobile_file(path, int(source.get(Key.SEQ_LEN, bundle.seq_len)), len(bundle.labels))
    except ModelLoadError as err:
        problems.append(f"{name}: {err}")
    return problems
