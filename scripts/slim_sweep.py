"""The 5 MB model's embedding choices on dev: rows kept, factorization rank and weighting, recovery lr.

    .venv/bin/python scripts/slim_sweep.py [--work-dir work]
        [--variants "rank=160;rank=160,weights=counts;rank=288,min_count=2"]

Needs `make convert`'s work dir: the teacher and the recovered 50% heads / 50% FFN cut
(work/student_slim_structured, its widths read from work/report.json). Each variant compacts that
model (ids seen >= min_count times in training), factorizes its word table (plain SVD, or weighted
by training token counts + 1 with weights=counts), recovers it exactly as `make convert` does
(slim.slim_recovery, optionally another lr) and exports full int8. Dev picks; test is reported.
Prints a table and writes benchmarks/results/slim-sweep-<machine>-<date>.{json,md}."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from converter.compact import compact_model, factorize_embeddings, map_inputs  # noqa: E402
from converter.compress import load_trained, trained_teacher  # noqa: E402
from converter.config import KitConfig, with_overrides  # noqa: E402
from converter.distill import distill, student_config  # noqa: E402
from converter.pipeline import calibration_inputs, export_variants, split_metrics, train_dev  # noqa: E402
from converter.slim import bucket_lengths, compaction, mapped_context  # noqa: E402
from device_runtime.tokenizer import load_vocab  # noqa: E402

DEFAULTS = {"rank": KitConfig().slim.embedding_rank, "min_count": KitConfig().slim.min_count, "weights": "none",
            "lr": KitConfig().slim.slim_recovery.learning_rate, "unk_prob": 0.0}


def with_unk_copy(inputs: list[np.ndarray], labels: np.ndarray, teacher_inputs: list[np.ndarray], unk_id: int,
                  prob: float, seed: int):
    """Training rows plus one copy whose wordpieces (not [CLS]/[SEP]/padding) become [UNK] with
    probability `prob`; the teacher still reads the original sentence, so the copy learns to answer
    as the teacher does despite the ids compaction sends to [UNK]."""
    ids, mask = inputs
    followed = np.concatenate([mask[:, 1:], np.zeros_like(mask[:, :1])], axis=1) == 1  # not the last real token ([SEP])
    body = (mask == 1) & (np.arange(ids.shape[1])[None, :] > 0) & followed
    hit = body & (np.random.default_rng(seed).random(ids.shape) < prob)
    return ([np.concatenate([ids, np.where(hit, unk_id, ids)]), np.concatenate([mask, mask])],
            np.concatenate([labels, labels]), [np.concatenate([x, x]) for x in teacher_inputs])


def parse_variant(text: str) -> dict:
    """"rank=288,min_count=2" -> the DEFAULTS with those keys replaced (types kept)."""
    variant = dict(DEFAULTS)
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        if key not in DEFAULTS:
            raise SystemExit(f"--variants: unknown key {key!r} in {text!r}; expected one of {sorted(DEFAULTS)}")
        variant[key] = type(DEFAULTS[key])(value)
    if variant["weights"] not in ("none", "counts"):
        raise SystemExit(f"--variants: weights must be none or counts, not {variant['weights']!r}")
    return variant


def tag_of(v: dict) -> str:
    return f"r{v['rank']}-m{v['min_count']}-{v['weights']}-lr{v['lr']:g}" + (f"-unk{v['unk_prob']:g}" if v["unk_prob"] else "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work-dir", default="work")
    parser.add_argument("--variants", default="rank=160;rank=160,weights=counts;rank=185;rank=288,min_count=2;"
                                              "rank=352,min_count=3;rank=160,lr=3e-5;rank=160,unk_prob=0.05")
    args = parser.parse_args()
    variants = [parse_variant(text) for text in args.variants.split(";") if text.strip()]

    cfg = replace(KitConfig(), work_dir=args.work_dir)
    report = json.loads((Path(args.work_dir) / "report.json").read_text())["slim"]
    cut = report.get("slim_structured", report["structured"])
    ctx, teacher, teacher_cfg = trained_teacher(cfg)
    cut_cfg = replace(student_config(teacher_cfg, cfg.distill), heads_per_layer=tuple(cut["heads"]),
                      intermediate_per_layer=tuple(cut["intermediate"]))
    folder = "student_slim_structured" if "slim_structured" in report else "student_structured"
    structured = load_trained(cfg, cut_cfg, folder)
    unk_id = load_vocab(ctx.vocab)["[UNK]"]
    counts = Counter(ctx.splits["train"].inputs["input_ids"].reshape(-1).tolist())
    calibration = calibration_inputs(ctx.splits["train"], cfg.export.num_calibration_examples, cfg.export.calibration_seed)
    work = Path(args.work_dir) / "slim_sweep"
    positions = max(bucket_lengths(cfg.slim.buckets, cut_cfg.max_seq_len, cut_cfg.max_position_embeddings))

    rows = []
    for v in variants:
        tag = tag_of(v)
        print(f"== {tag}", flush=True)
        vcfg = with_overrides(replace(cfg, work_dir=str(work)), "slim", min_count=v["min_count"],
                              slim_recovery=replace(cfg.slim.slim_recovery, learning_rate=v["lr"]))
        kept, mapping, _, stats = compaction(vcfg, ctx, work / tag)  # the id map file lands in work/slim_sweep/<tag>
        mctx = mapped_context(ctx, mapping)
        compact, compact_cfg = compact_model(structured, cut_cfg, kept)
        weights = np.array([counts.get(int(i), 0) + 1.0 for i in kept]) if v["weights"] == "counts" else None
        slim, slim_cfg = factorize_embeddings(compact, compact_cfg, v["rank"], positions, weights)
        dev = mctx.splits["dev"]
        before = split_metrics(slim.predict(list(dev.inputs.values()), batch_size=64, verbose=0), dev)["test"]["accuracy"]
        (train_inputs, labels), dev_pair = train_dev(mctx)
        teacher_inputs = list(ctx.splits["train"].inputs.values())
        if v["unk_prob"]:
            train_inputs, labels, teacher_inputs = with_unk_copy(train_inputs, labels, teacher_inputs, int(mapping[unk_id]),
                                                                 v["unk_prob"], cfg.distill.train.seed)
        recovery = replace(vcfg.distill, train=vcfg.slim.slim_recovery)
        # Work dirs work/slim_sweep/<tag>: the teacher's logits are cached once in work/slim_sweep.
        slim, slim_cfg, state = distill(teacher, teacher_cfg, (train_inputs, labels), dev_pair, recovery, work / tag,
                                        resume=True, student=slim, student_cfg=slim_cfg, teacher_inputs=teacher_inputs)
        entry = export_variants(slim, slim_cfg, f"student-slim-{tag}", mctx, vcfg, ("int8",), map_inputs(calibration, mapping))[0]
        rows.append({**v, "kept_ids": stats["kept_ids"], "test_tokens_to_unk": stats["test_tokens_to_unk"],
                     "dev_before_recovery": before, "dev": state["best_dev_accuracy"],
                     "test": entry["metrics"]["test"]["accuracy"], "allagree": entry["metrics"]["test_allagree"]["accuracy"],
                     "model_bytes": Path(entry["source"]).stat().st_size})

    lines = [f"Slim model embedding choices (`scripts/slim_sweep.py`), from the recovered {cut['keep_heads']:.0%} heads / "
             f"{cut['keep_ffn']:.0%} FFN cut; {cfg.slim.slim_recovery.epochs} recovery epochs, best on dev; int8", "",
             "| rank | min count | weights | lr | [UNK] copy | rows kept | test tokens to [UNK] | dev before recovery "
             "| dev | test | AllAgree | model bytes |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['rank']} | {r['min_count']} | {r['weights']} | {r['lr']:g} | {r['unk_prob']:g} | {r['kept_ids']:,} | "
              f"{r['test_tokens_to_unk']:.2%} | {r['dev_before_recovery']:.4f} | {r['dev']:.4f} | {r['test']:.4f} | "
              f"{r['allagree']:.4f} | {r['model_bytes']:,} |" for r in rows]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "benchmarks" / "results" / f"slim-sweep-{platform.machine()}-{time.strftime('%Y-%m-%d')}"
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    out.with_suffix(".md").write_text(text + "\n")
    print(f"wrote {out}.md", flush=True)


if __name__ == "__main__":
    main()
