"""Fake quantizers: the converter's per-channel int8 kernel rounding, and 8-bit activation ranges."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from converter.errors import ConfigError

quantize = tfmot.quantization.keras


@keras.utils.register_keras_serializable(package="converter")
class PerChannelKernelQuantizer(quantize.quantizers.Quantizer):
    """Symmetric narrow-range fake quantization per channel of a weight matrix: int8 (QAT) or 4-bit
    (int4w), w -> round(w / s) * s with s = max|w| / (2^(bits-1) - 1), the grid of
    converter.export.lowbit.on_grid. axis -1: a Dense kernel's output columns; 0: an embedding table's rows.

    The range is each channel's max |w| at every step (no variables), straight-through gradient."""

    def __init__(self, num_bits: int = 8, axis: int = -1):
        self.num_bits, self.axis = num_bits, axis

    def build(self, tensor_shape, name, layer):
        return {}

    def __call__(self, inputs, training, weights, **kwargs):
        rows = self.axis == 0  # fake_quant_*_per_channel takes the channels on the last axis
        values = tf.transpose(inputs) if rows else inputs
        bound = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(values), axis=list(range(values.shape.rank - 1))), 1e-8))
        out = tf.quantization.fake_quant_with_min_max_vars_per_channel(values, -bound, bound, num_bits=self.num_bits,
                                                                       narrow_range=True)
        return tf.transpose(out) if rows else out

    def get_config(self):
        return {"num_bits": self.num_bits, "axis": self.axis}

    def __eq__(self, other):
        return isinstance(other, PerChannelKernelQuantizer) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)


def activation_quantizer(activation_range: str):
    """8-bit asymmetric per-tensor range: "moving_average" of batch min/max (TF-MOT's default), or
    "all_values", the min/max over every batch seen (what post-training calibration takes)."""
    kinds = {"moving_average": quantize.quantizers.MovingAverageQuantizer,
             "all_values": quantize.quantizers.AllValuesQuantizer}
    if activation_range not in kinds:
        raise ConfigError(f"qat.activation_range: {activation_range!r}; expected one of {sorted(kinds)}")
    return kinds[activation_range](num_bits=8, per_axis=False, symmetric=False, narrow_range=False)
