"""BERT as a Functional tf_keras model built from named, stock layers.

Layer names are API: the weight map, pruning and QAT select layers by them."""

from __future__ import annotations

import tf_keras as keras

from converter.config import ModelConfig
from converter.errors import ConfigError
from converter.modeling import names
from converter.modeling.layers import AddedEmbedding, AttentionCore, AttentionMaskBias, MaskedMeanPooling
from device_runtime.format import INPUT_DTYPE, INPUT_NAMES, OUTPUT_NAME  # the bundle contract; tests import them from here


def _init(cfg: ModelConfig):
    return keras.initializers.TruncatedNormal(stddev=0.02)


def _dense(units: int, name: str, cfg: ModelConfig, activation=None):
    return keras.layers.Dense(units, activation=activation, name=name, kernel_initializer=_init(cfg))


def encoder_block(x, bias, cfg: ModelConfig, i: int):
    """One transformer layer (post-norm, as in BERT). x: (batch, seq, hidden); bias (batch, 1, 1, seq)."""
    width = cfg.heads(i) * cfg.head_size  # fewer heads after structured pruning
    query = _dense(width, names.block(i, names.ATTN_QUERY), cfg)(x)
    key = _dense(width, names.block(i, names.ATTN_KEY), cfg)(x)
    value = _dense(width, names.block(i, names.ATTN_VALUE), cfg)(x)
    context = AttentionCore(cfg.heads(i), cfg.head_size, cfg.dropout_rate,
                            name=names.block(i, names.ATTN_CORE))([query, key, value, bias])
    attn = _dense(cfg.hidden_size, names.block(i, names.ATTN_OUTPUT), cfg)(context)
    attn = keras.layers.Dropout(cfg.dropout_rate, name=names.block(i, names.ATTN_DROPOUT))(attn)
    x = keras.layers.Add(name=names.block(i, names.ATTN_RESIDUAL))([x, attn])
    x = keras.layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name=names.block(i, names.ATTN_NORM))(x)

    # Exact (erf) GELU, as BERT's "gelu"; a separate layer so Dense stays linear for QAT.
    hidden = _dense(cfg.intermediate(i), names.block(i, names.FFN_IN), cfg)(x)
    hidden = keras.layers.Activation("gelu", name=names.block(i, names.FFN_GELU))(hidden)
    out = _dense(cfg.hidden_size, names.block(i, names.FFN_OUT), cfg)(hidden)
    out = keras.layers.Dropout(cfg.dropout_rate, name=names.block(i, names.FFN_DROPOUT))(out)
    x = keras.layers.Add(name=names.block(i, names.FFN_RESIDUAL))([x, out])
    return keras.layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name=names.block(i, names.FFN_NORM))(x)


def build_classifier(cfg: ModelConfig, name: str = "bert_classifier") -> keras.Model:
    """Inputs input_ids, attention_mask: int32 (batch, max_seq_len). Output logits (batch, num_labels)."""
    seq = cfg.max_seq_len
    input_ids = keras.Input((seq,), dtype=INPUT_DTYPE, name=INPUT_NAMES[0])
    mask = keras.Input((seq,), dtype=INPUT_DTYPE, name=INPUT_NAMES[1])

    width = cfg.embedding_rank or cfg.hidden_size
    x = keras.layers.Embedding(cfg.vocab_size, width, embeddings_initializer=_init(cfg),
                               name=names.WORD)(input_ids)  # (batch, seq, rank or hidden)
    if cfg.embedding_rank:  # factorized table: rank-wide rows, then a shared projection to hidden
        x = keras.layers.Dense(cfg.hidden_size, use_bias=False, kernel_initializer=_init(cfg),
                               name=names.PROJECT)(x)
    x = AddedEmbedding(cfg.max_position_embeddings, cfg.hidden_size, positional=True,
                       name=names.POSITION)(x)
    x = AddedEmbedding(cfg.type_vocab_size, cfg.hidden_size, positional=False,
                       name=names.SEGMENT)(x)
    x = keras.layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name=names.EMBEDDINGS_NORM)(x)
    x = keras.layers.Dropout(cfg.dropout_rate, name=names.EMBEDDINGS_DROPOUT)(x)

    bias = AttentionMaskBias(cfg.mask_bias, name="attn_mask_bias")(mask)
    for i in range(cfg.num_layers):
        x = encoder_block(x, bias, cfg, i)

    if cfg.pooling == "mean":
        summary = MaskedMeanPooling(name="pooler_mean")([x, mask])  # (batch, hidden)
    elif cfg.pooling == "cls":  # the [CLS] position: crop to (batch, 1, hidden), then flatten
        summary = keras.layers.Cropping1D((0, seq - 1), name="pooler_cls")(x)
        summary = keras.layers.Flatten(name="pooler_flatten")(summary)  # (batch, hidden)
    else:
        raise ConfigError(f"pooling {cfg.pooling!r}: choose cls or mean")
    pooled = _dense(cfg.hidden_size, names.POOLER, cfg, activation="tanh")(summary)
    pooled = keras.layers.Dropout(cfg.dropout_rate, name="classifier_dropout")(pooled)
    logits = _dense(cfg.num_labels, names.CLASSIFIER, cfg)(pooled)
    logits = keras.layers.Activation("linear", dtype="float32", name=OUTPUT_NAME)(logits)
    return keras.Model([input_ids, mask], logits, name=name)


def rebuild(model: keras.Model, cfg: ModelConfig, replaced: dict[str, list] | None = None) -> keras.Model:
    """A new classifier of geometry `cfg` whose weighted layers take `replaced[name]` when given,
    else the same-named layer's weights of `model` (compaction, factorization, structured pruning)."""
    replaced = replaced or {}
    new = build_classifier(cfg, name=model.name)
    for layer in new.layers:
        if layer.weights:
            layer.set_weights(replaced[layer.name] if layer.name in replaced else model.get_layer(layer.name).get_weights())
    return new


def encoder_outputs(model: keras.Model, num_layers: int) -> keras.Model:
    """A view of the classifier returning (last hidden state, pooled output); shares weights."""
    last = model.get_layer(names.block(num_layers - 1, names.FFN_NORM)).output
    return keras.Model(model.inputs, [last, model.get_layer(names.POOLER).output])
