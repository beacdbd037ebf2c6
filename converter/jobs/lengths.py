"""Re-export bundle models at another fixed length (for benchmarks and length buckets)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from converter.compress.distill import student_config
from converter.config import LABELS, KitConfig
from converter.data.splits import load_splits
from converter.errors import ConfigError
from converter.export.bundle import model_entry, write_bundle
from converter.export.tflite import export_tflite
from converter.jobs.compression import load_trained, teacher_config
from device_runtime.format import INPUT_NAMES, MANIFEST, Key, needs_calibration
from device_runtime.tokenizer import WordPieceTokenizer


def _source_model(cfg: KitConfig, name: str, seq_len: int):
    """(Keras model at seq_len, its ModelConfig) for a bundle name such as teacher-float32."""
    prefix = name.rsplit("-", 1)[0]
    teacher_cfg = replace(teacher_config(cfg), max_seq_len=seq_len)
    folders = {"teacher": ("teacher", teacher_cfg), "student": ("student", student_config(teacher_cfg, cfg.distill))}
    if prefix not in folders:
        raise ConfigError(f"{name}: only teacher-* and student-* models can be re-exported")
    folder, model_cfg = folders[prefix]
    return load_trained(cfg, model_cfg, folder), model_cfg


def export_at_length(bundle: Path, work: Path, seq_len: int, names: list[str], cfg: KitConfig | None = None) -> Path:
    """Export `names` (same quantization, same weights) at seq_len into work/bundle-<seq_len>/."""
    cfg = cfg or replace(KitConfig(), work_dir=str(work))
    manifest = json.loads((Path(bundle) / MANIFEST).read_text())
    by_name = {m[Key.NAME]: m for m in manifest[Key.MODELS]}
    entries = []
    for name in names:
        quantization = by_name[name][Key.QUANTIZATION]
        model, model_cfg = _source_model(cfg, name, seq_len)
        calibration = None
        if needs_calibration(quantization):
            calibration = _calibration(cfg, bundle, manifest, seq_len)
        float_ops = tuple(by_name[name].get("float_ops", ()))
        path = export_tflite(model, seq_len, quantization, work / f"long-{seq_len}" / f"{name}.tflite", calibration, float_ops)
        entries.append(model_entry(name, path, quantization, model_cfg, {}))
    out = work / f"bundle-{seq_len}"
    write_bundle(out, entries, Path(bundle) / manifest[Key.VOCAB], LABELS, seq_len, manifest[Key.DO_LOWER_CASE],
                 keep_existing=False)
    return out


def _calibration(cfg: KitConfig, bundle: Path, manifest: dict, seq_len: int):
    """Real training sentences for full-integer calibration, tokenized with the bundle's vocab."""

    texts = load_splits(cfg.data)["train"].texts[: cfg.export.num_calibration_examples]
    tok = WordPieceTokenizer(Path(bundle) / manifest[Key.VOCAB], lowercase=manifest[Key.DO_LOWER_CASE])
    rows = [tok.encode(text, seq_len) for text in texts]
    return {k: np.concatenate([r[k] for r in rows]) for k in INPUT_NAMES}
