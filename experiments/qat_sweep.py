"""The student's QAT recipe on dev: learning rate, epochs, whose logits it learns, the loss's alpha.

    python -m experiments.qat_sweep [--work-dir work]
        [--variants "lr=1e-05,epochs=3;lr=2e-05,epochs=3,target=self"]

A variant's unnamed keys take make convert's values (KitConfig().qat: lr, student_epochs, target;
KitConfig().distill.alpha). Needs `make convert`'s work dir (the teacher, the distilled student and
the teacher's cached training logits). Each variant runs make convert's own function
(compress.run_qat) from the float student into work/qat_sweep/<tag>, exports full int8 and runs
that file on dev and test; the post-training student-int8 file of the work dir is the reference
row. Dev (the int8 file's) picks; test is reported.
Prints a table and writes benchmarks/results/qat-sweep-<machine>-<date>.{json,md}."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from converter.compress.distill import TEACHER_LOGITS, student_config
from converter.config import KitConfig, with_overrides
from converter.jobs.compression import load_trained, run_qat, trained_teacher
from converter.jobs.context import calibration_inputs
from experiments.sweep_variants import file_metrics, parse_variant, sweep_arguments, write_results

KIT = KitConfig()
DEFAULTS = {"lr": KIT.qat.train.learning_rate, "epochs": KIT.qat.student_epochs, "target": KIT.qat.target,
            "alpha": KIT.distill.alpha}
TARGETS = ("teacher", "self")

# The runs of benchmarks/results/qat-sweep-x86_64-2026-11-27.md (every key spelled out: defaults move).
VARIANTS = ";".join(f"lr={lr:g},epochs={e},target={t},alpha={a:g}" for lr, e, t, a in (
    (1e-5, 3, "teacher", 0.1), (2e-5, 3, "teacher", 0.1), (5e-6, 3, "teacher", 0.1), (1e-5, 3, "self", 0.1)))


def tag_of(v: dict) -> str:
    return f"lr{v['lr']:g}-e{v['epochs']}-{v['target']}-a{v['alpha']:g}"


def main() -> None:
    args = sweep_arguments(VARIANTS)
    variants = [parse_variant(text, DEFAULTS, {"target": TARGETS}) for text in args.variants.split(";") if text.strip()]

    cfg = replace(KitConfig(), work_dir=args.work_dir)
    ctx, teacher, teacher_cfg = trained_teacher(cfg)
    student_cfg = student_config(teacher_cfg, cfg.distill)
    calibration = calibration_inputs(ctx.splits["train"], cfg.export.num_calibration_examples, cfg.export.calibration_seed)
    work = Path(args.work_dir) / "qat_sweep"
    reference = Path(args.work_dir) / "export" / "student-int8.tflite"
    rows = [{"variant": "post-training int8 (student-int8)", **file_metrics(reference, ctx)}]
    print(f"== reference {reference}: {rows[0]}", flush=True)

    for v in variants:
        tag = tag_of(v)
        print(f"== {tag}", flush=True)
        vwork = work / tag
        vwork.mkdir(parents=True, exist_ok=True)
        logits = Path(args.work_dir) / TEACHER_LOGITS
        if logits.exists() and not (vwork / logits.name).exists():  # the teacher's cache, as make convert has it
            shutil.copy(logits, vwork / logits.name)
        vcfg = with_overrides(replace(cfg, work_dir=str(vwork)), "qat", target=v["target"], student_epochs=v["epochs"],
                              train=replace(cfg.qat.train, learning_rate=v["lr"]))
        vcfg = with_overrides(vcfg, "distill", alpha=v["alpha"])
        student = load_trained(cfg, student_cfg, "student")  # a fresh float student per variant
        entries, report = run_qat(vcfg, ctx, student, student_cfg, calibration, teacher, resume=True)
        rows.append({"variant": tag, **v, "keras_dev": report["best_dev_accuracy"],
                     **file_metrics(Path(entries[0]["source"]), ctx, entries[0]["metrics"])})
        print(f"== {tag}: {rows[-1]}", flush=True)

    lines = ["Student QAT recipes (`experiments/qat_sweep.py`), from make convert's float student; full int8 files "
             "on dev and test", "", "| variant | Keras QAT best dev | int8 dev | int8 test | int8 AllAgree |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['variant']} | {r['keras_dev']:.4f} | {r['dev']:.4f} | {r['test']:.4f} | {r['allagree']:.4f} |"
              if "keras_dev" in r else f"| {r['variant']} | - | {r['dev']:.4f} | {r['test']:.4f} | {r['allagree']:.4f} |"
              for r in rows]
    write_results("qat-sweep", args.out, rows, "\n".join(lines))


if __name__ == "__main__":
    main()
