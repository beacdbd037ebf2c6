"""What the dev sweeps share: `key=value,...` variants over a dict of defaults, the command line,
a file's accuracy on dev and test, and the results files (benchmarks/results/<name>-<machine>-<date>.{json,md}).
The sweeps run from the repo root as modules: python -m experiments.NAME."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from converter.export.tflite import tflite_logits
from converter.jobs.context import split_metrics

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _typed(key: str, value: str, kind, flag: str):
    if kind is bool:  # bool("False") is True: spell the two values out
        if value.lower() not in ("true", "false", "1", "0"):
            raise SystemExit(f"{flag}: {key} takes true or false, not {value!r}")
        return value.lower() in ("true", "1")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise SystemExit(f"{flag}: {key}={value!r} is not a valid {getattr(kind, '__name__', kind)}") from None


def parse_variant(text: str, defaults: dict, choices: dict[str, tuple] | None = None,
                  types: dict | None = None, flag: str = "--variants") -> dict:
    """"rank=288,min_count=2" -> `defaults` with those keys replaced, each value converted to the
    type of its default (or `types[key]`, for a default of None). Unknown keys, values that do not
    convert, and keys in `choices` off their listed values raise SystemExit, before any model loads."""
    variant = dict(defaults)
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, is_pair, value = part.partition("=")
        if not is_pair:
            raise SystemExit(f"{flag}: {part!r} in {text!r} is not key=value")
        if key not in defaults:
            raise SystemExit(f"{flag}: unknown key {key!r} in {text!r}; expected one of {sorted(defaults)}")
        kind = (types or {}).get(key, type(defaults[key]))
        if kind is type(None):
            raise SystemExit(f"{flag}: {key} defaults to None and has no type to convert {value!r} to")
        variant[key] = _typed(key, value, kind, flag)
    for key, allowed in (choices or {}).items():
        if variant[key] not in allowed:
            raise SystemExit(f"{flag}: {key} must be one of {allowed}, not {variant[key]!r}")
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


def results_stem(name: str) -> Path:
    """benchmarks/results/<name>-<machine>-<date>, no suffix: the name `make results` reads."""
    return RESULTS / f"{name}-{platform.machine()}-{time.strftime('%Y-%m-%d')}"


def write_results(name: str, out: str, rows: list[dict], text: str) -> None:
    """Print the table and write it (.md) with its rows (.json)."""
    print(text)
    path = Path(out) if out else results_stem(name)
    path.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    path.with_suffix(".md").write_text(text + "\n")
    print(f"wrote {path}.md", flush=True)
