"""The benchmark: statistics on synthetic timings, the JSON it writes, and crash isolation."""

import json
import shutil

import numpy as np
import pytest

from benchmarks.plots import pareto_front
from benchmarks.run_bench import mark_fronts, median_rows, pack_bytes
from device_runtime import cli
from device_runtime.bench import run_bench, summarize, throughput


def test_summarize_percentiles_on_known_timings():
    stats = summarize([i * 1_000_000 for i in range(1, 101)])  # 1..100 ms
    assert stats["mean"] == pytest.approx(50.5) and stats["p50"] == pytest.approx(50.5)
    assert stats["p90"] == pytest.approx(90.1) and stats["p99"] == pytest.approx(99.01)
    assert stats["std"] == pytest.approx(np.std(np.arange(1, 101))) and stats["count"] == 100
    with pytest.raises(ValueError):
        summarize([])


def test_throughput_is_runs_per_second():
    assert throughput([2_000_000] * 500) == pytest.approx(500.0)  # 500 runs of 2 ms = 1 s


def test_pareto_front():
    points = [(1.0, 80.0, "fast"), (2.0, 85.0, "mid"), (3.0, 84.0, "dominated"), (4.0, 86.0, "best")]
    assert pareto_front(points) == ["fast", "mid", "best"]


def test_fronts_of_size_and_speed():
    def row(model, pack, e2e, accuracy):
        return {"model": model, "status": "ok", "pack_bytes": pack, "e2e_p50_ms": e2e, "accuracy": accuracy}
    rows = mark_fronts([row("big-slow-best", 90e6, 18.0, 0.87), row("small-fast", 4e6, 1.0, 0.84),
                        row("small-slow", 3e6, 9.0, 0.83), row("big-fast", 20e6, 0.9, 0.83),
                        {"model": "broken", "status": "failed"}])
    fronts = {r["model"]: (r["front_bytes"], r["front_e2e"]) for r in rows}
    assert fronts == {"big-slow-best": (True, True), "small-fast": (True, True), "small-slow": (True, False),
                      "big-fast": (False, True), "broken": (False, False)}


def test_pack_bytes_is_what_pack_writes(bundle_dir, tmp_path):
    from device_runtime.pack import pack

    sizes = pack_bytes(bundle_dir, ["model-int8"])
    folder = pack(bundle_dir, "model-int8", tmp_path / "p")
    files = sorted(f.name for f in folder.iterdir())
    assert "manifest.json" in files and "vocab.txt" in files and "model-int8.tflite" in files
    assert sizes == {"model-int8": sum(f.stat().st_size for f in folder.iterdir())}


def test_median_rows_and_ratios():
    def row(model, p50):
        return {"model": model, "status": "ok", "latency_ms": {"p50": p50, "p90": p50 * 2},
                "end_to_end_ms": {"p50": p50 + 1}}
    rounds = [[row("teacher-float32", 10.0), row("student-int8", 2.0)],
              [row("teacher-float32", 12.0), row("student-int8", 2.0)],
              [row("teacher-float32", 30.0), row("student-int8", 10.0)]]
    merged = {r["model"]: r for r in median_rows(rounds)}
    assert merged["student-int8"]["p50_ms"] == 2.0 and merged["student-int8"]["speedup_vs_teacher_float32"] == 5.0
    # end to end: per-round ratios 11/3, 13/3, 31/11 -> median 11/3 (the tokenizer's 1 ms included)
    assert merged["student-int8"]["e2e_speedup_vs_teacher_float32"] == 11 / 3
    assert merged["teacher-float32"]["rounds"] == 3


def test_bench_json_schema_and_crash_isolation(bundle_dir, tmp_path):
    bundle = shutil.copytree(bundle_dir, tmp_path / "b")
    (bundle / "model-float32.tflite").write_bytes(b"not a model at all")
    out = tmp_path / "bench.json"
    payload = run_bench(bundle, ["model-float32", "model-int8"], [1, 2], runs=5, warmup=1, json_path=out,
                        echo=lambda *a, **k: None)
    on_disk = json.loads(out.read_text())
    assert on_disk == payload and on_disk["complete"] is True
    assert {"machine", "cpu", "cores", "python", "interpreter", "interpreter_version"} <= set(on_disk["platform"])
    failed, ok = payload["results"][:2], payload["results"][2:]
    assert all(r["status"] == "failed" and "model-float32.tflite" in r["error"] for r in failed)
    assert [r["threads"] for r in ok] == [1, 2]
    for r in ok:
        assert r["status"] == "ok" and r["latency_ms"]["count"] == 5 and r["seq_len"] == 7
        assert {"init_ms", "first_inference_ms", "end_to_end_ms", "tokenize_ms", "throughput_per_s",
                "peak_memory_mb", "file_bytes", "sha256"} <= set(r)
        assert r["latency_ms"]["p50"] <= r["latency_ms"]["p99"] and r["peak_memory_mb"] > 0


def test_interrupt_leaves_valid_partial_json(bundle_dir, tmp_path, monkeypatch):
    from device_runtime import bench

    calls = []

    def interrupted(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return {"model": args[1], "threads": args[2], "status": "ok"}

    monkeypatch.setattr(bench, "run_worker", interrupted)
    out = tmp_path / "bench.json"
    with pytest.raises(KeyboardInterrupt):
        run_bench(bundle_dir, ["model-float32", "model-int8"], [1], 5, 1, out, echo=lambda *a, **k: None)
    partial = json.loads(out.read_text())
    assert partial["complete"] is False and partial["interrupted"] is True and len(partial["results"]) == 1


@pytest.mark.parametrize("flag", [["--runs", "0"], ["--runs", "-3"], ["--warmup", "-1"], ["--threads", "0"]])
def test_bad_counts_are_usage_errors(bundle_dir, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--bundle", str(bundle_dir), *flag])
    assert exit_info.value.code == 2 and "must be at least" in capsys.readouterr().err
