"""The Markdown report of a `make bench` run."""

from __future__ import annotations


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def variant_table(rows: list[dict]) -> list[str]:
    lines = ["| variant | MB | packed MB | gzip MB | sparsity | accuracy | AllAgree acc | ECE raw / calibrated | p50 ms "
             "| p90 ms | end-to-end p50 ms | peak MB | speed-up vs teacher-float32 (model / end to end) | Pareto front |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in sorted(rows, key=lambda r: r.get("p50_ms") or 1e9):
        if r.get("status") != "ok":
            lines.append(f"| {r['model']} | | | | | | | | failed: {r.get('error', '?')} | | | | | |")
            continue
        front = " + ".join(label for key, label in (("front_bytes", "size"), ("front_e2e", "speed")) if r.get(key))
        lines.append(
            f"| {r['model']} | {_num(r['bytes'] and r['bytes'] / 1e6, '.2f')} | "
            f"{_num(r.get('pack_bytes') and r['pack_bytes'] / 1e6, '.3f')} | "
            f"{_num(r['gzip_bytes'] and r['gzip_bytes'] / 1e6, '.2f')} | {_num(r['sparsity'], '.3f')} | "
            f"{_num(r['accuracy'], '.4f')} | {_num(r['allagree_accuracy'], '.4f')} | "
            f"{_num(r.get('ece'), '.4f')} / {_num(r.get('ece_calibrated'), '.4f')} | {r['p50_ms']:.2f} | "
            f"{r['p90_ms']:.2f} | {r['e2e_p50_ms']:.2f} | {_num(r['peak_memory_mb'], '.0f')} | "
            f"{_num(r['speedup_vs_teacher_float32'], '.2f')}x / {_num(r.get('e2e_speedup_vs_teacher_float32'), '.2f')}x | "
            f"{front or '-'} |")
    return lines + ["", "Packed MB: what `python -m device_runtime pack` writes for the model (its files, the "
                        "vocab, any id map, a one-model manifest and model card). Pareto front: no other model is "
                        "smaller packed (size) or faster end to end (speed) at the same or a higher test accuracy. "
                        "int4w sparsity: weights that 4-bit rounding sets to zero."]


def simple_table(results: list[dict], title: str) -> list[str]:
    lines = [f"### {title}", "", "| model | seq | threads | p50 ms | p90 ms | end-to-end p50 ms | sent/s | peak MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r.get("status") != "ok":
            lines.append(f"| {r['model']} | | {r['threads']} | failed: {r.get('error', '?')} | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['seq_len']} | {r['threads']} | {r['latency_ms']['p50']:.2f} | "
                     f"{r['latency_ms']['p90']:.2f} | {r['end_to_end_ms']['p50']:.2f} | {r['throughput_per_s']:.1f} | "
                     f"{_num(r['peak_memory_mb'], '.0f')} |")
    return lines + [""]


def markdown_report(report: dict, plots: list[str]) -> str:
    p = report["platform"]
    features = ", ".join(p.get("int8_features") or []) or "none listed"
    lines = [f"# Benchmark: {p['machine']}, {p['cpu']}", "",
             f"The CPU's int8-relevant features: {features}. int8 speed and int8 labels depend on them.", "",
             f"{p['cores']} cores, Python {p['python']}, {p['interpreter']} {p['interpreter_version']}. "
             f"seq_len {report['seq_len']}, 1 thread, {report['runs']} timed runs after {report['warmup']} warm-up, "
             f"median over {report['rounds']} alternating rounds; speed-up = median of per-round ratios "
             f"against teacher-float32. Accuracy from the bundle manifest (canonical test split).", ""]
    lines += variant_table(report["rows"]) + [""]
    lines += simple_table(report["threads"], "Latency vs threads")
    if report.get("long"):
        lines += simple_table(report["long"]["results"], "Longer sequences")
    calibration = report.get("calibration")
    if calibration:
        lines += [f"Default model {calibration['model']}: test ECE {calibration['ece_raw']:.4f} raw, "
                  f"{calibration['ece_calibrated']:.4f} with T = {calibration['temperature']:g} (fitted on dev).", ""]
    lines += [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"
