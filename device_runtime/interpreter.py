"""A thin wrapper over a LiteRT / TFLite interpreter: load once, feed inputs by name, get logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from device_runtime.errors import BundleInputError

INSTALL_HINT = "pip install ai-edge-litert  (or the project's device extra: pip install '.[device]')"


class ModelLoadError(BundleInputError, RuntimeError):
    """A .tflite file is missing, unreadable or has the wrong signature; the message names it."""


def resolve_backend():
    """-> (Interpreter class, package name): ai_edge_litert, else tflite_runtime when present.

    Never TensorFlow: the device side needs only numpy and a LiteRT interpreter, and both the
    host and the device extras install ai-edge-litert."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        raise ModelLoadError(f"no TFLite interpreter installed: {INSTALL_HINT}") from None


def backend_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


class TFLiteModel:
    """One model, allocated once. Not thread-safe: use one instance per thread.

    Args:
        path: the .tflite file.
        seq_len: when given, every input must have shape [1, seq_len] (checked at load).
        num_threads: interpreter threads (None: the interpreter's default).
    """

    def __init__(self, path: str | Path, seq_len: int | None = None, num_threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path}: file not found")
        interpreter_class, self.backend = resolve_backend()
        try:
            self.interpreter = interpreter_class(model_path=str(self.path), num_threads=num_threads)
            self.runner = self.interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as err:
            raise ModelLoadError(f"{self.path}: not a loadable TFLite model ({str(err).splitlines()[0]})") from None
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()
        self.output_name = next(iter(self.outputs))
        if seq_len is not None:
            self.check_input_shapes(seq_len)

    def input_shapes(self) -> dict[str, list[int]]:
        return {name: [int(d) for d in detail["shape"]] for name, detail in self.inputs.items()}

    def check_input_shapes(self, seq_len: int) -> None:
        """Raise unless every input's shape and shape_signature are [1, seq_len]."""
        for name, detail in self.inputs.items():
            for key in ("shape", "shape_signature"):
                shape = [int(d) for d in detail.get(key, detail["shape"])]
                if shape != [1, seq_len]:
                    raise ModelLoadError(f"{self.path}: input {name!r} has {key} {shape}, expected [1, {seq_len}]")

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """inputs: arrays keyed by input name, shape [1, seq_len]. Returns float32 logits (1, labels)."""
        missing = set(self.inputs) - set(inputs)
        if missing:
            raise KeyError(f"{self.path}: missing inputs {sorted(missing)}")
        feed = {name: np.asarray(inputs[name], dtype=self.inputs[name]["dtype"]) for name in self.inputs}
        out = self.runner(**feed)[self.output_name]
        scale, zero_point = self.outputs[self.output_name].get("quantization", (0.0, 0))
        if out.dtype != np.float32 and scale:
            out = (out.astype(np.float32) - zero_point) * scale
        return out.astype(np.float32)
