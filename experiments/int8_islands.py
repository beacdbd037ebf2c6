"""Where int8 time and accuracy go: export the fine-tuned teacher as int8 with different sets of
op types kept float ("float islands"), then time each file (1 thread) and score it on dev.

    python -m experiments.int8_islands [--work-dir work] [--rows 200] [--runs 50]
Prints one row per setting next to float32 and dynamic-range. Needs the teacher from make convert."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from converter.config import KitConfig
from converter.export.tflite import convert
from converter.files import write_bytes_atomic
from converter.jobs.compression import load_trained, teacher_config
from converter.jobs.context import calibration_inputs, prepare
from converter.modeling import hf_weights as ck
from device_runtime.interpreter import TFLiteModel

NORM = ("MEAN", "SQUARED_DIFFERENCE", "RSQRT")
ELEMENTWISE = NORM + ("ADD", "SUB", "MUL")
SETTINGS = {
    "float32": ("float32", ()),
    "dynamic": ("dynamic", ()),
    "int8, everything int8": ("int8", ()),
    "int8, float LayerNorm": ("int8", NORM),
    "int8, float LayerNorm + elementwise": ("int8", ELEMENTWISE),
    "int8, only FULLY_CONNECTED int8 (default)": ("int8", ELEMENTWISE + ("SOFTMAX", "GELU", "BATCH_MATMUL")),
}


def p50_ms(runner: TFLiteModel, inputs: dict, runs: int) -> float:
    one = {k: v[:1] for k, v in inputs.items()}
    for _ in range(5):
        runner.predict(one)
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        runner.predict(one)
        times.append(time.perf_counter_ns() - start)
    return float(np.median(times)) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work-dir", default="work")
    parser.add_argument("--rows", type=int, default=200, help="dev sentences scored per setting")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    cfg = KitConfig(work_dir=args.work_dir)
    ctx = prepare(cfg, ck.resolve_checkpoint(cfg.checkpoint))
    model = load_trained(cfg, teacher_config(cfg), "teacher")
    calibration = calibration_inputs(ctx.splits["train"], cfg.export.num_calibration_examples, cfg.export.calibration_seed)
    dev = ctx.splits["dev"]
    inputs = {k: v[: args.rows] for k, v in dev.inputs.items()}
    labels = dev.data.labels[: args.rows]
    print(f"{'setting':<45} {'dev acc':>8} {'p50 ms':>8}")
    for name, (quantization, float_ops) in SETTINGS.items():
        path = Path(args.work_dir) / "islands" / f"{name.split(',')[0]}-{len(float_ops)}.tflite"
        write_bytes_atomic(path, convert(model, cfg.model.max_seq_len, quantization, calibration, float_ops))
        runner = TFLiteModel(path, num_threads=1)
        predictions = [runner.predict({k: v[i:i + 1] for k, v in inputs.items()}).argmax() for i in range(len(labels))]
        print(f"{name:<45} {np.mean(np.array(predictions) == labels):>8.4f} {p50_ms(runner, inputs, args.runs):>8.2f}",
              flush=True)


if __name__ == "__main__":
    main()
