"""The 5 MB model's embedding choices on dev: rows kept, factorization rank and weighting, recovery lr.

    python -m experiments.slim_sweep [--work-dir work]
        [--variants "rank=160,weights=none,unk_prob=0;rank=288,min_count=2"]

A variant's unnamed keys take make convert's values (KitConfig().slim: rank, min_count, weights,
lr, unk_prob, unk_alpha; cut=slim); the default list spells every key of the committed results' runs.

Needs `make convert`'s work dir: the teacher and a recovered structured cut (cut=slim: the 50% heads
/ 50% FFN cut of work/student_slim_structured; cut=structured: work/student_structured; widths
read from work/report.json). Each variant compacts that model (ids seen >= min_count times in
training), factorizes its word table (plain SVD, or weighted by training token counts + 1 with
weights=counts; rank=0: left whole), recovers it with make convert's own function (slim.slim_model:
optionally another lr, and a copy of the training split with wordpieces sent to [UNK] at rate
unk_prob, rare ones more often with unk_alpha) and exports int8 and dynamic-range int8, each file
scored on dev and test. Dev picks; test is reported.
Prints a table and writes benchmarks/results/slim-sweep-<machine>-<date>.{json,md}."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from converter.compress.compact import map_inputs
from converter.compress.distill import student_config
from converter.config import EmbeddingWeights, KitConfig, with_overrides
from converter.jobs.compression import load_trained, trained_teacher
from converter.jobs.context import calibration_inputs, export_variants
from converter.jobs.slim import compaction, mapped_context, slim_model
from experiments.sweep_variants import file_metrics, parse_variant, sweep_arguments, write_results

SLIM = KitConfig().slim
DEFAULTS = {"rank": SLIM.embedding_rank, "min_count": SLIM.min_count, "weights": SLIM.embedding_weights,
            "lr": SLIM.slim_recovery.learning_rate, "unk_prob": SLIM.unk_copy_prob, "unk_alpha": SLIM.unk_rare_alpha,
            "cut": "slim"}
CUTS = {"slim": ("slim_structured", "student_slim_structured"), "structured": ("structured", "student_structured")}


# The runs of benchmarks/results/slim-sweep-x86_64-2026-11-27.md (every key spelled out: defaults move).
VARIANTS = ";".join(f"rank={r},min_count={m},weights={w},unk_prob={u}" for r, m, w, u in (
    (160, 1, "none", 0), (160, 1, "none", 0.05), (160, 1, "counts", 0), (160, 1, "counts", 0.05), (185, 1, "none", 0),
    (288, 2, "none", 0)))
QUANTIZATIONS = ("int8", "dynamic")  # the slim model ships in both (dynamic: its length buckets)


def tag_of(v: dict) -> str:
    tag = f"r{v['rank']}-m{v['min_count']}-{v['weights']}-lr{v['lr']:g}"
    tag += (f"-unk{v['unk_prob']:g}" if v["unk_prob"] else "") + (f"-rare{v['unk_alpha']:g}" if v["unk_alpha"] else "")
    return tag if v["cut"] == "slim" else f"{v['cut']}-{tag}"


def main() -> None:
    args = sweep_arguments(VARIANTS)
    variants = [parse_variant(text, DEFAULTS, {"weights": tuple(w.value for w in EmbeddingWeights), "cut": tuple(CUTS)})
                for text in args.variants.split(";") if text.strip()]

    cfg = replace(KitConfig(), work_dir=args.work_dir)
    report = json.loads((Path(args.work_dir) / "report.json").read_text())["slim"]
    ctx, teacher, teacher_cfg = trained_teacher(cfg)
    cuts = {}  # cut name -> (report, model, its ModelConfig), loaded once

    def recovered_cut(name: str):
        if name not in cuts:
            key, folder = CUTS[name] if CUTS[name][0] in report else CUTS["structured"]
            cut_cfg = replace(student_config(teacher_cfg, cfg.distill), heads_per_layer=tuple(report[key]["heads"]),
                              intermediate_per_layer=tuple(report[key]["intermediate"]))
            cuts[name] = report[key], load_trained(cfg, cut_cfg, folder), cut_cfg
        return cuts[name]

    calibration = calibration_inputs(ctx.splits["train"], cfg.export.num_calibration_examples, cfg.export.calibration_seed)
    work = Path(args.work_dir) / "slim_sweep"

    rows = []
    for v in variants:
        tag = tag_of(v)
        cut, structured, cut_cfg = recovered_cut(v["cut"])
        print(f"== {tag}", flush=True)
        vcfg = with_overrides(replace(cfg, work_dir=str(work)), "slim", min_count=v["min_count"], embedding_rank=v["rank"],
                              embedding_weights=v["weights"], unk_copy_prob=v["unk_prob"], unk_rare_alpha=v["unk_alpha"],
                              slim_recovery=replace(cfg.slim.slim_recovery, learning_rate=v["lr"]))
        kept, mapping, _, stats = compaction(vcfg, ctx, work / tag)  # the id map file lands in work/slim_sweep/<tag>
        mctx = mapped_context(ctx, mapping)
        # make convert's own function; recovery checkpoints in work/slim_sweep/<tag>, teacher logits cached beside
        slim, slim_cfg, rep = slim_model(vcfg, ctx, mctx, teacher, teacher_cfg, structured, cut_cfg, kept, mapping,
                                         work / tag, resume=True)
        row = {**v, "heads_ffn": f"{cut['keep_heads']:.0%} / {cut['keep_ffn']:.0%}",
               "kept_ids": stats["kept_ids"], "test_tokens_to_unk": stats["test_tokens_to_unk"],
               "dev_before_recovery": rep["dev_before_recovery"], "dev": rep["best_dev_accuracy"]}
        for entry in export_variants(slim, slim_cfg, f"student-slim-{tag}", mctx, vcfg, QUANTIZATIONS,
                                     map_inputs(calibration, mapping)):
            row[entry["quantization"]] = {**file_metrics(entry["source"], mctx, entry["metrics"]),
                                          "bytes": Path(entry["source"]).stat().st_size}
        rows.append(row)

    lines = [f"Slim model embedding choices (`experiments/slim_sweep.py`), from a recovered structured cut (heads / FFN kept); "
             f"{cfg.slim.slim_recovery.epochs} recovery epochs, best on dev (Keras); then each file on dev and test; rank 0: "
             "the compact table unfactorized", "",
             "| heads / FFN | rank | min count | weights | lr | [UNK] copy | rare alpha | rows kept | test tokens to [UNK] "
             "| dev before recovery | dev (Keras) | "
             + " | ".join(f"{q} dev | {q} test | {q} AllAgree | {q} bytes" for q in QUANTIZATIONS) + " |",
             "|" + "---|" * (11 + 4 * len(QUANTIZATIONS))]
    lines += [f"| {r['heads_ffn']} "
              f"| {r['rank']} | {r['min_count']} | {r['weights']} | {r['lr']:g} | {r['unk_prob']:g} | {r['unk_alpha']:g} | "
              f"{r['kept_ids']:,} | {r['test_tokens_to_unk']:.2%} | {r['dev_before_recovery']:.4f} | {r['dev']:.4f} | "
              + " | ".join(f"{r[q]['dev']:.4f} | {r[q]['test']:.4f} | {r[q]['allagree']:.4f} | {r[q]['bytes']:,}"
                           for q in QUANTIZATIONS) + " |" for r in rows]
    write_results("slim-sweep", args.out, rows, "\n".join(lines))


if __name__ == "__main__":
    main()
