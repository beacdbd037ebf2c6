"""The bundle's default model: a rule on dev figures and the models' structure, never on test.

Speed is ranked by estimated compute, not by timing the converting host: the device is another
machine, int8 speed depends on its CPU (docs/design.md), and a timed choice would not reproduce."""

from __future__ import annotations

from converter.errors import ConfigError
from device_runtime.format import Key, Quantization

# Tie-break between files of one structure: int8 arithmetic was never slower than float on the CPUs measured.
# int4w computes as dynamic does (float activations quantized on the fly), from 4-bit weights.
QUANTIZATION_ORDER = (Quantization.INT8, Quantization.DYNAMIC, Quantization.INT4W, Quantization.INT16X8,
                      Quantization.FLOAT16, Quantization.FLOAT32)
RULE = ("fewest estimated multiply-adds for a sentence of the median dev length (int8 before dynamic, "
        "int4w, int16x8, float16, float32; then fewer bytes) among the models whose dev accuracy is within "
        "{tolerance} of the best and whose files fit {budget}")


def _per_layer(value, layers: int) -> list[int]:
    return list(value) if isinstance(value, list) else [int(value)] * layers


def run_length(entry: dict, seq_len: int, tokens: int) -> int:
    """The length a sentence of `tokens` tokens runs at: the smallest bucket that holds it, else seq_len."""
    buckets = sorted(entry.get(Key.BUCKETS) or [])
    return next((b for b in buckets if b >= tokens), entry.get(Key.SEQ_LEN, seq_len))


def encoder_macs(arch: dict, length: int) -> int:
    """Multiply-adds of the encoder on one sequence: Q/K/V/output and FFN projections, attention scores
    and weighted sums (embeddings, pooler and head are a few thousand, left out)."""
    layers, hidden = arch["layers"], arch["hidden"]
    head_size = arch.get("head_size") or hidden // max(_per_layer(arch["heads"], layers))
    total = 0
    for heads, ffn in zip(_per_layer(arch["heads"], layers), _per_layer(arch["intermediate"], layers)):
        width = heads * head_size
        total += length * (4 * hidden * width + 2 * hidden * ffn) + 2 * length * length * width
    return total


def standard_error_points(accuracy: float, n: int) -> float:
    """One binomial standard error of an accuracy measured on n sentences, in points."""
    return 100 * (accuracy * (1 - accuracy) / n) ** 0.5 if n else 0.0


def choose_default(models: list[dict], sizes: dict[str, int], seq_len: int, tokens: int,
                   tolerance_points: float | None, budget_mb: float, name: str = "") -> dict:
    """-> the manifest's default_model record: {name, chosen_by, rule, figures of every candidate}.

    Args:
        models: manifest entries (with metrics.dev where a dev split was scored).
        sizes: bytes a device needs per model (its files and the vocab).
        tokens: the median dev sentence length in tokens ([CLS] and [SEP] included).
        tolerance_points: None: one standard error of the best dev accuracy (Breiman's one-standard-error
            rule: differences below it are what another dev sample could reverse).
        name: a model name that overrides the rule (checked to exist)."""
    names = [m[Key.NAME] for m in models]
    rows = []
    for m in models:
        dev = m.get(Key.METRICS, {}).get("dev", {})
        rows.append({"name": m[Key.NAME], "dev_accuracy": dev.get("accuracy"), "dev_n": dev.get("n", 0),
                     "bytes": sizes[m[Key.NAME]], "quantization": m[Key.QUANTIZATION],
                     "macs": encoder_macs(m["arch"], run_length(m, seq_len, tokens)) if "arch" in m else None})
    scored = [r for r in rows if r["dev_accuracy"] is not None]
    top = max(scored, key=lambda r: r["dev_accuracy"], default=None)
    best = top["dev_accuracy"] if top else None
    if tolerance_points is None:
        tolerance_points = round(standard_error_points(best, top["dev_n"]), 2) if top else 0.0
        spelled = f"one standard error ({tolerance_points:g} points)"
    else:
        spelled = f"{tolerance_points:g} points"
    budget = f"{budget_mb:g} MB" if budget_mb else "any size"
    record = {"rule": RULE.format(tolerance=spelled, budget=budget), "tolerance_points": tolerance_points,
              "budget_mb": budget_mb, "median_dev_tokens": tokens}
    fits = [r for r in (scored or rows) if not budget_mb or r["bytes"] <= budget_mb * 1e6]
    candidates = [r for r in fits if best is None or r["dev_accuracy"] >= best - tolerance_points / 100 - 1e-12]
    record.update(best_dev_accuracy=best, candidates=sorted(r["name"] for r in candidates))
    if name:
        if name not in names:
            raise ConfigError(f"--default-model {name!r} is not in the bundle; models: {', '.join(names)}")
        return {"name": name, "chosen_by": "--default-model", **record, "figures": rows}
    if not candidates:  # nothing fits the budget: the smallest model, said so
        candidates, record["note"] = [min(rows, key=lambda r: r["bytes"])], "no model fits the rule; the smallest"
    if best is None:
        record["note"] = "no dev figures: accuracy not compared"

    def cost(r):
        return (r["macs"] if r["macs"] is not None else float("inf"), QUANTIZATION_ORDER.index(r["quantization"]), r["bytes"])
    return {"name": min(candidates, key=cost)["name"], "chosen_by": "rule", **record, "figures": rows}
