"""TF-MOT magnitude pruning of the encoder's Dense kernels, then strip_pruning for export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tf_keras as keras

from converter.compress.quant.registry import custom_objects
from converter.config import PruneConfig
from converter.modeling import names
from converter.train.finetune import fit_classifier


def prune_targets(model, cfg: PruneConfig) -> list[str]:
    dense = [layer.name for layer in model.layers if names.ENCODER_DENSE_NAME.match(layer.name)]
    return dense + ([names.WORD] if cfg.prune_embeddings else [])


def apply_pruning(model, cfg: PruneConfig, total_steps: int):
    """Wrap the target layers in prune_low_magnitude with a polynomial-decay schedule."""
    import tensorflow_model_optimization as tfmot

    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=cfg.target_sparsity, begin_step=0,
        end_step=max(1, int(total_steps * cfg.end_fraction)), frequency=cfg.frequency)
    targets = set(prune_targets(model, cfg))

    def wrap(layer):
        if layer.name in targets:
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    with keras.utils.custom_object_scope(custom_objects()):
        # Wrapping reuses the layers given, so wrap a weight copy: the input model stays dense.
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        return keras.models.clone_model(copy, clone_function=wrap)


def strip(model):
    import tensorflow_model_optimization as tfmot

    with keras.utils.custom_object_scope(custom_objects()):
        return tfmot.sparsity.keras.strip_pruning(model)


def kernel_sparsity(model, names) -> dict[str, float]:
    """Fraction of exactly-zero entries in each named layer's kernel (or embedding table)."""
    out = {}
    for name in names:
        layer = model.get_layer(name)
        weight = layer.kernel if hasattr(layer, "kernel") else layer.embeddings
        out[name] = float(np.mean(weight.numpy() == 0))
    return out


def prune(model, train: tuple, dev: tuple, cfg: PruneConfig, work_dir: Path, resume: bool = False):
    """Fine-tune with magnitude pruning to cfg.target_sparsity -> (stripped model, state)."""
    import tensorflow_model_optimization as tfmot

    epochs, steps = cfg.train.epochs, int(np.ceil(len(train[1]) / cfg.train.batch_size))
    pruned = apply_pruning(model, cfg, steps * epochs)
    # Select only among epochs that end after the schedule has reached the target sparsity.
    first = int(np.ceil(cfg.end_fraction * epochs))
    pruned, state = fit_classifier(pruned, train, dev, cfg.train, work_dir, resume=resume,
                                   callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
                                   first_candidate_epoch=max(1, first))
    stripped = strip(pruned)
    state["kernel_sparsity"] = kernel_sparsity(stripped, prune_targets(stripped, cfg))
    return stripped, state
