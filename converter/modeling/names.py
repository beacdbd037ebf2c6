"""The layer-name API. The builder names layers here, and everything that selects layers by
name (the weight map, distillation, magnitude and structured pruning, the file statistics)
builds or matches names with these functions, never with its own string literals."""

from __future__ import annotations

import re

WORD = "embeddings_word"
PROJECT = "embeddings_project"  # (rank, hidden) projection of a factorized word table
POSITION = "embeddings_position"
SEGMENT = "embeddings_segment"
EMBEDDINGS_NORM = "embeddings_norm"
EMBEDDINGS_DROPOUT = "embeddings_dropout"
POOLER = "pooler"
CLASSIFIER = "classifier"
HEAD = (POOLER, CLASSIFIER)

# The parts of encoder block i, each a layer named block(i, part).
ATTN_QUERY, ATTN_KEY, ATTN_VALUE, ATTN_OUTPUT = "attn_query", "attn_key", "attn_value", "attn_output"
ATTN_CORE, ATTN_DROPOUT, ATTN_RESIDUAL, ATTN_NORM = "attn_core", "attn_dropout", "attn_residual", "attn_norm"
FFN_IN, FFN_GELU, FFN_OUT = "ffn_in", "ffn_gelu", "ffn_out"
FFN_DROPOUT, FFN_RESIDUAL, FFN_NORM = "ffn_dropout", "ffn_residual", "ffn_norm"

ATTN_DENSE = (ATTN_QUERY, ATTN_KEY, ATTN_VALUE, ATTN_OUTPUT)
FFN_DENSE = (FFN_IN, FFN_OUT)
ENCODER_DENSE = ATTN_DENSE + FFN_DENSE  # every weight matrix of an encoder block
# Every weighted layer of a block, in the order the distillation copies them.
BLOCK_WEIGHTED = ATTN_DENSE + (ATTN_NORM,) + FFN_DENSE + (FFN_NORM,)


def block(i: int | str, part: str) -> str:
    """Name of a part of encoder block i: block(0, "attn_query") == "layer_0_attn_query"."""
    return f"layer_{i}_{part}"


def template(part: str) -> str:
    """The per-layer template of a part, "layer_{i}_<part>", for tables filled with str.format."""
    return block("{i}", part)


def _parts_pattern(parts) -> str:
    return "|".join(re.escape(part) for part in parts)


# A Keras layer name that is an encoder weight matrix (pruning targets).
ENCODER_DENSE_NAME = re.compile(rf"^layer_\d+_({_parts_pattern(ENCODER_DENSE)})$")
# A TFLite tensor name that holds an encoder weight matrix. The converter folds the
# 1/sqrt(head_size) query scaling into the query kernel, so that weight is named after the
# attention core's `mul`.
ENCODER_WEIGHT_TENSOR = re.compile(rf"layer_\d+_({_parts_pattern(ENCODER_DENSE + (ATTN_CORE + '/mul',))})")
