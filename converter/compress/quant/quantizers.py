"""Fake quantizers: the converter's per-channel int8 kernel rounding, and 8-bit activation ranges."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from converter.errors import ConfigError

quantize = tfmot.quantization.keras


@keras.utils.register_keras_serializable(package="converter")
class PerChannelKernelQuantizer(quantize.quantizers.Quantizer):
    """Symmetric narrow-range int8 fake quantization per output channel (last axis) of a kernel.

    The range is each channel's max |w| at every step (no variables), straight-through gradient."""

    def build(self, tensor_shape, name, layer):
        return {}

    def __call__(self, inputs, training, weights, **kwargs):
        bound = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(inputs), axis=list(range(inputs.shape.rank - 1))), 1e-8))
        return tf.quantization.fake_quant_with_min_max_vars_per_channel(inputs, -bound, bound, num_bits=8,
                                                                        narrow_range=True)

    def get_config(self):
        return {}

    def __eq__(self, other):
        return isinstance(other, PerChannelKernelQuantizer)

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
