"""Structured pruning: remove whole attention heads and feed-forward neurons, so matrices shrink.

Importance is magnitude-based: a head scores ||W_value[:, head]|| * ||W_output[head, :]||, a
neuron ||W_in[:, j]|| * ||W_out[j, :]||. The lowest-scoring ones are sliced out of the kernels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from converter.config import ModelConfig
from converter.model import rebuild


def head_scores(model, cfg: ModelConfig, i: int) -> np.ndarray:
    """(heads,) importance of each head of layer i."""
    size, heads = cfg.head_size, cfg.heads(i)
    value = model.get_layer(f"layer_{i}_attn_value").kernel.numpy().reshape(-1, heads, size)  # (hidden, heads, d)
    output = model.get_layer(f"layer_{i}_attn_output").kernel.numpy().reshape(heads, size, -1)  # (heads, d, hidden)
    return np.linalg.norm(value, axis=(0, 2)) * np.linalg.norm(output, axis=(1, 2))


def neuron_scores(model, i: int) -> np.ndarray:
    """(intermediate,) importance of each feed-forward neuron of layer i."""
    w_in = model.get_layer(f"layer_{i}_ffn_in").kernel.numpy()  # (hidden, intermediate)
    w_out = model.get_layer(f"layer_{i}_ffn_out").kernel.numpy()  # (intermediate, hidden)
    return np.linalg.norm(w_in, axis=0) * np.linalg.norm(w_out, axis=1)


def _top(scores: np.ndarray, fraction: float) -> np.ndarray:
    keep = max(1, int(round(len(scores) * fraction)))
    return np.sort(np.argsort(-scores, kind="stable")[:keep])


def choose(model, cfg: ModelConfig, keep_heads: float, keep_ffn: float) -> tuple[list, list]:
    """Per layer: sorted indices of the heads and of the neurons to keep."""
    heads = [_top(head_scores(model, cfg, i), keep_heads) for i in range(cfg.num_layers)]
    neurons = [_top(neuron_scores(model, i), keep_ffn) for i in range(cfg.num_layers)]
    return heads, neurons


SLICED_PARTS = ("attn_query", "attn_key", "attn_value", "attn_output", "ffn_in", "ffn_out")


def _head_columns(heads: np.ndarray, size: int) -> np.ndarray:
    return (heads[:, None] * size + np.arange(size)[None, :]).reshape(-1)


def slice_model(model, cfg: ModelConfig, heads: list, neurons: list):
    """A new, smaller model holding only the kept heads and neurons -> (model, its ModelConfig)."""
    small_cfg = replace(cfg, heads_per_layer=tuple(len(h) for h in heads),
                        intermediate_per_layer=tuple(len(n) for n in neurons))
    sliced = {}
    for i in range(cfg.num_layers):
        cols = _head_columns(heads[i], cfg.head_size)
        w = {part: model.get_layer(f"layer_{i}_{part}").get_weights() for part in SLICED_PARTS}
        for part in ("attn_query", "attn_key", "attn_value"):  # kept heads' output columns
            kernel, bias = w[part]
            sliced[f"layer_{i}_{part}"] = [kernel[:, cols], bias[cols]]
        kernel, bias = w["attn_output"]
        sliced[f"layer_{i}_attn_output"] = [kernel[cols], bias]  # kept heads' input rows
        kernel, bias = w["ffn_in"]
        sliced[f"layer_{i}_ffn_in"] = [kernel[:, neurons[i]], bias[neurons[i]]]
        kernel, bias = w["ffn_out"]
        sliced[f"layer_{i}_ffn_out"] = [kernel[neurons[i]], bias]
    # everything else (embeddings, norms, pooler, head) copies as is
    return rebuild(model, small_cfg, sliced), small_cfg


def zero_removed(model, cfg: ModelConfig, heads: list, neurons: list) -> None:
    """In place: zero the removed heads' output rows and removed neurons' rows (for tests)."""
    for i in range(cfg.num_layers):
        out = model.get_layer(f"layer_{i}_attn_output")
        kernel, bias = out.get_weights()
        drop = np.setdiff1d(np.arange(kernel.shape[0]), _head_columns(heads[i], cfg.head_size))
        kernel[drop] = 0.0
        out.set_weights([kernel, bias])
        ffn = model.get_layer(f"layer_{i}_ffn_out")
        kernel, bias = ffn.get_weights()
        kernel[np.setdiff1d(np.arange(kernel.shape[0]), neurons[i])] = 0.0
        ffn.set_weights([kernel, bias])
