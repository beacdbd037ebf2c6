"""Keras classifier -> TFLite bytes with a fixed [1, seq_len] signature, in four quantizations."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from converter.errors import ConfigError
from converter.files import write_bytes_atomic
from converter.quiet import native_output_parked
from device_runtime.format import INPUT_DTYPE, INPUT_NAMES, OUTPUT_NAME, QUANTIZATIONS, Quantization, needs_calibration
from device_runtime.interpreter import ModelLoadError, TFLiteModel

log = logging.getLogger(__name__)


def serving_function(model, seq_len: int):
    """Concrete function with named int32 inputs of static shape [1, seq_len] and a `logits` output."""
    spec = [tf.TensorSpec([1, seq_len], INPUT_DTYPE, name=name) for name in INPUT_NAMES]

    @tf.function(input_signature=spec)
    def serve(input_ids, attention_mask):
        return {OUTPUT_NAME: model([input_ids, attention_mask], training=False)}

    return serve.get_concrete_function()


def _representative(calibration: dict[str, np.ndarray]):
    def generate():
        for i in range(len(calibration[INPUT_NAMES[0]])):
            yield {name: calibration[name][i:i + 1] for name in INPUT_NAMES}
    return generate


def convert(model, seq_len: int, quantization: str, calibration: dict[str, np.ndarray] | None = None,
            float_ops: tuple[str, ...] = ()) -> bytes:
    """One TFLite flatbuffer. int8 / int16x8 need real calibration inputs (never random ids).

    float_ops: TFLite op types kept in float inside an int8 model ("float islands"), e.g. the
    LayerNorm decomposition and residual adds, whose outlier-heavy ranges int8 cannot hold.
    """
    if quantization not in QUANTIZATIONS or quantization == Quantization.INT4W:
        raise ConfigError(f"unknown quantization {quantization!r} for the TFLite converter; choose from "
                          f"{', '.join(q for q in QUANTIZATIONS if q != Quantization.INT4W)} (int4w: converter.export.lowbit)")
    function = serving_function(model, seq_len)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    if quantization != Quantization.FLOAT32:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == Quantization.FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
    if needs_calibration(quantization):
        if calibration is None:
            raise ConfigError(f"{quantization} needs calibration sentences")
        converter.representative_dataset = _representative(calibration)
        ops = tf.lite.OpsSet
        converter.target_spec.supported_ops = [
            ops.TFLITE_BUILTINS_INT8 if quantization == Quantization.INT8
            else ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        # Float islands need float builtins; so does 16x8, which has no kernel for the mask's CAST.
        if float_ops or quantization == Quantization.INT16X8:
            converter.target_spec.supported_ops.append(ops.TFLITE_BUILTINS)
        if float_ops:
            options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(float_ops))
            with native_output_parked():  # the debugger quantizes (and prints its settings) when built
                debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=converter, debug_dataset=_representative(calibration), debug_options=options)
                return debugger.get_nondebug_quantized_model()
    with native_output_parked():
        return converter.convert()


def export_tflite(model, seq_len: int, quantization: str, path: Path, calibration=None, float_ops=()) -> Path:
    """Convert, prove the new file's inputs are [1, seq_len] (shape and signature), then rename it into place.

    The check runs on a temporary file beside `path`: a file that fails it never replaces the previous export."""
    return write_checked(Path(path), convert(model, seq_len, quantization, calibration, float_ops), seq_len)


def write_checked(path: Path, data: bytes, seq_len: int) -> Path:
    """Write a .tflite flatbuffer to `path` once a temporary copy beside it loads with [1, seq_len] inputs."""

    def check(tmp: Path) -> None:
        try:
            with native_output_parked():  # LiteRT's "Created ... XNNPACK delegate" line
                TFLiteModel(tmp, seq_len=seq_len)
        except ModelLoadError as err:  # name the file being exported, not its temporary twin
            raise ModelLoadError(str(err).replace(str(tmp), str(path))) from None

    write_bytes_atomic(path, data, check)
    log.info("wrote %s (%.2f MB)", path, len(data) / 1e6)
    return path


def tflite_logits(path: Path, inputs: dict[str, np.ndarray], num_threads: int = 2) -> np.ndarray:
    """Run a .tflite file row by row over encoded inputs -> (n, labels) float32 logits."""
    with native_output_parked():
        runner = TFLiteModel(path, num_threads=num_threads)
    rows = len(inputs[INPUT_NAMES[0]])
    return np.concatenate([runner.predict({k: v[i:i + 1] for k, v in inputs.items()}) for i in range(rows)])
