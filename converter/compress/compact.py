"""Embedding compaction: keep only the word-embedding rows of token ids the domain uses.

WordPiece segmentation is unchanged (the device still tokenizes with the full vocab.txt); an id
map sends every full-vocab id to its compact row, unseen ids to the compact [UNK] row."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np

from converter.config import ModelConfig
from converter.errors import ConfigError
from converter.modeling import names
from converter.modeling.bert import rebuild


def kept_ids(train_ids: np.ndarray, special_ids, extra_ids=None, extra_top_k: int = 0, min_count: int = 1) -> np.ndarray:
    """Sorted ids: specials, ids seen >= min_count times in training, and the top-k extra ids."""
    counts = Counter(train_ids.reshape(-1).tolist())
    keep = set(special_ids) | {i for i, c in counts.items() if c >= min_count}
    if extra_ids is not None and extra_top_k:
        keep |= {i for i, _ in Counter(np.asarray(extra_ids).reshape(-1).tolist()).most_common(extra_top_k)}
    return np.array(sorted(keep), np.int32)


def id_map(kept: np.ndarray, vocab_size: int, unk_id: int) -> np.ndarray:
    """(vocab_size,) int32: full id -> compact id; ids not kept -> the compact [UNK]."""
    position = {int(full): compact for compact, full in enumerate(kept)}
    mapping = np.full(vocab_size, position[unk_id], np.int32)
    mapping[kept] = np.arange(len(kept), dtype=np.int32)
    return mapping


def compact_model(model, cfg: ModelConfig, kept: np.ndarray):
    """The same model with a (len(kept), hidden) word-embedding table -> (model, its ModelConfig)."""
    small_cfg = replace(cfg, vocab_size=len(kept))
    table = model.get_layer(names.WORD).get_weights()[0]
    return rebuild(model, small_cfg, {names.WORD: [table[kept]]}), small_cfg


def factorize_embeddings(model, cfg: ModelConfig, rank: int, positions: int, row_weights: np.ndarray | None = None):
    """The same model with a rank-`rank` word table (truncated SVD: rows U*S, projection V^T) and
    only the first `positions` position rows -> (model, its ModelConfig).

    rank >= hidden reproduces the table exactly; smaller ranks are the best rank-r approximation
    (Eckart-Young), to be recovered by a short distillation. With `row_weights` (e.g. token counts)
    the approximation is the best one in the weighted norm sum_i w_i |row_i - approx_i|^2: the
    projection is the SVD of sqrt(w) * table, each row its projection onto that subspace."""
    if cfg.embedding_rank:
        raise ValueError(f"{model.name}: word table already factorized (rank {cfg.embedding_rank})")
    if positions < cfg.max_seq_len:
        raise ConfigError(f"cannot cut the position table to {positions} rows below seq_len {cfg.max_seq_len}")
    table = model.get_layer(names.WORD).get_weights()[0].astype(np.float64)
    if row_weights is None:
        u, s, vt = np.linalg.svd(table, full_matrices=False)
        rank = min(rank, len(s))
        rows, projection = u[:, :rank] * s[:rank], vt[:rank]
    else:
        if row_weights.shape != (len(table),) or np.any(row_weights <= 0):
            raise ValueError(f"row_weights: expected {len(table)} positive weights, got shape {row_weights.shape}")
        vt = np.linalg.svd(table * np.sqrt(row_weights)[:, None], full_matrices=False)[2]
        rank = min(rank, len(vt))
        projection = vt[:rank]
        rows = table @ projection.T
    small_cfg = replace(cfg, embedding_rank=rank, max_position_embeddings=positions)
    position_rows = model.get_layer(names.POSITION).get_weights()[0][:positions]
    small = rebuild(model, small_cfg, {names.WORD: [rows.astype(np.float32)],
                                       names.PROJECT: [projection.astype(np.float32)],
                                       names.POSITION: [position_rows]})
    return small, small_cfg


def map_inputs(inputs: dict[str, np.ndarray], mapping: np.ndarray | None) -> dict[str, np.ndarray]:
    """Token ids through a compact model's id map (None: a model with the whole table, ids as they are)."""
    return inputs if mapping is None else {**inputs, "input_ids": mapping[inputs["input_ids"]]}
