"""Choose student-training settings on dev (never test): one run per --run, each a set of
DistillConfig overrides.

    .venv/bin/python -m experiments.student_sweep --run augment_copies=2 --run train.epochs=8
Needs the teacher fine-tuned by `make convert` in work/. Prints dev accuracy per run and writes
work/student_sweep.json."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from converter.compress.distill import distill
from converter.config import KitConfig
from converter.data.augment import token_id
from converter.jobs.compression import trained_teacher
from converter.jobs.context import train_dev


def overrides(distill_cfg, spec: str):
    """'augment_copies=2,train.epochs=8' -> DistillConfig with those fields replaced."""
    for item in filter(None, spec.split(",")):
        key, value = item.split("=")
        if key.startswith("train."):
            field = key.removeprefix("train.")
            kind = type(getattr(distill_cfg.train, field))
            distill_cfg = replace(distill_cfg, train=replace(distill_cfg.train, **{field: kind(value)}))
        else:
            distill_cfg = replace(distill_cfg, **{key: type(getattr(distill_cfg, key))(value)})
    return distill_cfg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", action="append", required=True, help="comma-separated DistillConfig overrides")
    args = parser.parse_args()
    cfg = KitConfig()
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
