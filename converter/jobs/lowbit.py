"""The int4w variants: each source model's layer groups at 4 or 8 bits, the combination chosen on dev."""

from __future__ import annotations

import os
from pathlib import Path

from converter.config import KitConfig, ModelConfig
from converter.export.bundle import model_entry
from converter.export.choice import standard_error_points
from converter.export.lowbit import WeightBits, export_lowbit, fake_quantize, file_weights
from converter.export.stats import gzip_bytes
from converter.export.tflite import tflite_logits
from converter.jobs.context import Context, file_metrics, split_metrics
from converter.modeling import names
from converter.modeling.bert import build_classifier
from device_runtime.format import Key, Quantization


def on_grid_copy(model, model_cfg: ModelConfig, bits: WeightBits):
    """A copy of `model` with its weights fake-quantized (the original is left as it was)."""
    copy = build_classifier(model_cfg, name=model.name)
    copy.set_weights(model.get_weights())
    fake_quantize(copy, bits)
    return copy


def zero_fraction(path: Path) -> float:
    """Share of the encoder's weights that are exactly zero in the file (4-bit rounding makes many)."""
    tensors = [w for name, (_, w) in file_weights(path).items() if names.ENCODER_WEIGHT_TENSOR.search(name)]
    return float(sum((w == 0).sum() for w in tensors) / max(1, sum(w.size for w in tensors)))


def choose_bits(results: list[dict], n: int) -> dict:
    """The smallest file whose dev accuracy is within one standard error of the best combination's
    (the product rule of converter.export.choice, applied to the layer groups' bits)."""
    best = max(r["dev_accuracy"] for r in results)
    margin = standard_error_points(best, n) / 100
    eligible = [r for r in results if r["dev_accuracy"] >= best - margin - 1e-12]
    return min(eligible, key=lambda r: (r["bytes"], -r["dev_accuracy"]))


def lowbit_variant(model, model_cfg: ModelConfig, prefix: str, ctx: Context, cfg: KitConfig,
                   bundle_files: tuple[Path, ...] = (), **extra) -> tuple[dict, dict]:
    """Every WeightBits combination of one model, scored on dev; the chosen one exported as
    <prefix>-int4w and scored on test -> (manifest entry, report with every combination)."""
    work = Path(cfg.work_dir) / "lowbit"
    dev, test = ctx.splits["dev"], ctx.splits["test"]
    results, tried, seq_len = [], {}, model_cfg.max_seq_len
    for bits in WeightBits.every():
        path = export_lowbit(on_grid_copy(model, model_cfg, bits), seq_len, bits, work / f"{prefix}-{bits.tag}.tflite")
        dev_logits = tflite_logits(path, dev.inputs)
        tried[bits.tag] = bits, dev_logits
        accuracy = split_metrics(dev_logits, dev)["test"]["accuracy"]
        results.append({"bits": bits.as_dict(), "tag": bits.tag, "bytes": path.stat().st_size, "dev_accuracy": accuracy})
        print(f"{prefix}-int4w {bits.tag}: {path.stat().st_size / 1e6:.2f} MB, dev accuracy {accuracy:.4f}", flush=True)
    bits, dev_logits = tried[choose_bits(results, len(dev.data))["tag"]]
    name = f"{prefix}-{Quantization.INT4W}"
    path = Path(cfg.work_dir) / "export" / f"{name}.tflite"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(work / f"{prefix}-{bits.tag}.tflite", path)
    logits = {"dev": dev_logits, "test": tflite_logits(path, test.inputs)}
    metrics, temperature = file_metrics(logits, {"dev": dev, "test": test})
    print(f"{name}: {bits.tag} chosen on dev, {path.stat().st_size / 1e6:.2f} MB, test accuracy "
          f"{metrics['test']['accuracy']:.4f}", flush=True)
    more = {Key.TEMPERATURE: temperature} if temperature is not None else {}
    entry = model_entry(name, path, Quantization.INT4W, model_cfg, metrics, weight_bits=bits.as_dict(),
                        sparsity=round(zero_fraction(path), 4), gzip_bytes=gzip_bytes(path), **more, **extra)
    report = {"chosen": bits.tag, "rule": "smallest file within one standard error of the best dev accuracy",
              "combinations": results, "test": metrics["test"],
              "bundle_bytes_without_manifest": int(path.stat().st_size + sum(Path(f).stat().st_size for f in bundle_files))}
    return entry, report


def lowbit_variants(sources: list[tuple], cfg: KitConfig, vocab: Path) -> tuple[list, dict]:
    """sources: (model, cfg, prefix, its Context, extra entry fields, extra bundle files) -> (entries, report by prefix)."""
    entries, report = [], {}
    for model, model_cfg, prefix, ctx, extra, files in sources:
        entry, report[prefix] = lowbit_variant(model, model_cfg, prefix, ctx, cfg, (vocab, *files), **extra)
        entries.append(entry)
    return entries, report

