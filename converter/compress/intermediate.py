"""Intermediate-layer distillation (TinyBERT-style hidden states): besides the logits, the student's
embedding output and each of its layers' outputs learn the teacher's at the mapped layer
(teacher_layer_map: every k-th, ending at the last), through a learned projection when the widths differ.

loss = DistillationLoss(logits) + hidden_weight * mean over mapped layers and features of the squared
difference, averaged over each sentence's real tokens (padding is masked out).

The teacher's hidden states on the training rows are computed once (frozen teacher, no dropout);
the training runs on a two-output trainer that shares the student's layers, so the student itself
is an ordinary classifier afterwards (export and TF-MOT never see the trainer)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from converter.config import ModelConfig
from converter.modeling import names

HIDDEN_OUTPUT = "hidden_states"


@keras.utils.register_keras_serializable(package="converter")
class HiddenStateLoss(keras.losses.Loss):
    """y_true (batch, seq, 1 + width): the attention mask, then the teacher's hidden states of the
    mapped layers side by side; y_pred (batch, seq, width): the student's (projected). Per sentence:
    weight * sum over real tokens of mean over features of (y_pred - y_true)^2, / real tokens."""

    def __init__(self, weight: float = 1.0, name: str = "hidden_states", **kwargs):
        super().__init__(name=name, **kwargs)
        self.weight = weight

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, y_pred.dtype)  # the targets are stored in float16 (teacher_hidden_targets)
        mask, target = y_true[..., :1], y_true[..., 1:]
        per_token = tf.reduce_mean(tf.square(y_pred - target), axis=-1, keepdims=True)
        tokens = tf.maximum(tf.reduce_sum(mask, axis=[1, 2]), 1.0)
        return self.weight * tf.reduce_sum(per_token * mask, axis=[1, 2]) / tokens

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


def hidden_layer_names(num_layers: int, layer_map: list[int] | None = None) -> list[str]:
    """The embedding output, then block i's output for each i (of layer_map when given)."""
    return [names.EMBEDDINGS_NORM] + [names.block(i, names.FFN_NORM) for i in (layer_map or range(num_layers))]


def trainer_model(student, student_cfg: ModelConfig, teacher_width: int):
    """student -> Model(student inputs, [logits, hidden states side by side]) sharing the student's
    layers; a Dense projection per hidden state when the student is narrower than the teacher."""
    outputs = [student.get_layer(name).output for name in hidden_layer_names(student_cfg.num_layers)]
    if student_cfg.hidden_size != teacher_width:
        outputs = [keras.layers.Dense(teacher_width, name=f"hidden_project_{k}")(x) for k, x in enumerate(outputs)]
    hidden = keras.layers.Concatenate(axis=-1, name=HIDDEN_OUTPUT)(outputs)
    return keras.Model(student.inputs, [student.output, hidden], name=f"{student.name}_trainer")


def teacher_hidden_targets(teacher, teacher_cfg: ModelConfig, layer_map: list[int], inputs: list[np.ndarray],
                           batch_size: int = 64) -> np.ndarray:
    """(rows, seq, 1 + (1 + len(layer_map)) * width) float16: the attention mask, then the frozen
    teacher's embedding output and mapped layers' outputs (HiddenStateLoss's y_true). float16 halves
    what the training keeps in memory (1.5 GB in float32 for MiniLM on the FPB training split)."""
    probe = keras.Model(teacher.inputs, [teacher.get_layer(name).output
                                         for name in hidden_layer_names(teacher_cfg.num_layers, layer_map)])
    hidden = probe.predict(inputs, batch_size=batch_size, verbose=0)
    mask = inputs[1].astype(np.float32)[..., None]
    return np.concatenate([mask.astype(np.float16), *(h.astype(np.float16) for h in hidden)], axis=-1)
