"""QuantizeConfigs per layer class: per-channel Dense, float layers whose outputs feed a Dense,
and explicit no-op configs for every layer kept in float (never silently skipped)."""

from __future__ import annotations

import tensorflow_model_optimization as tfmot
import tf_keras as keras

from converter.compress.quant.quantizers import PerChannelKernelQuantizer, activation_quantizer
from converter.modeling.layers import AddedEmbedding, AttentionCore

quantize = tfmot.quantization.keras


@keras.utils.register_keras_serializable(package="converter")
class NoOpQuantizeConfig(quantize.QuantizeConfig):
    """Leave a layer in float: no weight, activation or output quantizers."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


@keras.utils.register_keras_serializable(package="converter")
class DenseQuantizeConfig(quantize.QuantizeConfig):
    """Dense: per-channel kernel (above), 8-bit asymmetric range on the output."""

    def __init__(self, activation_range: str = "moving_average"):
        self.activation_range = activation_range
        self.kernel_quantizer = PerChannelKernelQuantizer()
        self.activation_quantizer = activation_quantizer(activation_range)

    def get_weights_and_quantizers(self, layer):
        return [(layer.kernel, self.kernel_quantizer)]

    def get_activations_and_quantizers(self, layer):
        return [(layer.activation, self.activation_quantizer)]

    def set_quantize_weights(self, layer, quantize_weights):
        layer.kernel = quantize_weights[0]

    def set_quantize_activations(self, layer, quantize_activations):
        layer.activation = quantize_activations[0]

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {"activation_range": self.activation_range}


@keras.utils.register_keras_serializable(package="converter")
class OutputQuantizeConfig(NoOpQuantizeConfig):
    """A float layer whose output feeds a Dense: computed in float, output fake-quantized to int8.

    The int8 file quantizes every FULLY_CONNECTED input; without this, QAT would train on float
    Dense inputs that the exported model never sees (LayerNorm, GELU and attention outputs)."""

    def __init__(self, activation_range: str = "moving_average"):
        self.activation_range = activation_range

    def get_output_quantizers(self, layer):
        return [activation_quantizer(self.activation_range)]

    def get_config(self):
        return {"activation_range": self.activation_range}


# Layer classes kept float on purpose, each with an explicit config (never silently skipped). The
# residual Add needs one too: unannotated, TF-MOT gives it an output quantizer (a moving average)
# because its output feeds an annotated LayerNorm, and the int8 file keeps that add in float.
FLOAT_LAYERS = (AttentionCore, AddedEmbedding, keras.layers.LayerNormalization, keras.layers.Activation,
                keras.layers.Add)


def float_layer_config(layer, activation_range: str = "moving_average") -> NoOpQuantizeConfig:
    """Outputs read by a Dense (LayerNorm, GELU, attention context) get an int8 output range."""
    feeds_dense = isinstance(layer, (AttentionCore, keras.layers.LayerNormalization)) or (
        isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] == "gelu")
    return OutputQuantizeConfig(activation_range) if feeds_dense else NoOpQuantizeConfig()


@keras.utils.register_keras_serializable(package="converter")
class WeightOnlyQuantizeConfig(NoOpQuantizeConfig):
    """int4w QAT: one weight matrix (a Dense `kernel` or an Embedding's `embeddings`) on its 4- or
    8-bit per-channel grid; activations float, as the int4w file computes them."""

    def __init__(self, num_bits: int, axis: int = -1, attribute: str = "kernel"):
        self.num_bits, self.axis, self.attribute = num_bits, axis, attribute

    def get_weights_and_quantizers(self, layer):
        return [(getattr(layer, self.attribute), PerChannelKernelQuantizer(self.num_bits, self.axis))]

    def set_quantize_weights(self, layer, quantize_weights):
        setattr(layer, self.attribute, quantize_weights[0])

    def get_config(self):
        return {"num_bits": self.num_bits, "axis": self.axis, "attribute": self.attribute}
