"""The int4w variants: each source model's layer groups at 4 or 8 bits, the combination chosen on dev."""

from __future__ import annotations

import os
from pathlib import Path

from converter.compress.distill import distillation_data
from converter.compress.qat import weight_only_qat
from converter.config import KitConfig, ModelConfig
from converter.export.bundle import model_entry
from converter.export.choice import standard_error_points
from converter.export.lowbit import HEAD_BITS, WeightBits, export_lowbit, fake_quantize, file_weights, layer_groups
from converter.export.stats import gzip_bytes
from converter.export.tflite import tflite_logits
from converter.jobs.context import Context, file_metrics, split_metrics, train_dev
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


def bits_by_layer(model, bits: WeightBits) -> dict[str, int]:
    """{layer name: bits} for every weight matrix of `model` (the head at HEAD_BITS)."""
    return {layer.name: HEAD_BITS if group == "head" else getattr(bits, group)
            for group, layers in layer_groups(model).items() for layer in layers}


def qat_of_rounding(model, model_cfg: ModelConfig, prefix: str, bits: WeightBits, ctx: Context, teacher,
                    teacher_ctx: Context, cfg: KitConfig, resume: bool) -> tuple[Path, dict]:
    """Fine-tune `model` through its `bits` rounding on the distillation loss (the teacher reads the
    original ids when the model's are mapped), then export -> (file, report)."""
    (inputs, labels), dev = train_dev(ctx)
    teacher_inputs = train_dev(teacher_ctx)[0][0]
    targets, loss = distillation_data(teacher, inputs, labels, Path(cfg.work_dir), cfg.distill.alpha,
                                      cfg.distill.temperature, teacher_inputs=teacher_inputs)
    print(f"{prefix}-int4w: quantization-aware training of the {bits.tag} rounding", flush=True)
    trained, state = weight_only_qat(model, bits_by_layer(model, bits), (inputs, targets), dev, cfg.slim.lowbit_qat,
                                     Path(cfg.work_dir) / "lowbit" / f"{prefix}_qat", resume=resume, loss=loss)
    path = export_lowbit(on_grid_copy(trained, model_cfg, bits), model_cfg.max_seq_len, bits,
                         Path(cfg.work_dir) / "lowbit" / f"{prefix}-{bits.tag}-qat.tflite")
    return path, {"best_epoch": state["best_epoch"], "keras_dev_accuracy": state["best_dev_accuracy"]}


def lowbit_variant(model, model_cfg: ModelConfig, prefix: str, ctx: Context, cfg: KitConfig,
                   bundle_files: tuple[Path, ...] = (), teacher=None, teacher_ctx: Context | None = None,
                   resume: bool = False, **extra) -> tuple[dict, dict]:
    """Every WeightBits combination of one model, scored on dev; the chosen one (after QAT of its
    rounding, when that is better on dev) exported as <prefix>-int4w and scored on test
    -> (manifest entry, report with every combination)."""
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
    chosen = choose_bits(results, len(dev.data))
    bits, dev_logits = tried[chosen["tag"]]
    source, qat_report = work / f"{prefix}-{bits.tag}.tflite", None
    # Post-training rounding lost dev accuracy against the best combination: train through it.
    lost = chosen["dev_accuracy"] < max(r["dev_accuracy"] for r in results)
    if teacher is not None and cfg.slim.lowbit_qat is not None and lost:
        qat_path, qat_report = qat_of_rounding(model, model_cfg, prefix, bits, ctx, teacher, teacher_ctx or ctx, cfg, resume)
        qat_logits = tflite_logits(qat_path, dev.inputs)
        qat_report.update(dev_accuracy=split_metrics(qat_logits, dev)["test"]["accuracy"],
                          post_training_dev_accuracy=chosen["dev_accuracy"])
        qat_report["shipped"] = qat_report["dev_accuracy"] >= chosen["dev_accuracy"]
        print(f"{prefix}-int4w {bits.tag} after QAT: dev accuracy {qat_report['dev_accuracy']:.4f} "
              f"(post-training {chosen['dev_accuracy']:.4f})", flush=True)
        if qat_report["shipped"]:
            source, dev_logits = qat_path, qat_logits
    name = f"{prefix}-{Quantization.INT4W}"
    path = Path(cfg.work_dir) / "export" / f"{name}.tflite"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, path)
    logits = {"dev": dev_logits, "test": tflite_logits(path, test.inputs)}
    metrics, temperature = file_metrics(logits, {"dev": dev, "test": test})
    print(f"{name}: {bits.tag} chosen on dev, {path.stat().st_size / 1e6:.2f} MB, test accuracy "
          f"{metrics['test']['accuracy']:.4f}", flush=True)
    more = {Key.TEMPERATURE: temperature} if temperature is not None else {}
    if qat_report and qat_report["shipped"]:
        more["qat"] = True
    entry = model_entry(name, path, Quantization.INT4W, model_cfg, metrics, weight_bits=bits.as_dict(),
                        sparsity=round(zero_fraction(path), 4), gzip_bytes=gzip_bytes(path), **more, **extra)
    report = {"chosen": bits.tag, "rule": "smallest file within one standard error of the best dev accuracy",
              "combinations": results, "qat": qat_report, "test": metrics["test"],
              "bundle_bytes_without_manifest": int(path.stat().st_size + sum(Path(f).stat().st_size for f in bundle_files))}
    return entry, report


def lowbit_variants(sources: list[tuple], cfg: KitConfig, vocab: Path, teacher=None, teacher_ctx: Context | None = None,
                    resume: bool = False) -> tuple[list, dict]:
    """sources: (model, cfg, prefix, its Context, extra entry fields, extra bundle files) -> (entries, report by prefix).
    teacher, teacher_ctx (its Context: the original ids): for QAT of the rounding; None: post-training only."""
    entries, report = [], {}
    for model, model_cfg, prefix, ctx, extra, files in sources:
        entry, report[prefix] = lowbit_variant(model, model_cfg, prefix, ctx, cfg, (vocab, *files), teacher, teacher_ctx,
                                               resume, **extra)
        entries.append(entry)
    return entries, report

