"""Custom layers: weightless attention math and mask bias, and an added embedding table.

Everything with a kernel is a stock Dense / Embedding / LayerNormalization so TF-MOT sees it."""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras


@keras.utils.register_keras_serializable(package="converter")
class AttentionCore(keras.layers.Layer):
    """Split heads, masked scaled dot-product, softmax, merge. Holds no weights.

    Inputs: [query, key, value] each (batch, seq, heads * head_size) and the additive key
    bias (batch, 1, 1, seq) from AttentionMaskBias. Returns (batch, seq, heads * head_size).
    """

    def __init__(self, num_heads: int, head_size: int, dropout_rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_size = head_size
        self.dropout_rate = dropout_rate

    def _split(self, x):
        seq = x.shape[1]
        x = tf.reshape(x, (-1, seq, self.num_heads, self.head_size))  # (batch, seq, heads, head_dim)
        return tf.transpose(x, (0, 2, 1, 3))  # (batch, heads, seq, head_dim)

    def call(self, inputs, training=None):
        query, key, value, bias = inputs
        q, k, v = self._split(query), self._split(key), self._split(value)
        # Scale q rather than the scores: one (seq, head_dim) multiply instead of (seq, seq).
        q = q * (1.0 / math.sqrt(self.head_size))
        scores = tf.matmul(q, k, transpose_b=True)  # (batch, heads, seq, seq)
        scores = scores + bias  # padded keys: a large negative bias

        probs = tf.nn.softmax(scores, axis=-1)
        if training and self.dropout_rate > 0:
            probs = tf.nn.dropout(probs, rate=self.dropout_rate)
        context = tf.matmul(probs, v)  # (batch, heads, seq, head_dim)
        context = tf.transpose(context, (0, 2, 1, 3))  # (batch, seq, heads, head_dim)
        return tf.reshape(context, (-1, query.shape[1], self.num_heads * self.head_size))

    def get_prunable_weights(self):
        return []

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "head_size": self.head_size,
                "dropout_rate": self.dropout_rate}


@keras.utils.register_keras_serializable(package="converter")
class AttentionMaskBias(keras.layers.Layer):
    """int mask (batch, seq), 1 = real token -> additive float bias (batch, 1, 1, seq). No weights.

    Computed once for all layers. It is the only consumer of the int32 mask input, and is left
    out of QAT annotation: TF-MOT would otherwise fake-quantize that integer input.
    """

    def __init__(self, mask_bias: float, **kwargs):
        super().__init__(**kwargs)
        self.mask_bias = mask_bias

    def call(self, mask):
        bias = (1.0 - tf.cast(mask, tf.float32)) * self.mask_bias
        return tf.reshape(bias, (-1, 1, 1, mask.shape[1]))  # (batch, 1, 1, seq)

    def get_prunable_weights(self):
        return []

    def get_config(self):
        return {**super().get_config(), "mask_bias": self.mask_bias}


@keras.utils.register_keras_serializable(package="converter")
class AddedEmbedding(keras.layers.Layer):
    """Adds rows of a (num_rows, hidden) table to x of shape (batch, seq, hidden).

    positional=True adds rows 0..seq-1 (position embeddings); False adds row 0 to every
    token (segment id 0: inputs are single sentences, so no token_type_ids input).
    """

    def __init__(self, num_rows: int, hidden_size: int, positional: bool, **kwargs):
        super().__init__(**kwargs)
        self.num_rows = num_rows
        self.hidden_size = hidden_size
        self.positional = positional

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.num_rows, self.hidden_size),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        super().build(input_shape)

    def call(self, x):
        rows = x.shape[1] if self.positional else 1
        if rows > self.num_rows:
            raise ValueError(f"{self.name}: sequence length {rows} exceeds the table's {self.num_rows} rows")
        return x + self.embeddings[:rows][tf.newaxis]  # (1, seq or 1, hidden)

    def get_prunable_weights(self):
        return []

    def get_config(self):
        return {**super().get_config(), "num_rows": self.num_rows,
                "hidden_size": self.hidden_size, "positional": self.positional}


@keras.utils.register_keras_serializable(package="converter")
class MaskedMeanPooling(keras.layers.Layer):
    """Mean of x (batch, seq, hidden) over the real tokens of the int mask (batch, seq). No weights.

    A (batch, 1, seq) @ (batch, seq, hidden) matmul with weights mask / count, so padded rows add
    exactly zero. Like AttentionMaskBias it reads the int32 mask and is left out of QAT annotation."""

    def call(self, inputs):
        x, mask = inputs
        weights = tf.cast(mask, x.dtype)
        weights = weights / tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1.0)
        return tf.reshape(tf.matmul(weights[:, tf.newaxis, :], x), (-1, x.shape[-1]))

    def get_prunable_weights(self):
        return []


CUSTOM_OBJECTS = {"AttentionCore": AttentionCore, "AttentionMaskBias": AttentionMaskBias,
                  "AddedEmbedding": AddedEmbedding, "MaskedMeanPooling": MaskedMeanPooling}
