"""What every job shares: the encoded splits (Context), metrics of a split, and the export of a
model's variants into manifest entries."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converter.config import LABELS, KitConfig, ModelConfig
from converter.data.splits import Dataset, load_splits
from converter.data.tokenize import encode, load_tokenizer, tokenizer_settings
from converter.errors import ConfigError
from converter.export.bundle import model_entry
from converter.export.stats import encoder_sparsity, gzip_bytes
from converter.export.tflite import export_tflite, tflite_logits
from converter.modeling import hf_weights as ck
from device_runtime.format import Key, Quantization, needs_calibration
from device_runtime.metrics import classification_metrics

log = logging.getLogger(__name__)


@dataclass
class Split:
    data: Dataset
    inputs: dict[str, np.ndarray]


@dataclass
class Context:
    """Everything the steps share: checkpoint folder, tokenizer settings, encoded splits."""

    folder: Path
    vocab: Path
    do_lower_case: bool
    splits: dict[str, Split]


def prepare(cfg: KitConfig, folder: Path, splits: dict[str, Dataset] | None = None) -> Context:
    settings = tokenizer_settings(folder)
    tokenizer = load_tokenizer(folder)
    splits = load_splits(cfg.data) if splits is None else dict(splits)  # a copy: the caller's dict stays as it was
    if cfg.finetune.max_train_examples and "train" in splits:
        keep = np.zeros(len(splits["train"]), bool)
        keep[: cfg.finetune.max_train_examples] = True
        splits["train"] = splits["train"].subset(keep)
    encoded = {name: Split(data, encode(tokenizer, data.texts, cfg.model.max_seq_len)) for name, data in splits.items()}
    return Context(folder, settings["vocab"], settings["do_lower_case"], encoded)


def train_dev(ctx: Context):
    """((train inputs, train labels), (dev inputs, dev labels)): what every fine-tune takes."""
    train, dev = ctx.splits["train"], ctx.splits["dev"]
    return (list(train.inputs.values()), train.data.labels), (list(dev.inputs.values()), dev.data.labels)


def split_metrics(logits: np.ndarray, split: Split, labels=LABELS) -> dict:
    """{test, test_allagree} accuracy and macro-F1; predictions mapped from `labels` order to ours."""
    to_ours = np.array([LABELS.index(label) for label in labels])
    predictions = to_ours[logits.argmax(-1)]
    result = {"test": classification_metrics(split.data.labels, predictions, len(LABELS))}
    if split.data.agreement is not None:
        keep = split.data.agreement == 100
        result["test_allagree"] = classification_metrics(split.data.labels[keep], predictions[keep], len(LABELS))
    return {k: {m: v[m] for m in ("accuracy", "macro_f1", "n")} for k, v in result.items()}


def calibration_inputs(split: Split, count: int, seed: int) -> dict[str, np.ndarray]:
    """A seeded sample of real (training) sentences for full-integer calibration."""
    rows = np.random.default_rng(seed).permutation(len(split.data))[:count]
    return {name: value[rows] for name, value in split.inputs.items()}


def export_variants(model, model_cfg: ModelConfig, prefix: str, ctx: Context, cfg: KitConfig,
                    quantizations=None, calibration=None, labels=LABELS, **extra) -> list[dict]:
    """Export, check and evaluate every quantization of one Keras model -> manifest entries."""
    export_dir = Path(cfg.work_dir) / "export"
    test = ctx.splits.get("test")
    entries = []
    for quantization in quantizations or cfg.export.quantizations:
        name = f"{prefix}-{quantization}"
        if needs_calibration(quantization) and calibration is None:
            print(f"{name}: skipped (full integer quantization needs calibration sentences)", flush=True)
            continue
        print(f"{name}: converting ...", flush=True)
        float_ops = cfg.export.float_ops(quantization)
        path = export_tflite(model, model_cfg.max_seq_len, quantization, export_dir / f"{name}.tflite",
                             calibration, float_ops)
        metrics = {}
        if test is not None:
            logits = tflite_logits(path, test.inputs)
            if quantization == Quantization.FLOAT32:
                _check_float_parity(model, test, logits, cfg.export.float_parity_atol, path)
            metrics = split_metrics(logits, test, labels)
            print(f"{name}: {path.stat().st_size / 1e6:.1f} MB, test accuracy {metrics['test']['accuracy']:.4f}", flush=True)
        more = {"float_ops": list(float_ops)} if float_ops else {}
        more.update(sparsity=round(encoder_sparsity(path), 4), gzip_bytes=gzip_bytes(path))
        entries.append(model_entry(name, path, quantization, model_cfg, metrics, **extra, **more))
    return entries


def _check_float_parity(model, test: Split, tflite_logits_: np.ndarray, atol: float, path: Path) -> None:
    rows = slice(0, 32)
    keras_logits = model.predict([v[rows] for v in test.inputs.values()], verbose=0)
    worst = float(np.abs(keras_logits - tflite_logits_[rows]).max())
    if worst > atol:
        raise RuntimeError(f"{path}: float32 TFLite differs from Keras by {worst:.2e} (> {atol:.0e})")
    log.info("float32 parity with Keras: max |diff| %.2e", worst)


def teacher_pooling(cfg: KitConfig, folder: Path) -> str:
    """The teacher's pooling: what work_dir/teacher recorded when it was trained, else cfg.pooling.

    Weights trained with one pooling load silently into a model built with the other, so a
    mismatch with an explicit setting is an error, never a quiet swap."""
    record = Path(cfg.work_dir) / "teacher" / "head.json"
    wanted = ck.resolve_pooling(cfg.pooling, folder)
    if not record.is_file():
        return wanted
    recorded = json.loads(record.read_text())["pooling"]
    if cfg.pooling != "auto" and recorded != wanted:
        raise ConfigError(f"{record}: the teacher there was trained with {recorded} pooling, not {wanted}; "
                         f"pass --pooling {recorded} or another --work-dir")
    return recorded


def format_table(manifest: dict) -> str:
    """One row per model: MB, gzip MB, encoder sparsity, test accuracy, macro-F1, AllAgree accuracy."""
    lines = [f"{'variant':<30} {'MB':>7} {'gzip MB':>8} {'sparsity':>8} {'test acc':>9} {'macro-F1':>9} {'AllAgree':>9}"]
    for entry in manifest[Key.MODELS]:
        test = entry["metrics"].get("test", {})
        agree = entry["metrics"].get("test_allagree", {})
        fmt = lambda d, k: f"{d[k]:.4f}" if k in d else "-"  # noqa: E731
        lines.append(f"{entry[Key.NAME]:<30} {entry[Key.BYTES] / 1e6:>7.2f} {entry.get('gzip_bytes', 0) / 1e6:>8.2f} "
                     f"{entry.get('sparsity', 0):>8.3f} {fmt(test, 'accuracy'):>9} {fmt(test, 'macro_f1'):>9} "
                     f"{fmt(agree, 'accuracy'):>9}")
    return "\n".join(lines)
