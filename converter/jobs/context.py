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
from converter.train.distribute import make_strategy
from device_runtime.calibration import expected_calibration_error, fit_temperature, softmax
from device_runtime.format import ATTENTION_MASK, Key, Quantization, needs_calibration
from device_runtime.metrics import classification_metrics
from device_runtime.platforms import platform_record

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
    strategy: object = None  # tf.distribute strategy of the teacher fine-tune and the distillation (None: one device)


def prepare(cfg: KitConfig, folder: Path, splits: dict[str, Dataset] | None = None) -> Context:
    settings = tokenizer_settings(folder)
    tokenizer = load_tokenizer(folder)
    splits = load_splits(cfg.data) if splits is None else dict(splits)  # a copy: the caller's dict stays as it was
    if cfg.finetune.max_train_examples and "train" in splits:
        keep = np.zeros(len(splits["train"]), bool)
        keep[: cfg.finetune.max_train_examples] = True
        splits["train"] = splits["train"].subset(keep)
    encoded = {name: Split(data, encode(tokenizer, data.texts, cfg.model.max_seq_len)) for name, data in splits.items()}
    strategy = make_strategy(cfg.strategy, cfg.cpu_replicas)
    return Context(folder, settings["vocab"], settings["do_lower_case"], encoded, strategy)


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


def file_metrics(logits: dict[str, np.ndarray], splits: dict[str, Split], labels=LABELS) -> tuple[dict, float | None]:
    """Manifest metrics of one exported file from its logits per split -> (metrics, temperature).

    dev and test accuracy / macro-F1 (test_allagree too), the platform they were computed on, and a
    temperature fitted on dev (None without a dev split) with the test ECE before and after it."""
    metrics = {"platform": platform_record()}
    for name in ("dev", "test"):
        if name in logits:
            scored = split_metrics(logits[name], splits[name], labels)
            metrics[name] = scored["test"]
            if name == "test" and "test_allagree" in scored:
                metrics["test_allagree"] = scored["test_allagree"]
    if "dev" not in logits or "test" not in logits:
        return metrics, None
    ours = [list(labels).index(label) for label in LABELS]  # columns in LABELS order, as the split labels are
    dev_logits, test_logits = logits["dev"][:, ours], logits["test"][:, ours]
    temperature = fit_temperature(dev_logits, splits["dev"].data.labels)
    test_labels = splits["test"].data.labels
    metrics["calibration"] = {
        "fitted_on": "dev", "temperature": round(temperature, 4),
        "test_ece": round(expected_calibration_error(softmax(test_logits), test_labels), 4),
        "test_ece_calibrated": round(expected_calibration_error(softmax(test_logits, temperature), test_labels), 4)}
    return metrics, round(temperature, 4)


def _front_matter_license(folder: Path) -> str:
    """`license:` of the checkpoint's README.md front matter (Hugging Face model cards), else 'unknown'."""
    readme = Path(folder) / "README.md"
    text = readme.read_text(encoding="utf-8", errors="replace") if readme.is_file() else ""
    if text.startswith("---"):
        for line in text.split("---", 2)[1].splitlines():
            if line.strip().startswith("license:"):
                return line.split(":", 1)[1].strip()
    return "unknown (see the checkpoint's own model card)"


def _kit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"finsent-edge {version('finsent-edge')}"
    except PackageNotFoundError:
        return "finsent-edge (version unknown)"


def shipping(cfg: KitConfig, ctx: Context, teacher: str | None = None, trains: bool = True, as_is: bool = False) -> dict:
    """write_bundle's provenance, default-model rule and median dev length for a bundle built from ctx.

    teacher: how the teacher came to be (default: fine-tuned here on the training split). trains:
    whether the bundle holds weights trained here (a fine-tuned teacher, a student): then the training
    data and its license pass to them. as_is: the teacher is a checkpoint's classifier used as given."""
    base = ck.PACKAGED_NAMES.get(cfg.checkpoint, cfg.checkpoint)
    trained_here = trains or teacher is None
    provenance = {
        "base_checkpoint": base, "base_checkpoint_license": _front_matter_license(ctx.folder),
        "teacher": teacher or f"{base} fine-tuned by the kit on the training split ({cfg.finetune.epochs} epochs, "
                              f"seed {cfg.finetune.seed})",
        "training_data": cfg.data.dataset if trained_here else "the checkpoint's own (see its model card)",
        "training_data_license": cfg.data.dataset_license if trained_here else "unknown",
        "split": {name: len(split.data) for name, split in ctx.splits.items()},
        "split_source": Path(cfg.data.data_dir).name, "kit": _kit_version()}
    if as_is:
        provenance["teacher_as_is"] = True
    dev = ctx.splits.get("dev")
    tokens = int(np.median(dev.inputs[ATTENTION_MASK].sum(1))) if dev is not None else None
    return {"provenance": provenance, "rule": cfg.bundle, "tokens": tokens}


def calibration_inputs(split: Split, count: int, seed: int) -> dict[str, np.ndarray]:
    """A seeded sample of real (training) sentences for full-integer calibration."""
    rows = np.random.default_rng(seed).permutation(len(split.data))[:count]
    return {name: value[rows] for name, value in split.inputs.items()}


def export_variants(model, model_cfg: ModelConfig, prefix: str, ctx: Context, cfg: KitConfig,
                    quantizations=None, calibration=None, labels=LABELS, **extra) -> list[dict]:
    """Export, check and evaluate every quantization of one Keras model -> manifest entries."""
    export_dir = Path(cfg.work_dir) / "export"
    test = ctx.splits.get("test")
    scored = {name: split for name, split in ctx.splits.items() if name in ("dev", "test")}
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
        logits = {split: tflite_logits(path, scored[split].inputs) for split in scored}
        if test is not None and quantization == Quantization.FLOAT32:
            _check_float_parity(model, test, logits["test"], cfg.export.float_parity_atol, path)
        metrics, temperature = file_metrics(logits, scored, labels)
        if test is not None:
            print(f"{name}: {path.stat().st_size / 1e6:.1f} MB, test accuracy {metrics['test']['accuracy']:.4f}", flush=True)
        more = {"float_ops": list(float_ops)} if float_ops else {}
        if temperature is not None:
            more[Key.TEMPERATURE] = temperature
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


def teacher_story(cfg: KitConfig) -> str | None:
    """The manifest's provenance line for a teacher used as given (None: fine-tuned by the kit)."""
    record = Path(cfg.work_dir) / "teacher" / "head.json"
    if not record.is_file() or not json.loads(record.read_text()).get("as_is"):
        return None
    labels = json.loads(record.read_text())["labels"]
    base = ck.PACKAGED_NAMES.get(cfg.checkpoint, cfg.checkpoint)
    return (f"{base}'s own classifier, used as given (not fine-tuned by the kit); its labels "
            f"{', '.join(labels)} mapped by name to {', '.join(LABELS)}")


def format_default(manifest: dict) -> str:
    """One line: which model classify uses with no --model, and why."""
    record = manifest.get(Key.DEFAULT_MODEL)
    if not record:
        return "no default model"
    entry = next(m for m in manifest[Key.MODELS] if m[Key.NAME] == record["name"])
    dev = entry["metrics"].get("dev", {}).get("accuracy")
    best = record.get("best_dev_accuracy")
    figures = f"dev accuracy {dev:.4f}, best {best:.4f}; " if dev is not None and best is not None else ""
    why = record["rule"] if record["chosen_by"] == "rule" else record["chosen_by"]
    return f"default model: {record['name']} ({figures}{why})"


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
