"""`make bench`: every bundle model on this host, joined with its accuracy, as JSON + Markdown + plots.

Machines here are noisy, so each round measures every model once (alternating), rounds repeat,
and the report gives medians of p50s and of per-round ratios against teacher-float32 (model only and
end to end, tokenizer included)."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.plots import draw_all, pareto_front
from benchmarks.report import markdown_report
from device_runtime.bench import run_bench
from device_runtime.calibration import expected_calibration_error, reliability, softmax
from device_runtime.classifier import Classifier
from device_runtime.tables import read_table

ROOT = Path(__file__).resolve().parents[1]

BASELINE = "teacher-float32"


def long_bundle(bundle: Path, work: Path, seq_len: int, names: list[str]) -> Path:
    """Export the named models again at a longer seq_len (host side: needs the converter)."""
    from converter.jobs.lengths import export_at_length

    return export_at_length(bundle, work, seq_len, names)


def median_rows(rounds: list[list[dict]]) -> list[dict]:
    """Per model: the last round's full row, with latency p50/p90 and ratio as medians over rounds."""
    merged = {}
    for rows in rounds:
        ok = {r["model"]: r for r in rows if r.get("status") == "ok"}
        base = ok.get(BASELINE)
        for row in rows:
            entry = merged.setdefault(row["model"], {"row": row, "p50": [], "p90": [], "speedup": [], "e2e": [],
                                                     "e2e_speedup": []})
            if row.get("status") != "ok":
                entry["row"] = row
                continue
            entry["row"] = row
            entry["p50"].append(row["latency_ms"]["p50"])
            entry["p90"].append(row["latency_ms"]["p90"])
            entry["e2e"].append(row["end_to_end_ms"]["p50"])
            if base:
                entry["speedup"].append(base["latency_ms"]["p50"] / row["latency_ms"]["p50"])
                entry["e2e_speedup"].append(base["end_to_end_ms"]["p50"] / row["end_to_end_ms"]["p50"])
    out = []
    for _name, entry in merged.items():
        row = dict(entry["row"])
        if entry["p50"]:
            row.update(p50_ms=statistics.median(entry["p50"]), p90_ms=statistics.median(entry["p90"]),
                       e2e_p50_ms=statistics.median(entry["e2e"]), rounds=len(entry["p50"]),
                       speedup_vs_teacher_float32=statistics.median(entry["speedup"]) if entry["speedup"] else None,
                       e2e_speedup_vs_teacher_float32=(statistics.median(entry["e2e_speedup"])
                                                       if entry["e2e_speedup"] else None))
        out.append(row)
    return out


def join_manifest(rows: list[dict], manifest: dict) -> list[dict]:
    by_name = {m["name"]: m for m in manifest["models"]}
    for row in rows:
        entry = by_name.get(row["model"], {})
        metrics = entry.get("metrics", {})
        row.update(bytes=entry.get("bytes"), gzip_bytes=entry.get("gzip_bytes"), sparsity=entry.get("sparsity"),
                   accuracy=metrics.get("test", {}).get("accuracy"),
                   allagree_accuracy=metrics.get("test_allagree", {}).get("accuracy"),
                   macro_f1=metrics.get("test", {}).get("macro_f1"),
                   ece=metrics.get("calibration", {}).get("test_ece"),
                   ece_calibrated=metrics.get("calibration", {}).get("test_ece_calibrated"))
    return rows


def pack_bytes(bundle: Path, names: list[str]) -> dict[str, int]:
    """Bytes of what a device gets for each model: `device_runtime pack`'s folder (model file and its
    bucket files, id map, vocab, one-model manifest, model card), packed and verified for real."""
    import tempfile

    from device_runtime.errors import BundleInputError
    from device_runtime.pack import pack

    sizes = {}
    with tempfile.TemporaryDirectory(prefix="bench-pack.") as tmp:
        for name in names:
            try:
                folder = pack(bundle, name, Path(tmp) / name)
            except BundleInputError as err:  # one model that does not pack costs its column, not the report
                print(f"{name}: not packed ({err})", flush=True)
                sizes[name] = None
                continue
            sizes[name] = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    return sizes


def mark_fronts(rows: list[dict]) -> list[dict]:
    """front_bytes / front_e2e on each row: on the Pareto front of test accuracy against packed
    bytes / end-to-end p50 (no other model both smaller or faster and more accurate)."""
    scored = [r for r in rows if r.get("status") == "ok" and r.get("accuracy") is not None]
    for key, x in (("front_bytes", "pack_bytes"), ("front_e2e", "e2e_p50_ms")):
        front = set(pareto_front([(r[x], r["accuracy"], r["model"]) for r in scored if r.get(x) is not None]))
        for r in rows:
            r[key] = r["model"] in front
    return rows


def calibration_of_default(bundle: Path, data: Path) -> dict:
    """The default model's reliability bins on `data`, before and after its temperature."""
    classifier = Classifier.from_bundle(bundle)
    texts, labels, _ = read_table(data, classifier.labels)
    calibrated = np.array([list(p.probabilities.values()) for p in classifier.predict(texts)])
    # log p = z / T - const, so softmax(T * log p) = softmax(z): the raw probabilities, without a second run
    raw = softmax(classifier.temperature * np.log(np.maximum(calibrated, 1e-30)))
    return {"model": classifier.name, "temperature": classifier.temperature, "n": len(labels),
            "raw": reliability(raw, labels), "calibrated": reliability(calibrated, labels),
            "ece_raw": expected_calibration_error(raw, labels), "ece_calibrated": expected_calibration_error(calibrated, labels)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="dist")
    parser.add_argument("--work-dir", default="work")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--long-seq-len", type=int, default=128)
    parser.add_argument("--long-models", default="teacher-float32,student-int8")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fpb" / "test.tsv"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    started = time.monotonic()
    bundle = Path(args.bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    names = [m["name"] for m in manifest["models"]]
    data = Path(args.data) if Path(args.data).is_file() else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{platform.machine()}-{time.strftime('%Y-%m-%d')}"
    raw = {"rounds": [], "threads": None, "long": None}

    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds}: {len(names)} models, 1 thread", flush=True)
        raw["rounds"].append(run_bench(bundle, names, [1], args.runs, args.warmup, Path(f"{stem}.partial.json"), data))
    rows = join_manifest(median_rows([r["results"] for r in raw["rounds"]]), manifest)
    sizes = pack_bytes(bundle, names)
    for row in rows:
        row["pack_bytes"] = sizes.get(row["model"])
    rows = mark_fronts(rows)

    thread_counts = [int(t) for t in args.threads.split(",")]
    thread_models = [n for n in (BASELINE, "student-int8", "student-dynamic") if n in names]
    print(f"threads {thread_counts}: {', '.join(thread_models)}", flush=True)
    raw["threads"] = run_bench(bundle, thread_models, thread_counts, args.runs, args.warmup, None, data)

    long_names = [n for n in args.long_models.split(",") if n in names]
    if long_names and args.long_seq_len:
        print(f"seq {args.long_seq_len}: exporting and measuring {', '.join(long_names)}", flush=True)
        long_dir = long_bundle(bundle, Path(args.work_dir), args.long_seq_len, long_names)
        raw["long"] = run_bench(long_dir, long_names, [1], args.runs, args.warmup, None, data)

    report = {"platform": raw["rounds"][0]["platform"], "seq_len": manifest["seq_len"], "runs": args.runs,
              "calibration": calibration_of_default(bundle, data) if data else None,
              "warmup": args.warmup, "rounds": args.rounds, "rows": rows, "threads": raw["threads"]["results"],
              "long": raw["long"], "elapsed_s": round(time.monotonic() - started, 1)}
    Path(f"{stem}.json").write_text(json.dumps(report, indent=2))
    Path(f"{stem}.partial.json").unlink(missing_ok=True)
    plots = draw_all(report, stem)
    Path(f"{stem}.md").write_text(markdown_report(report, [p.name for p in plots]))
    print(Path(f"{stem}.md").read_text())
    print(f"wrote {stem}.json, {stem}.md and {len(plots)} plots in {report['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
