"""docs/results.md: values land in their tables, and the committed file is what the generator writes."""

import json

from benchmarks import results_doc

LATENCY = {"p50": 1.5, "p90": 1.75}
BENCH_ROW = {
    "model": "student-int8", "threads": 1, "status": "ok", "quantization": "int8", "seq_len": 64,
    "bytes": 17_638_712, "gzip_bytes": 11_880_000, "sparsity": 0.014, "accuracy": 0.8592132505175983,
    "macro_f1": 0.8327, "allagree_accuracy": 0.975103734439834, "ece": 0.0412, "ece_calibrated": 0.0235,
    "p50_ms": 2.2812, "p90_ms": 2.31,
    "e2e_p50_ms": 2.44, "peak_memory_mb": 75.2, "speedup_vs_teacher_float32": 6.657,
    "latency_ms": LATENCY, "end_to_end_ms": LATENCY, "throughput_per_s": 401.04,
}
PLATFORM = {"machine": "aarch64", "cpu": "Cortex-A76", "cores": 4, "python": "3.11.2", "system": "Linux",
            "interpreter": "ai-edge-litert", "interpreter_version": "2.3.0"}


def write(folder, name, data):
    (folder / name).write_text(json.dumps(data))


def bench(platform):
    return {"platform": platform, "seq_len": 64, "runs": 100, "warmup": 10, "rounds": 3,
            "rows": [BENCH_ROW, {"model": "teacher-int8", "threads": 1, "status": "failed", "error": "crash"}],
            "threads": [dict(BENCH_ROW, threads=2)]}


def test_bench_values_platform_and_date_land_in_the_section(tmp_path):
    results, out = tmp_path / "results", tmp_path / "docs" / "results.md"
    results.mkdir()
    write(results, "aarch64-2027-01-05.json", bench(dict(PLATFORM, cpu_flags="fp asimd asimddp i8mm crc32")))
    text = results_doc.render(results, out)
    assert "## Benchmark, aarch64, 2027-01-05" in text
    row = ("| student-int8 | int8 | 17.64 | 11.88 | 0.014 | 0.8592 | 0.8327 | 0.9751 | 0.0412 | 0.0235 | 2.28 | 2.31 | 2.44 "
           "| 75 | 6.66x |")
    assert row in text
    assert "| teacher-int8 | failed: crash |" in text
    assert "| student-int8 | 64 | 2 | 1.50 | 1.75 | 1.50 | 401.0 | 75 |" in text  # the threads table
    assert "CPU Cortex-A76, 4 cores" in text and "int8 features: asimddp, i8mm." in text
    assert "[aarch64-2027-01-05.json](../results/aarch64-2027-01-05.json)" in text


def test_missing_int8_features_and_platform_are_said_not_guessed(tmp_path):
    write(tmp_path, "x86_64-2027-01-05.json", bench(PLATFORM))
    write(tmp_path, "qat-sweep-x86_64-2027-01-06.json", [{"variant": "lr 1e-05", "lr": 1e-05, "dev": 0.8385, "test": 0.8592}])
    text = results_doc.render(tmp_path, tmp_path / "results.md")
    assert "the JSON does not record the CPU's int8 features" in text
    qat = text.split("## QAT recipe sweep, x86_64, 2027-01-06")[1]
    assert "the JSON records none (machine `x86_64` from the file name)" in qat
    assert "| variant | lr | dev | test |" in qat and "| lr 1e-05 | 1e-05 | 0.8385 | 0.8592 |" in qat


def test_sweep_nested_keys_become_columns_and_markdown_only_results_are_links(tmp_path):
    row = {"rank": 160, "unk_prob": 0.05, "test_tokens_to_unk": 0.02768874, "int8": {"test": 0.8344, "bytes": 4492576}}
    write(tmp_path, "slim-sweep-size-x86_64-2027-01-06.json", [row])
    (tmp_path / "teacher-seeds-x86_64-2027-01-04.md").write_text("| seed | dev |\n| 42 | 0.8551 |\n")
    text = results_doc.render(tmp_path, tmp_path / "results.md")
    assert "## Slim-model sweep (size), x86_64, 2027-01-06" in text
    assert "| rank | [UNK] copy | test tokens to [UNK] | int8 test | int8 bytes |" in text
    assert "| 160 | 0.05 | 2.77% | 0.8344 | 4,492,576 |" in text
    assert "- [teacher-seeds-x86_64-2027-01-04.md](./teacher-seeds-x86_64-2027-01-04.md): Teacher seed sweep" in text
    assert "0.8551" not in text  # linked, never copied


def test_output_is_deterministic_and_check_flags_a_stale_file(tmp_path):
    results, out = tmp_path / "results", tmp_path / "docs" / "results.md"
    results.mkdir()
    write(results, "x86_64-2027-01-05.json", bench(PLATFORM))
    args = ["--results", str(results), "--out", str(out)]
    assert results_doc.main(args) == 0
    assert out.read_text() == results_doc.render(results, out)
    assert results_doc.main([*args, "--check"]) == 0
    out.write_text(out.read_text().replace("0.8592", "0.8600"))
    assert results_doc.main([*args, "--check"]) == 1


def test_committed_results_md_is_what_the_generator_writes():
    committed = results_doc.OUT.read_text()
    assert committed == results_doc.render(results_doc.RESULTS, results_doc.OUT), "stale: run make results"
