"""The int4w choice of the last `make convert`, from work/report.json: every layer-group combination
of each source model on dev, the one chosen, QAT of its rounding, and the shipped file's test figures
-> benchmarks/results/int4w-choice-<machine>-<date>.json (for `make results`).

    python -m experiments.int4w_table [--report work/report.json] [--manifest dist/manifest.json]"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments.sweep_variants import results_stem


def rows_of(lowbit: dict, entries: dict) -> list[dict]:
    """One row per (source, combination); the chosen row also carries QAT and the shipped file's
    test figures (from its manifest entry)."""
    rows = []
    for source, report in lowbit.items():
        qat = report.get("qat") or {}
        for combination in report["combinations"]:
            chosen = combination["tag"] == report["chosen"]
            row = {"source": source, "bits": combination["tag"], "mb": combination["bytes"] / 1e6,
                   "dev_accuracy": combination["dev_accuracy"], "chosen": chosen}
            if chosen:
                metrics = entries[f"{source}-int4w"]["metrics"]
                row.update(dev_after_qat=qat.get("dev_accuracy"), qat_shipped=qat.get("shipped"),
                           test_accuracy=metrics["test"]["accuracy"],
                           allagree_accuracy=metrics["test_allagree"]["accuracy"])
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", default="work/report.json")
    parser.add_argument("--manifest", default="dist/manifest.json")
    args = parser.parse_args()
    report = json.loads(Path(args.report).read_text())
    entries = {m["name"]: m for m in json.loads(Path(args.manifest).read_text())["models"]}
    out = results_stem("int4w-choice").with_suffix(".json")
    out.write_text(json.dumps({"rule": "smallest file within one standard error of the best dev accuracy",
                               "rows": rows_of(report["slim"]["lowbit"], entries)}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
