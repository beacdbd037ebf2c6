"""Structured pruning: remove whole attention heads and feed-forward neurons, so matrices shrink.

Importance, two kinds (config slim.importance):
- "magnitude": a head scores ||W_value[:, head]|| * ||W_output[head, :]||, a neuron
  ||W_in[:, j]|| * ||W_out[j, :]||.
- "taylor": the first-order change of the training loss when the head's (neuron's) output is
  removed, |sum over its rows of W_output * dL/dW_output| per batch, summed over the training set
  (zeroing those rows is exactly removing it; gradient-based head importance, Michel et al. 2019).
The lowest-scoring ones are sliced out of the kernels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from converter.config import ModelConfig
from converter.errors import ConfigError
from converter.modeling import names
from converter.modeling.bert import rebuild


def head_scores(model, cfg: ModelConfig, i: int) -> np.ndarray:
    """(heads,) importance of each head of layer i."""
    size, heads = cfg.head_size, cfg.heads(i)
    value = model.get_layer(names.block(i, names.ATTN_VALUE)).kernel.numpy().reshape(-1, heads, size)  # (hidden, heads, d)
    output = model.get_layer(names.block(i, names.ATTN_OUTPUT)).kernel.numpy().reshape(heads, size, -1)  # (heads, d, hidden)
    return np.linalg.norm(value, axis=(0, 2)) * np.linalg.norm(output, axis=(1, 2))


def neuron_scores(model, i: int) -> np.ndarray:
    """(intermediate,) importance of each feed-forward neuron of layer i."""
    w_in = model.get_layer(names.block(i, names.FFN_IN)).kernel.numpy()  # (hidden, intermediate)
    w_out = model.get_layer(names.block(i, names.FFN_OUT)).kernel.numpy()  # (intermediate, hidden)
    return np.linalg.norm(w_in, axis=0) * np.linalg.norm(w_out, axis=1)


def taylor_scores(model, cfg: ModelConfig, inputs: list, labels: np.ndarray, batch_size: int = 32):
    """([per layer (heads,)], [per layer (intermediate,)]) first-order importance on (inputs, labels)."""
    import tensorflow as tf

    variables = [model.get_layer(names.block(i, part)).kernel for i in range(cfg.num_layers)
                 for part in (names.ATTN_OUTPUT, names.FFN_OUT)]
    kernels = [variable.numpy() for variable in variables]  # constant while scoring
    totals = [np.zeros(cfg.heads(i)) if k % 2 == 0 else np.zeros(cfg.intermediate(i))
              for i in range(cfg.num_layers) for k in range(2)]
    for start in range(0, len(labels), batch_size):
        batch = [x[start:start + batch_size] for x in inputs]
        with tf.GradientTape() as tape:
            logits = model(batch, training=False)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels[start:start + batch_size], logits))
        for k, (kernel, grad) in enumerate(zip(kernels, tape.gradient(loss, variables))):
            per_row = np.sum(kernel * grad.numpy(), axis=1)  # (input rows of the kernel,)
            if k % 2 == 0:  # attn_output rows are grouped by head
                per_row = per_row.reshape(cfg.heads(k // 2), cfg.head_size).sum(axis=1)
            totals[k] += np.abs(per_row)
    return totals[0::2], totals[1::2]


def _top(scores: np.ndarray, fraction: float) -> np.ndarray:
    keep = max(1, int(round(len(scores) * fraction)))
    return np.sort(np.argsort(-scores, kind="stable")[:keep])


def importance_scores(model, cfg: ModelConfig, importance: str = "magnitude", train: tuple | None = None):
    """([per layer head scores], [per layer neuron scores]); "taylor" scores on `train` = (inputs, labels).

    Compute once per model: every keep fraction cut from it ranks by the same scores (`keep_top`)."""
    if importance == "magnitude":
        return ([head_scores(model, cfg, i) for i in range(cfg.num_layers)],
                [neuron_scores(model, i) for i in range(cfg.num_layers)])
    if importance == "taylor":
        if train is None:
            raise ValueError("taylor importance needs training data")
        return taylor_scores(model, cfg, *train)
    raise ConfigError(f"slim.importance: {importance!r}; expected 'magnitude' or 'taylor'")


def keep_top(scores: tuple[list, list], keep_heads: float, keep_ffn: float) -> tuple[list, list]:
    """Per layer: sorted indices of the highest-scoring heads and neurons to keep."""
    head, neuron = scores
    return [_top(h, keep_heads) for h in head], [_top(n, keep_ffn) for n in neuron]




def _head_columns(heads: np.ndarray, size: int) -> np.ndarray:
    return (heads[:, None] * size + np.arange(size)[None, :]).reshape(-1)


def slice_model(model, cfg: ModelConfig, heads: list, neurons: list):
    """A new, smaller model holding only the kept heads and neurons -> (model, its ModelConfig)."""
    small_cfg = replace(cfg, heads_per_layer=tuple(len(h) for h in heads),
                        intermediate_per_layer=tuple(len(n) for n in neurons))
    sliced = {}
    for i in range(cfg.num_layers):
        cols = _head_columns(heads[i], cfg.head_size)
        w = {part: model.get_layer(names.block(i, part)).get_weights() for part in names.ENCODER_DENSE}
        for part in (names.ATTN_QUERY, names.ATTN_KEY, names.ATTN_VALUE):  # kept heads' output columns
            kernel, bias = w[part]
            sliced[names.block(i, part)] = [kernel[:, cols], bias[cols]]
        kernel, bias = w[names.ATTN_OUTPUT]
        sliced[names.block(i, names.ATTN_OUTPUT)] = [kernel[cols], bias]  # kept heads' input rows
        kernel, bias = w[names.FFN_IN]
        sliced[names.block(i, names.FFN_IN)] = [kernel[:, neurons[i]], bias[neurons[i]]]
        kernel, bias = w[names.FFN_OUT]
        sliced[names.block(i, names.FFN_OUT)] = [kernel[neurons[i]], bias]
    # everything else (embeddings, norms, pooler, head) copies as is
    return rebuild(model, small_cfg, sliced), small_cfg


def zero_removed(model, cfg: ModelConfig, heads: list, neurons: list) -> None:
    """In place: zero the removed heads' output rows and removed neurons' rows (for tests)."""
    for i in range(cfg.num_layers):
        out = model.get_layer(names.block(i, names.ATTN_OUTPUT))
        kernel, bias = out.get_weights()
        drop = np.setdiff1d(np.arange(kernel.shape[0]), _head_columns(heads[i], cfg.head_size))
        kernel[drop] = 0.0
        out.set_weights([kernel, bias])
        ffn = model.get_layer(names.block(i, names.FFN_OUT))
        kernel, bias = ffn.get_weights()
        kernel[np.setdiff1d(np.arange(kernel.shape[0]), neurons[i])] = 0.0
        ffn.set_weights([kernel, bias])
