"""On-device benchmark in the manner of TFLite's benchmark_model: init, first run, warm-up, timed runs.

Each (model, threads) pair runs in a fresh subprocess (`python -m device_runtime.bench_worker`)
so peak memory is that model's alone and a crash only fails its own row."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from device_runtime.interpreter import backend_version, resolve_backend
from device_runtime.platforms import platform_record

# Financial-news style sentences of typical lengths, written for this benchmark (not from a data set).
SAMPLE_SENTENCES = (
    "Net sales increased by 8 % to EUR 42.5 million in the third quarter .",
    "The company said it will cut 120 jobs at its plant in Finland .",
    "Operating loss widened to EUR 3.1 mn from a loss of EUR 1.9 mn a year earlier .",
    "The board proposes a dividend of EUR 0.45 per share for the financial year .",
    "Shares rose 4 % in early trading after the results beat analysts ' forecasts .",
    "The contract covers the delivery of two paper machines and is valued at about USD 60 million .",
    "Demand weakened in all regions , and order intake fell short of last year 's level .",
    "The new office opens in Tallinn in March .",
)


def summarize(times_ns) -> dict:
    """Latency statistics in milliseconds: mean, std, p50, p90, p99 (linear interpolation)."""
    ms = np.asarray(times_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        raise ValueError("no timings to summarize")
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"mean": float(ms.mean()), "std": float(ms.std()), "p50": float(p50), "p90": float(p90),
            "p99": float(p99), "count": int(ms.size)}


def throughput(times_ns) -> float:
    """Sentences per second for back-to-back runs of the given durations."""
    total = float(np.sum(times_ns))
    return len(times_ns) / (total / 1e9) if total > 0 else 0.0


def peak_memory_mb() -> float | None:
    """Peak resident memory (VmHWM) of this process, in MB; None where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except ImportError:
        return None


def platform_info() -> dict:
    try:
        _, package = resolve_backend()
    except Exception:  # reported, never fatal: the rows will say why they failed
        package = "none"
    return {**platform_record(), "python": platform.python_version(), "system": platform.system(),
            "interpreter": package, "interpreter_version": backend_version(package)}


def _write_json(path: Path | None, payload: dict) -> None:
    if path is None:
        return
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


def run_worker(bundle: Path, model: str, threads: int, runs: int, warmup: int, data: Path | None,
               timeout: float) -> dict:
    """One isolated measurement; a crash, a timeout or bad output becomes a failed row."""
    cmd = [sys.executable, "-m", "device_runtime.bench_worker", "--bundle", str(bundle), "--model", model,
           "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup)]
    if data is not None:
        cmd += ["--data", str(data)]
    row = {"model": model, "threads": threads}
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**row, "status": "failed", "error": f"timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines() or [f"exit code {out.returncode}"]
        return {**row, "status": "failed", "error": f"exit code {out.returncode}: {lines[-1][:300]}"}
    try:
        return {**row, **json.loads(out.stdout.strip().splitlines()[-1])}
    except (json.JSONDecodeError, IndexError):
        return {**row, "status": "failed", "error": "worker printed no result"}


def format_rows(rows: list[dict]) -> str:
    head = (f"{'model':<30} {'thr':>3} {'MB':>7} {'init ms':>8} {'first':>7} {'p50 ms':>7} {'p90 ms':>7} "
            f"{'p99 ms':>7} {'e2e p50':>8} {'sent/s':>7} {'peak MB':>8}")
    lines = [head]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"{r['model']:<30} {r['threads']:>3}  FAILED: {r.get('error', '?')}")
            continue
        lat, e2e = r["latency_ms"], r["end_to_end_ms"]
        lines.append(f"{r['model']:<30} {r['threads']:>3} {r['file_bytes'] / 1e6:>7.2f} {r['init_ms']:>8.1f} "
                     f"{r['first_inference_ms']:>7.2f} {lat['p50']:>7.2f} {lat['p90']:>7.2f} {lat['p99']:>7.2f} "
                     f"{e2e['p50']:>8.2f} {r['throughput_per_s']:>7.1f} {r['peak_memory_mb'] or 0:>8.1f}")
    return "\n".join(lines)


def run_bench(bundle: Path, models: list[str], threads: list[int], runs: int, warmup: int,
              json_path: Path | None, data: Path | None = None, timeout: float = 600.0, echo=print) -> dict:
    """Measure every (model, threads) pair; the JSON file is rewritten after each row (Ctrl-C safe)."""
    payload = {"platform": platform_info(), "bundle": str(bundle), "runs": runs, "warmup": warmup,
               "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "complete": False, "results": []}
    _write_json(json_path, payload)
    total = len(models) * len(threads)
    try:
        for model in models:
            for count in threads:
                echo(f"[{len(payload['results']) + 1}/{total}] {model} threads={count} ...", flush=True)
                row = run_worker(bundle, model, count, runs, warmup, data, timeout)
                payload["results"].append(row)
                _write_json(json_path, payload)
        payload["complete"] = True
    except KeyboardInterrupt:
        echo("interrupted: the JSON holds the rows measured so far", flush=True)
        payload["interrupted"] = True
        raise
    finally:
        _write_json(json_path, payload)
    return payload
