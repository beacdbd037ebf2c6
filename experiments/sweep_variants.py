"""What the dev sweeps share: `key=value,...` variants over a dict of defaults, the command line,
a file's accuracy on dev and test, and the results files (benchmarks/results/<name>-<machine>-<date>.{json,md}).
Imported after the scripts put the project root on sys.path."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from converter.export.tflite import tflite_logits
from converter.jobs.context import split_metrics

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def parse_variant(text: str, defaults: dict, choices: dict[str, tuple] | None = None) -> dict:
    """"rank=288,min_count=2" -> `defaults` with those keys replaced (types kept); keys in
    `choices` must take one of the listed values (checked before any model loads)."""
    variant = dict(defaults)
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        if key not in defaults:
            raise SystemExit(f"--variants: unknown key {key!r} in {text!r}; expected one of {sorted(defaults)}")
        variant[key] = type(defaults[key])(value)
    for key, allowed in (choices or {}).items():
        if variant[key] not in allowed:
            raise SystemExit(f"--variants: {key} must be one of {allowed}, not {variant[key]!r}")
    return variant


def file_metrics(path, ctx, on_test: dict | None = None) -> dict:
    """Accuracy of one .tflite file on dev and test (and test AllAgree); `on_test`: its test metrics
    when export_variants has already run it on test (split_metrics' form)."""
    dev, test = ctx.splits["dev"], ctx.splits["test"]
    on_test = on_test or split_metrics(tflite_logits(path, test.inputs), test)
    return {"dev": split_metrics(tflite_logits(path, dev.inputs), dev)["test"]["accuracy"],
            "test": on_test["test"]["accuracy"], "allagree": on_test["test_allagree"]["accuracy"]}


def sweep_arguments(variants: str) -> argparse.Namespace:
    """--work-dir (make convert's), --variants (';'-separated, default `variants`), --out."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--work-dir", default="work")
    parser.add_argument("--variants", default=variants, help="';'-separated variants, each key=value,...")
    parser.add_argument("--out", default="", help="results path, no suffix (default: benchmarks/results/<name>-<machine>-<date>)")
    return parser.parse_args()


def write_results(name: str, out: str, rows: list[dict], text: str) -> None:
    """Print the table and write it (.md) with its rows (.json)."""
    print(text)
    path = Path(out) if out else RESULTS / f"{name}-{platform.machine()}-{time.strftime('%Y-%m-%d')}"
    path.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    path.with_suffix(".md").write_text(text + "\n")
    print(f"wrote {path}.md", flush=True)
