"""TF-MOT quantization-aware training: fake-quant every Dense, explicit no-op configs elsewhere.

What QAT quantizes matches the int8 export: Dense kernels and outputs in int8; the custom
layers (attention core, added embeddings), LayerNorm and GELU stay float islands."""

from __future__ import annotations

from pathlib import Path

import tensorflow_model_optimization as tfmot
import tf_keras as keras

from converter.config import QatConfig
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


# Layer classes kept float on purpose, each with an explicit config (never silently skipped).
FLOAT_LAYERS = (AttentionCore, AddedEmbedding, keras.layers.LayerNormalization, keras.layers.Activation)


def annotate(model) -> keras.Model:
    """Annotate every Dense with the default 8-bit scheme and the float layers with NoOp configs."""
    from converter.scopes import custom_objects

    def mark(layer):
        if isinstance(layer, keras.layers.Dense):
            return quantize.quantize_annotate_layer(layer)
        if isinstance(layer, FLOAT_LAYERS):
            return quantize.quantize_annotate_layer(layer, quantize_config=NoOpQuantizeConfig())
        return layer

    with keras.utils.custom_object_scope(custom_objects()):
        return keras.models.clone_model(model, clone_function=mark)


def quantize_model(model, preserve_sparsity: bool = False) -> keras.Model:
    """annotate + quantize_apply; preserve_sparsity uses TF-MOT's prune-preserving QAT scheme."""
    from converter.scopes import custom_objects

    scheme = None
    if preserve_sparsity:
        scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    with quantize.quantize_scope(custom_objects()):
        return quantize.quantize_apply(annotate(model), scheme) if scheme else quantize.quantize_apply(annotate(model))


def qat(model, train: tuple, dev: tuple, cfg: QatConfig, work_dir: Path, preserve_sparsity: bool = False,
        resume: bool = False, loss=None):
    """A short quantization-aware fine-tune -> (QAT model with fake-quant ops, state).

    `loss` (with matching targets in `train`) lets the student keep learning from the teacher.
    """
    quantized = quantize_model(model, preserve_sparsity)
    with quantize.quantize_scope():
        return fit_classifier(quantized, train, dev, cfg.train, work_dir, resume=resume, loss=loss)
