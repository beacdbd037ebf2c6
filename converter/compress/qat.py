"""TF-MOT quantization-aware training: fake-quant every Dense, explicit no-op configs elsewhere.

What QAT quantizes matches the int8 export: Dense kernels (per output channel, symmetric, as
the converter's post-training int8 does), Dense outputs, and the float layers' outputs that a
Dense reads (LayerNorm, GELU, attention context) in int8; the custom layers (attention core,
added embeddings), LayerNorm, GELU and the residual adds compute in float, as in the file.

Export (`trained_float`): the fine-tuned weights go back into the float model, which is converted
exactly like post-training int8 (same float islands, per-channel kernel rounding, calibrated
activation ranges). Converting the fake-quant graph itself put the residual adds, LayerNorm means
and the attention probabilities x values matmul in int8 (the fake-quant ranges around them made
the converter quantize them despite the float-island list), which the fine-tune never simulated
(docs/design.md has the dev figures).

Why a custom Dense config: TF-MOT's default fake-quantizes Dense kernels per tensor (one
scale for the whole matrix rounds far more small weights to zero than one scale per channel).
The kernel quantizer below simulates the converter's per-channel int8 rounding (symmetric,
narrow range, scale = max|w| / 127); a per-channel FakeQuant in the graph handed to the
converter would fail ("'tfl.transpose' op has mismatched quantized axes"), another
reason the float model is what gets converted."""

from __future__ import annotations

from pathlib import Path

import tensorflow_model_optimization as tfmot
import tf_keras as keras

from converter.compress.quant.configs import (
    FLOAT_LAYERS,
    DenseQuantizeConfig,
    NoOpQuantizeConfig,
    WeightOnlyQuantizeConfig,
    float_layer_config,
)
from converter.compress.quant.registry import custom_objects
from converter.config import FinetuneConfig, QatConfig
from converter.modeling.layers import AttentionCore
from converter.train.finetune import fit_classifier

quantize = tfmot.quantization.keras


def without_dropout(layer):
    """A copy of a Dropout layer (or of a layer with a dropout_rate, AttentionCore) at rate 0."""
    config = layer.get_config()
    config.update({key: 0.0 for key in ("rate", "dropout_rate") if key in config})
    return layer.__class__.from_config(config)


def annotate(model, per_channel: bool = True, activation_range: str = "moving_average",
             dropout: bool = True) -> keras.Model:
    """Annotate every Dense (per-channel config, or TF-MOT's scheme default) and the float layers
    (NoOp); dropout False: every dropout at rate 0, so training-mode ranges are inference's."""
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


class _AsAnnotated(quantize.QuantizeLayoutTransform):
    """No layout transforms: the default scheme's would also quantize the int32 model inputs."""

    def apply(self, model, layer_quantize_map):
        return model, layer_quantize_map


class WeightOnlyScheme(quantize.default_8bit.Default8BitQuantizeScheme):
    """The annotated layers' own QuantizeConfigs and nothing else."""

    def get_layout_transformer(self):
        return _AsAnnotated()


def weight_only_model(model, bits_by_layer: dict[str, int]) -> keras.Model:
    """int4w QAT: each named layer's weight matrix fake-quantized at its bits (an Embedding per row,
    a Dense per output column), straight-through; activations and every other layer float."""
    def mark(layer):
        # Every other layer explicitly float: quantize_apply would otherwise give the layers it knows next to
        # a quantized one (the GELU before a Dense, a Dropout, Flatten) int8 outputs.
        bits = bits_by_layer.get(layer.name)
        if bits is None:
            config = NoOpQuantizeConfig()
        elif isinstance(layer, keras.layers.Embedding):
            config = WeightOnlyQuantizeConfig(bits, 0, "embeddings")
        else:
            config = WeightOnlyQuantizeConfig(bits)
        return quantize.quantize_annotate_layer(layer, quantize_config=config)

    with keras.utils.custom_object_scope(custom_objects()):
        annotated = keras.models.clone_model(model, clone_function=mark)
    with quantize.quantize_scope(custom_objects()):
        return quantize.quantize_apply(annotated, WeightOnlyScheme())


def weight_only_qat(model, bits_by_layer: dict[str, int], train: tuple, dev: tuple, cfg: FinetuneConfig,
                    work_dir: Path, resume: bool = False, loss=None):
    """A fine-tune of `model` through its weights' 4/8-bit rounding -> (float copy holding the trained
    weights, to be put on the same grid for export; state)."""
    quantized = weight_only_model(model, bits_by_layer)
    with quantize.quantize_scope(custom_objects()):
        quantized, state = fit_classifier(quantized, train, dev, cfg, work_dir, resume=resume, loss=loss)
    return weights_by_layer(quantized, model), state


def weights_by_layer(quantized, model) -> keras.Model:
    """A copy of `model` holding the weights of the layer of the same name in `quantized`, unwrapped
    (quantize_apply renames the variables of the layers it rebuilds, so names cannot be matched)."""
    with keras.utils.custom_object_scope(custom_objects()):
        copy = keras.models.clone_model(model)
    names = {wrapped.name for wrapped in quantized.layers}
    for layer in copy.layers:
        if not layer.weights:
            continue
        source = quantized.get_layer(layer.name if layer.name in names else f"quant_{layer.name}")
        # A wrapper's trainable weights are its layer's (its own are the quantizers' step counters).
        weights = [w.numpy() for w in (source.trainable_weights if hasattr(source, "layer") else source.weights)]
        if [w.shape for w in weights] != [tuple(w.shape) for w in layer.weights]:
            raise ValueError(f"QAT model {quantized.name}: layer {source.name} holds {[w.shape for w in weights]}, "
                             f"{layer.name} needs {[tuple(w.shape) for w in layer.weights]}")
        layer.set_weights(weights)
    return copy


def trained_float(quantized, model) -> keras.Model:
    """A copy of the float `model` that QAT started from, holding the QAT fine-tune's weights
    (matched by variable name; quantizer ranges left behind), for the int8 export."""
    trained = {}
    for variable in quantized.weights:
        trained.setdefault(variable.name, variable)
    with keras.utils.custom_object_scope(custom_objects()):
        copy = keras.models.clone_model(model)
    for variable in copy.weights:
        source = trained.get(variable.name)
        if source is None or tuple(source.shape) != tuple(variable.shape):
            found = "missing" if source is None else f"shape {tuple(source.shape)}"
            raise ValueError(f"QAT model {quantized.name}: weight {variable.name} {tuple(variable.shape)} is {found}")
        variable.assign(source)
    return copy
