"""TF-MOT quantization-aware training: fake-quant every Dense, explicit no-op configs elsewhere.

What QAT quantizes matches the int8 export: Dense kernels (per output channel, symmetric, as
the converter's post-training int8 does) and Dense outputs in int8; the custom layers
(attention core, added embeddings), LayerNorm and GELU stay float islands.

Why a custom Dense config: TF-MOT's default fake-quantizes Dense kernels per tensor (one
scale for the whole matrix: 9.5% of a student's weights rounded to zero, vs 1.4% per
channel), and a per-channel FakeQuant on a Dense kernel makes the TFLite converter fail
("'tfl.transpose' op has mismatched quantized axes"). So the kernel quantizer below simulates
per-channel int8 in training and steps aside while the converter traces the model
(`converter.export.tracing_for_export()`): the converter then rounds the trained kernels per channel itself, which is
exactly the rounding the fine-tune saw (symmetric, narrow range, scale = max|w| / 127). The
activation ranges learned in QAT are kept by the converter as usual."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from converter.config import QatConfig
from converter.export import tracing_for_export
from converter.finetune import fit_classifier
from converter.layers import AddedEmbedding, AttentionCore

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
class PerChannelKernelQuantizer(quantize.quantizers.Quantizer):
    """Symmetric narrow-range int8 fake quantization per output channel (last axis) of a kernel.

    The range is each channel's max |w| at every step (no variables), straight-through gradient."""

    def build(self, tensor_shape, name, layer):
        return {}

    def __call__(self, inputs, training, weights, **kwargs):
        if tracing_for_export():
            return inputs
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
        raise ValueError(f"qat.activation_range: {activation_range!r}; expected one of {sorted(kinds)}")
    return kinds[activation_range](num_bits=8, per_axis=False, symmetric=False, narrow_range=False)


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


# Layer classes kept float on purpose, each with an explicit config (never silently skipped).
FLOAT_LAYERS = (AttentionCore, AddedEmbedding, keras.layers.LayerNormalization, keras.layers.Activation)


def float_layer_config(layer, activation_range: str = "moving_average") -> NoOpQuantizeConfig:
    """Outputs read by a Dense (LayerNorm, GELU, attention context) get an int8 output range."""
    feeds_dense = isinstance(layer, (AttentionCore, keras.layers.LayerNormalization)) or (
        isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] == "gelu")
    return OutputQuantizeConfig(activation_range) if feeds_dense else NoOpQuantizeConfig()


def without_dropout(layer):
    """A copy of a Dropout layer (or of a layer with a dropout_rate, AttentionCore) at rate 0."""
    config = layer.get_config()
    config.update({key: 0.0 for key in ("rate", "dropout_rate") if key in config})
    return layer.__class__.from_config(config)


def annotate(model, per_channel: bool = True, activation_range: str = "moving_average",
             dropout: bool = True) -> keras.Model:
    """Annotate every Dense (per-channel config, or TF-MOT's scheme default) and the float layers
    (NoOp); dropout False: every dropout at rate 0, so training-mode ranges are inference's."""
    from converter.scopes import custom_objects

    def mark(layer):
        if not dropout and isinstance(layer, (keras.layers.Dropout, AttentionCore)):
            layer = without_dropout(layer)  # both weightless
        if isinstance(layer, keras.layers.Dense):
            config = DenseQuantizeConfig(activation_range) if per_channel else None
            return quantize.quantize_annotate_layer(layer, quantize_config=config)
        if isinstance(layer, FLOAT_LAYERS):
            return quantize.quantize_annotate_layer(layer, quantize_config=float_layer_config(layer, activation_range))
        return layer

    with keras.utils.custom_object_scope(custom_objects()):
        return keras.models.clone_model(model, clone_function=mark)


def quantize_model(model, preserve_sparsity: bool = False, activation_range: str = "moving_average",
                   dropout: bool = True) -> keras.Model:
    """annotate + quantize_apply.

    preserve_sparsity uses TF-MOT's prune-preserving QAT scheme, whose own Dense quantizer keeps
    the pruning mask (per tensor); otherwise Dense kernels get the per-channel config above."""
    from converter.scopes import custom_objects

    with quantize.quantize_scope(custom_objects()):
        if preserve_sparsity:
            scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
            return quantize.quantize_apply(annotate(model, False, activation_range, dropout), scheme)
        return quantize.quantize_apply(annotate(model, activation_range=activation_range, dropout=dropout))


def qat(model, train: tuple, dev: tuple, cfg: QatConfig, work_dir: Path, preserve_sparsity: bool = False,
        resume: bool = False, loss=None):
    """A short quantization-aware fine-tune -> (QAT model with fake-quant ops, state).

    `loss` (with matching targets in `train`) lets the student keep learning from the teacher.
    """
    quantized = quantize_model(model, preserve_sparsity, cfg.activation_range, cfg.dropout)
    with quantize.quantize_scope():
        return fit_classifier(quantized, train, dev, cfg.train, work_dir, resume=resume, loss=loss)
