"""Choose student-training settings on dev (never test): one run per --run, each a set of
DistillConfig overrides.

    python -m experiments.student_sweep --run augment_copies=2 --run train.epochs=8
Needs the teacher fine-tuned by `make convert` in work/. Prints dev accuracy per run and writes
work/student_sweep.json; `--results` writes every run's figures (from its folder) to
benchmarks/results/student-sweep-<machine>-<date>.json."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields, replace
from pathlib import Path

from converter.compress.distill import distill
from converter.config import KitConfig
from converter.data.augment import token_id
from converter.jobs.compression import trained_teacher
from converter.jobs.context import train_dev
from experiments.sweep_variants import parse_variant, results_stem

# Student widths default to None (the teacher's); a run that sets one gives an int.
WIDTH_TYPES = {"hidden_size": int, "num_heads": int, "intermediate_size": int}


def run_defaults(distill_cfg) -> dict:
    """The keys a --run may set: DistillConfig's fields, and its FinetuneConfig's as train.<field>."""
    top = {f.name: getattr(distill_cfg, f.name) for f in fields(distill_cfg) if f.name != "train"}
    return top | {f"train.{f.name}": getattr(distill_cfg.train, f.name) for f in fields(distill_cfg.train)}


def overrides(distill_cfg, spec: str):
    """'augment_copies=2,train.epochs=8' -> DistillConfig with those fields replaced."""
    variant = parse_variant(spec, run_defaults(distill_cfg), types=WIDTH_TYPES, flag="--run")
    train = {key.removeprefix("train."): value for key, value in variant.items() if key.startswith("train.")}
    top = {key: value for key, value in variant.items() if not key.startswith("train.")}
    return replace(distill_cfg, **top, train=replace(distill_cfg.train, **train))


def write_results(cfg: KitConfig) -> Path:
    """The default student (work/student) and every run folder in work/student_sweep, from their
    state.json (a run still going shows the epochs it has finished) ->
    benchmarks/results/student-sweep-<machine>-<date>.json, for `make results`."""
    folders = [Path(cfg.work_dir, "student")] + sorted(Path(cfg.work_dir, "student_sweep").glob("*/"))
    rows = []
    for folder in folders:
        path = folder / "state.json" if (folder / "state.json").is_file() else folder / "trainer" / "state.json"
        state = json.loads(path.read_text())  # trainer/: a hidden-state run still training
        rows.append({"run": "default" if folder.name == "student" else folder.name, "epochs_run": state["epoch"],
                     "dev_accuracy": state["best_dev_accuracy"], "best_epoch": state["best_epoch"]})
    out = results_stem("student-sweep").with_suffix(".json")
    out.write_text(json.dumps({"epochs": cfg.distill.train.epochs, "rows": rows}, indent=2) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", action="append", default=[], help="comma-separated DistillConfig overrides")
    parser.add_argument("--results", action="store_true", help="only write the results JSON from the runs in work/")
    args = parser.parse_args()
    cfg = KitConfig()
    if args.results:
        print(f"wrote {write_results(cfg)}")
        return
    if not args.run:
        parser.error("give at least one --run (or --results)")
    ctx, teacher, teacher_cfg = trained_teacher(cfg)
    train, dev = train_dev(ctx)
    rows = []
    for spec in args.run:
        run_cfg = overrides(cfg.distill, spec)
        work = Path(cfg.work_dir) / "student_sweep" / (spec.replace(",", "_").replace("=", "") or "default")
        _, _, state = distill(teacher, teacher_cfg, train, dev, run_cfg, work, resume=True,
                              mask_id=token_id(ctx.vocab))
        rows.append({"run": spec, "dev_accuracy": state["best_dev_accuracy"], "best_epoch": state["best_epoch"]})
        print(f"{spec or 'default':<40} dev accuracy {state['best_dev_accuracy']:.4f} (epoch {state['best_epoch']})",
              flush=True)
    out = Path(cfg.work_dir, "student_sweep.json")
    previous = json.loads(out.read_text())["rows"] if out.is_file() else []
    out.write_text(json.dumps({"rows": previous + rows}, indent=2))


if __name__ == "__main__":
    main()
