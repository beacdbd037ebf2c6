"""`make results`: write docs/results.md from benchmarks/results/*.json only, so it cannot drift.

Every JSON becomes one section (its tables, its platform block, the date in its file name);
Markdown results without a JSON are linked, never copied. Same inputs, same bytes out."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "docs" / "results.md"
COMMAND = "python -m benchmarks.results_doc"

# File-name prefix -> (section title, command that writes such a file). Longest prefix first.
KINDS = (
    ("structured-sweep", "Structured-pruning sweep", "python -m experiments.structured_sweep"),
    ("slim-sweep", "Slim-model sweep", "python -m experiments.slim_sweep"),
    ("qat-sweep", "QAT recipe sweep", "python -m experiments.qat_sweep"),
    ("student-sweep", "Student training sweep", "python -m experiments.student_sweep"),
    ("teacher-seeds", "Teacher seed sweep", "python -m experiments.teacher_seeds"),
    ("int4w-choice", "int4w: layer-group bits chosen on dev", "python -m experiments.int4w_table"),
)
BENCH = ("Benchmark", "make bench")

# Column headers for the keys the result files use; any other key is shown under its own name.
HEADERS = {
    "model": "model", "variant": "variant", "keep_heads": "heads kept", "keep_ffn": "FFN kept", "mb": "MB",
    "dev_accuracy_float": "dev acc (float)", "test_accuracy": "test acc", "allagree_accuracy": "AllAgree acc",
    "accuracy_change_points": "Δ acc (points)", "p50_ms": "p50 ms", "speedup": "speed-up", "lr": "lr",
    "epochs": "epochs", "target": "target", "alpha": "alpha", "keras_dev": "dev (Keras)", "dev": "dev",
    "test": "test", "allagree": "AllAgree", "rank": "rank", "min_count": "min count", "weights": "weights",
    "unk_prob": "[UNK] copy", "unk_alpha": "rare alpha", "cut": "cut", "heads_ffn": "heads / FFN",
    "kept_ids": "rows kept", "test_tokens_to_unk": "test tokens to [UNK]",
    "dev_before_recovery": "dev before recovery", "model_bytes": "model bytes", "bytes": "bytes",
}
# Cell formats by key (the leaf of a nested key); any other float gets 4 decimals.
FORMATS = {"keep_heads": "%", "keep_ffn": "%", "test_tokens_to_unk": "%", "mb": ".2f", "p50_ms": ".2f",
           "speedup": "x", "accuracy_change_points": "+.2f", "alpha": "g", "unk_prob": "g", "unk_alpha": "g",
           "lr": "g", "elapsed_s": ".1f"}
# CPU instructions that decide int8 speed (x86 VNNI / AMX, Arm dot product / i8mm), as /proc/cpuinfo spells them.
INT8_FLAGS = ("avx2", "avx512_vnni", "avx512vnni", "avx_vnni", "amx_int8", "asimddp", "dotprod", "i8mm")
FEATURE_KEYS = ("int8_features", "cpu_features", "cpu_flags", "flags")
# The bench table: (header, key in the row, format).
BENCH_COLUMNS = (
    ("variant", "model", "s"), ("quantization", "quantization", "s"), ("MB", "bytes", "mb"),
    ("gzip MB", "gzip_bytes", "mb"), ("sparsity", "sparsity", ".3f"), ("accuracy", "accuracy", ".4f"),
    ("macro-F1", "macro_f1", ".4f"), ("AllAgree acc", "allagree_accuracy", ".4f"), ("ECE raw", "ece", ".4f"),
    ("ECE calibrated", "ece_calibrated", ".4f"), ("p50 ms", "p50_ms", ".2f"),
    ("p90 ms", "p90_ms", ".2f"), ("end-to-end p50 ms", "e2e_p50_ms", ".2f"), ("peak MB", "peak_memory_mb", ".0f"),
    ("speed-up vs teacher-float32", "speedup_vs_teacher_float32", "x"),
    ("end-to-end speed-up", "e2e_speedup_vs_teacher_float32", "x"),
)


def fmt(value, kind: str = "") -> str:
    """One table cell: fixed precision, so equal inputs give equal text."""
    if value is None:
        return "-"
    if kind == "mb":
        return f"{value / 1e6:.2f}"
    if kind == "x":
        return f"{value:.2f}x"
    if kind == "%":
        return f"{value * 100:.2f}%" if value < 0.1 else f"{value * 100:.0f}%"
    if kind and kind != "s":
        return format(value, kind)
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e-3 else f"{value:.4f}"
    return json.dumps(value, sort_keys=True)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows] + [""]


def flatten(row: dict, prefix: str = "") -> dict:
    """Nested dicts become 'int8 dev'-style keys, in the order the JSON holds them."""
    flat = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key} "))
        else:
            flat[prefix + key] = value
    return flat


def generic_table(rows: list[dict]) -> list[str]:
    """Every key any row holds, as a column; rows in the JSON's order."""
    flat = [flatten(r) for r in rows]
    keys = list(dict.fromkeys(k for r in flat for k in r if k != "sha256"))

    def header(key: str) -> str:
        *outer, leaf = key.split(" ")
        return " ".join([*outer, HEADERS.get(leaf, leaf)])

    cells = [[fmt(r.get(k), FORMATS.get(k.split(" ")[-1], "")) for k in keys] for r in flat]
    return table([header(k) for k in keys], cells)


def platform_block(platform: dict | None, machine: str) -> list[str]:
    if not platform:
        return [f"Platform: the JSON records none (machine `{machine}` from the file name); it does not record "
                "the CPU model or the CPU's int8 features.", ""]
    parts = [f"machine `{platform.get('machine', '?')}`", f"CPU {platform.get('cpu', 'not recorded')}"]
    parts += [f"{platform['cores']} cores"] if "cores" in platform else []
    parts += [f"{platform['system']}"] if "system" in platform else []
    parts += [f"Python {platform['python']}"] if "python" in platform else []
    if "interpreter" in platform:
        parts.append(f"{platform['interpreter']} {platform.get('interpreter_version', '')}".strip())
    key = next((k for k in FEATURE_KEYS if k in platform), None)
    if key is None:
        features = "the JSON does not record the CPU's int8 features (AVX2, AVX-512 VNNI, Arm dot product)"
    else:
        raw = platform[key]
        flags = sorted(set(raw.split() if isinstance(raw, str) else raw))
        int8 = [f for f in flags if f in INT8_FLAGS]
        features = f"int8 features: {', '.join(int8)}" if int8 else f"int8 features: none of {', '.join(INT8_FLAGS)}"
    return ["Platform: " + ", ".join(parts) + "; " + features + ".", ""]


def bench_section(data: dict) -> list[str]:
    settings = {k: data.get(k) for k in ("seq_len", "runs", "warmup", "rounds", "elapsed_s") if k in data}
    shown = ", ".join(f"{k} {fmt(v, FORMATS.get(k, ''))}" for k, v in settings.items())
    lines = [f"Settings: {shown}. p50 / p90 are model-only "
             "latency at 1 thread, medians over the rounds; accuracy is the bundle manifest's (test split).", ""]
    ok = sorted((r for r in data["rows"] if r.get("status") == "ok"), key=lambda r: (r["p50_ms"], r["model"]))
    failed = sorted((r for r in data["rows"] if r.get("status") != "ok"), key=lambda r: r["model"])
    cells = [[fmt(r.get(key), kind) for _, key, kind in BENCH_COLUMNS] for r in ok]
    cells += [[r["model"], f"failed: {r.get('error', '?')}"] + [""] * (len(BENCH_COLUMNS) - 2) for r in failed]
    lines += table([h for h, _, _ in BENCH_COLUMNS], cells)
    extra = [("Latency vs threads", data.get("threads")), ("Longer sequences", (data.get("long") or {}).get("results"))]
    for title, results in extra:
        if not results:
            continue
        rows = [[r["model"], fmt(r.get("seq_len")), fmt(r.get("threads"))]
                + ([fmt(r["latency_ms"]["p50"], ".2f"), fmt(r["latency_ms"]["p90"], ".2f"),
                    fmt(r["end_to_end_ms"]["p50"], ".2f"), fmt(r.get("throughput_per_s"), ".1f"),
                    fmt(r.get("peak_memory_mb"), ".0f")] if r.get("status") == "ok" else
                   [f"failed: {r.get('error', '?')}", "", "", "", ""]) for r in results]
        lines += [f"#### {title}", ""]
        lines += table(["model", "seq", "threads", "p50 ms", "p90 ms", "end-to-end p50 ms", "sent/s", "peak MB"], rows)
    return lines


def sweep_section(data) -> list[str]:
    rows = data if isinstance(data, list) else data.get("rows", [])
    settings = {k: v for k, v in data.items() if not isinstance(v, (list, dict))} if isinstance(data, dict) else {}
    lines = ["Settings: " + ", ".join(f"{k} {fmt(v)}" for k, v in settings.items()) + ".", ""] if settings else []
    return lines + generic_table(rows)


def kind_of(stem: str, data) -> tuple[str, str]:
    found = next(((title, cmd) for prefix, title, cmd in KINDS if stem.startswith(prefix)), None)
    if found is None and isinstance(data, dict) and "platform" in data:
        return BENCH
    return found or (stem, "not recorded")


def name_parts(stem: str) -> tuple[str, str, str]:
    """(variant tag, machine, date) from a name such as 'slim-sweep-size-x86_64-2026-11-27'."""
    found = re.search(r"(?:^|-)([a-z0-9_]+)-(\d{4}-\d{2}-\d{2})", stem)
    if not found:
        return "", "unknown", "undated"
    head = stem[: found.start(1)].rstrip("-")
    prefix = next((p for p, _, _ in KINDS if head.startswith(p)), "")
    return head[len(prefix):].strip("-"), found.group(1), found.group(2)


def heading(title: str, stem: str) -> str:
    tag, machine, date = name_parts(stem)
    return f"{title}{f' ({tag})' if tag else ''}, {machine}, {date}"


def order(path: Path) -> tuple:
    """Bench runs first, newest first; then the sweeps by file name."""
    if re.fullmatch(r"[a-z0-9_]+-\d{4}-\d{2}-\d{2}", path.stem):
        return (0, [-ord(c) for c in name_parts(path.stem)[2]], path.name)
    return (1, [], path.name)


def section(path: Path, link: str, siblings: set[str]) -> list[str]:
    data = json.loads(path.read_text())
    title, command = kind_of(path.stem, data)
    machine = name_parts(path.stem)[1]
    lines = [f"## {heading(title, path.stem)}", ""]
    files = [f"[{path.name}]({link}/{path.name})"]
    files += [f"[{n}]({link}/{n})" for n in sorted(siblings) if n != path.name and Path(n).stem.startswith(path.stem)]
    lines += [f"Written by `{command}`. Files: {', '.join(files)}.", ""]
    is_bench = (title, command) == BENCH
    lines += platform_block(data.get("platform") if isinstance(data, dict) else None, machine)
    return lines + (bench_section(data) if is_bench else sweep_section(data))


def render(results: Path, out: Path) -> str:
    """The whole document for the files in `results`, with links relative to `out`'s folder."""
    link = Path(os.path.relpath(results, out.parent)).as_posix()
    names = {p.name for p in results.iterdir() if p.is_file()}
    jsons = sorted(results.glob("*.json"), key=order)
    lines = ["# Measured results", "",
             f"Generated by `{COMMAND}` (`make results`) from `benchmarks/results/*.json`; do not edit by hand. "
             "`tests/test_results_doc.py` fails when this file differs from what the command writes. "
             "Why the defaults are what they are: [design.md](design.md).", "", "Contents:", ""]
    lines += [f"- {heading(kind_of(p.stem, json.loads(p.read_text()))[0], p.stem)}" for p in jsons]
    md_only = sorted(n for n in names if n.endswith(".md") and n[:-3] + ".json" not in names)
    if md_only:
        lines += ["- results recorded only as Markdown"]
    lines += [""]
    for path in jsons:
        lines += section(path, link, names)
    if md_only:
        lines += ["## Results recorded only as Markdown", "",
                  "These runs left no JSON, so their figures are not repeated here:", ""]
        for name in md_only:
            title, command = kind_of(name[:-3], None)
            lines.append(f"- [{name}]({link}/{name}): {heading(title, name[:-3])} (`{command}`)")
        lines += [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of result JSON files")
    parser.add_argument("--out", type=Path, default=OUT, help="the Markdown file to write")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if --out is stale")
    args = parser.parse_args(argv)
    text = render(args.results, args.out)
    if args.check:
        stale = not args.out.exists() or args.out.read_text() != text
        print(f"{args.out}: {'stale, run make results' if stale else 'up to date'}")
        return int(stale)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} from {len(list(args.results.glob('*.json')))} JSON files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
