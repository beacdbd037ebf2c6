"""Structured pruning trade-off: accuracy vs latency for several keep fractions, one run.

    python -m experiments.structured_sweep [--work-dir work] [--keep 0.75:0.75,0.5:0.5] [--epochs 3]
        [--importance magnitude|taylor]

Needs the teacher and the student from `make convert` in work/. For every heads:ffn pair it
slices the student, recovers it by distillation (checkpoints in work/structured_sweep/, so a
rerun resumes), exports full int8 and evaluates it on test; then it benchmarks all of them
against the unpruned student-int8 in alternating rounds (fresh process per model). Prints a
table and writes benchmarks/results/structured-sweep-<machine>-<date>.{json,md}."""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

from converter.compress.distill import distill, student_config
from converter.compress.structured import importance_scores, keep_top, slice_model
from converter.config import LABELS, KitConfig
from converter.export.bundle import write_bundle
from converter.jobs.compression import load_trained, trained_teacher
from converter.jobs.context import calibration_inputs, export_variants, train_dev
from device_runtime.bench import run_bench
from experiments.sweep_variants import results_stem

BASELINE = "student-int8"


def _pairs(text: str) -> list[tuple[float, float]]:
    return [tuple(float(v) for v in part.split(":")) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work-dir", default="work")
    parser.add_argument("--keep", default="0.75:0.75,0.5:0.75,0.75:0.5,0.5:0.5", help="heads:ffn fractions")
    parser.add_argument("--epochs", type=int, default=3, help="recovery epochs per pair")
    parser.add_argument("--importance", default=KitConfig().slim.importance, help="magnitude or taylor (slim.importance)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()

    cfg = replace(KitConfig(), work_dir=args.work_dir)
    ctx, teacher, teacher_cfg = trained_teacher(cfg)
    student_cfg = student_config(teacher_cfg, cfg.distill)
    student = load_trained(cfg, student_cfg, "student")
    train, dev = train_dev(ctx)
    calibration = calibration_inputs(ctx.splits["train"], cfg.export.num_calibration_examples, cfg.export.calibration_seed)
    work = Path(args.work_dir) / "structured_sweep"
    sweep_cfg = replace(cfg, work_dir=str(work))

    entries = export_variants(student, student_cfg, "student", ctx, sweep_cfg, ("int8",), calibration)
    keep_of = {BASELINE: (1.0, 1.0)}
    dev_of = {BASELINE: json.loads((Path(args.work_dir) / "student" / "state.json").read_text())["best_dev_accuracy"]}
    recovery = replace(cfg.distill, train=replace(cfg.slim.recovery, epochs=args.epochs))
    scores = importance_scores(student, student_cfg, args.importance, train)  # one ranking for every pair
    for heads_kept, ffn_kept in _pairs(args.keep):
        tag = f"structured-h{round(heads_kept * 100)}-f{round(ffn_kept * 100)}"
        tag += "" if args.importance == "magnitude" else f"-{args.importance}"
        print(f"{tag}: slicing and {args.epochs} recovery epochs", flush=True)
        heads, neurons = keep_top(scores, heads_kept, ffn_kept)
        small, small_cfg = slice_model(student, student_cfg, heads, neurons)
        small, small_cfg, state = distill(teacher, teacher_cfg, train, dev, recovery, work / tag.replace("-", "_"),
                                      resume=True, student=small, student_cfg=small_cfg)
        entries += export_variants(small, small_cfg, f"student-{tag}", ctx, sweep_cfg, ("int8",), calibration)
        keep_of[f"student-{tag}-int8"] = (heads_kept, ffn_kept)
        dev_of[f"student-{tag}-int8"] = state["best_dev_accuracy"]

    bundle = write_bundle(work / "bundle", entries, ctx.vocab, LABELS, student_cfg.max_seq_len, ctx.do_lower_case,
                          keep_existing=False)
    names = [m["name"] for m in bundle["models"]]
    p50 = {name: [] for name in names}
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True)
        for row in run_bench(work / "bundle", names, [1], args.runs, 10, None)["results"]:
            if row.get("status") == "ok":
                p50[row["model"]].append(row["latency_ms"]["p50"])
    by_name = {m["name"]: m for m in bundle["models"]}
    base_ms = statistics.median(p50[BASELINE])
    base_acc = by_name[BASELINE]["metrics"]["test"]["accuracy"]
    rows = []
    for name in names:
        m = by_name[name]
        ms = statistics.median(p50[name])
        rows.append({"model": name, "keep_heads": keep_of[name][0], "keep_ffn": keep_of[name][1],
                     "mb": m["bytes"] / 1e6, "dev_accuracy_float": dev_of[name],
                     "test_accuracy": m["metrics"]["test"]["accuracy"],
                     "allagree_accuracy": m["metrics"]["test_allagree"]["accuracy"],
                     "accuracy_change_points": 100 * (m["metrics"]["test"]["accuracy"] - base_acc),
                     "p50_ms": ms, "speedup": base_ms / ms})
    header = ("| model | heads kept | FFN kept | MB | dev acc (float) | test acc | AllAgree | Δ acc (points) "
              "| p50 ms | speed-up |")
    lines = [header, "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['model']} | {r['keep_heads']:.0%} | {r['keep_ffn']:.0%} | {r['mb']:.2f} | "
                     f"{r['dev_accuracy_float']:.4f} | "
                     f"{r['test_accuracy']:.4f} | {r['allagree_accuracy']:.4f} | {r['accuracy_change_points']:+.2f} | "
                     f"{r['p50_ms']:.2f} | {r['speedup']:.2f}x |")
    table = "\n".join(lines)
    print(table)
    stem = results_stem(f"structured-sweep-{args.importance}")
    stem.with_suffix(".json").write_text(json.dumps({"rounds": args.rounds, "runs": args.runs,
                                                     "recovery_epochs": args.epochs, "importance": args.importance,
                                                     "rows": rows}, indent=2))
    stem.with_suffix(".md").write_text(
        f"Structured pruning trade-off (`experiments/structured_sweep.py`, {args.importance} importance, "
        f"{args.epochs} recovery epochs, "
        f"int8, 1 thread, seq {student_cfg.max_seq_len}, median p50 of {args.rounds} alternating rounds)\n\n{table}\n")


if __name__ == "__main__":
    main()
