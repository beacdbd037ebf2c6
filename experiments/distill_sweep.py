"""Choose the distillation defaults on dev (never test): a small alpha x temperature grid.

    python -m experiments.distill_sweep [--epochs 3] [--alphas 0.1,0.5] [--temperatures 2,4]
Needs the teacher fine-tuned by `make convert` in work/. Prints a table; writes work/distill_sweep.json."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from converter.compress.distill import distill
from converter.config import KitConfig
from converter.jobs.compression import trained_teacher
from converter.jobs.context import train_dev


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--alphas", default="0.1,0.5")
    parser.add_argument("--temperatures", default="2,4")
    args = parser.parse_args()
    cfg = KitConfig()
    ctx, teacher, teacher_cfg = trained_teacher(cfg)
    train, dev = train_dev(ctx)
    distill_cfg = replace(cfg.distill, train=replace(cfg.distill.train, epochs=args.epochs))
    rows = []
    for alpha in map(float, args.alphas.split(",")):
        for temperature in map(float, args.temperatures.split(",")):
            run_cfg = replace(distill_cfg, alpha=alpha, temperature=temperature)
            work = Path(cfg.work_dir) / "sweep" / f"a{alpha}_t{temperature}"
            _, _, state = distill(teacher, teacher_cfg, train, dev, run_cfg, work, resume=True)
            rows.append({"alpha": alpha, "temperature": temperature, "dev_accuracy": state["best_dev_accuracy"]})
            print(f"alpha {alpha:<4} T {temperature:<4} dev accuracy {state['best_dev_accuracy']:.4f}", flush=True)
    Path(cfg.work_dir, "distill_sweep.json").write_text(json.dumps({"epochs": args.epochs, "rows": rows}, indent=2))
    best = max(rows, key=lambda r: r["dev_accuracy"])
    print(f"best on dev: alpha {best['alpha']}, T {best['temperature']} ({best['dev_accuracy']:.4f})")


if __name__ == "__main__":
    main()
