"""Beyond the usual toolkit: compact embeddings, structured pruning and length buckets for the student."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from converter.compress.compact import compact_model, factorize_embeddings, id_map, kept_ids, map_inputs
from converter.compress.distill import distill
from converter.compress.structured import importance_scores, keep_top, slice_model
from converter.config import KitConfig, ModelConfig, SlimConfig
from converter.data.augment import unk_copy
from converter.data.tokenize import encode, load_tokenizer
from converter.export.bundle import model_entry, sha256_of
from converter.export.stats import encoder_sparsity, gzip_bytes
from converter.export.tflite import export_tflite
from converter.files import save_npy_atomic
from converter.jobs.context import Context, Split, export_variants, file_metrics, split_metrics, train_dev
from converter.jobs.lowbit import lowbit_variants
from converter.modeling.bert import build_classifier
from device_runtime.format import INPUT_IDS, Key, Quantization, bucket_key, needs_calibration
from device_runtime.interpreter import TFLiteModel
from device_runtime.tokenizer import SPECIAL_TOKENS, load_vocab
from device_runtime.variants import BucketedModel


def mapped_context(ctx: Context, mapping: np.ndarray) -> Context:
    splits = {name: Split(split.data, map_inputs(split.inputs, mapping)) for name, split in ctx.splits.items()}
    return replace(ctx, splits=splits)


def compaction(cfg: KitConfig, ctx: Context, work: Path):
    """-> (kept ids, id map, map file, stats) from the training split (+ optional extra text)."""
    vocab = load_vocab(ctx.vocab)
    extra = None
    if cfg.slim.extra_text:
        texts = Path(cfg.slim.extra_text).read_text(encoding="utf-8").splitlines()
        extra = encode(load_tokenizer(ctx.folder), texts, cfg.model.max_seq_len)[INPUT_IDS]
    kept = kept_ids(ctx.splits["train"].inputs[INPUT_IDS], [vocab[t] for t in SPECIAL_TOKENS], extra,
                    cfg.slim.extra_top_k, cfg.slim.min_count)
    mapping = id_map(kept, len(vocab), vocab["[UNK]"])
    path = work / "student-compact.idmap.npy"
    save_npy_atomic(path, mapping.astype(np.int16 if len(kept) < 2**15 else np.int32))
    test_ids = ctx.splits["test"].inputs[INPUT_IDS]
    real = test_ids[(test_ids != vocab["[PAD]"]) & (test_ids != vocab["[UNK]"])]
    stats = {"kept_ids": int(len(kept)), "vocab_size": len(vocab),
             "test_tokens_to_unk": float(np.mean(mapping[real] == mapping[vocab["[UNK]"]]))}
    return kept, mapping, path, stats


def _map_fields(path: Path, kept) -> dict:
    return {Key.ID_MAP_FILE: path.name, Key.ID_MAP_SHA256: sha256_of(path), "kept_ids": int(len(kept)),
            "extra_sources": {path.name: str(path)}}


# Bucket files mask padding with BERT's -10000: exp() of it underflows to exactly 0, so padded
# keys add exactly nothing and a sentence's rows compute the same at every length (with -30 they
# add ~1e-13, which can flip a float rounding). The int8 files keep -30 for their int8 ranges.
BUCKET_MASK_BIAS = -10000.0


def at_length(model, model_cfg: ModelConfig, seq_len: int, mask_bias: float | None = None):
    """The same weights built at another fixed length (weights do not depend on it)."""
    other_cfg = replace(model_cfg, max_seq_len=seq_len, mask_bias=model_cfg.mask_bias if mask_bias is None else mask_bias)
    other = build_classifier(other_cfg, name=model.name)
    other.set_weights(model.get_weights())
    return other


def bucket_lengths(buckets, seq_len: int, max_positions: int) -> list[int]:
    """Configured buckets within the position table, always including the bundle's seq_len."""
    return sorted({b for b in buckets if b <= max_positions} | {seq_len})


def export_buckets(model, model_cfg: ModelConfig, name: str, cfg: KitConfig, ctx: Context, mapping, folder: Path,
                   quantization: Quantization):
    """One file per bucket length -> ({length: path}, bucketed-vs-longest report). Dynamic files mask
    padding with BUCKET_MASK_BIAS; full-int8 ones keep the model's bias (see docs)."""
    tokenizer = load_tokenizer(ctx.folder)
    mask_bias = BUCKET_MASK_BIAS if quantization == Quantization.DYNAMIC else None
    calibration = ctx.splits["train"].data.texts[: cfg.export.num_calibration_examples]
    paths = {}
    for length in bucket_lengths(cfg.slim.buckets, model_cfg.max_seq_len, model_cfg.max_position_embeddings):
        cal = map_inputs(encode(tokenizer, calibration, length), mapping) if needs_calibration(quantization) else None
        paths[length] = export_tflite(at_length(model, model_cfg, length, mask_bias), length, quantization,
                                      folder / f"{name}-{length}.tflite", cal, cfg.export.float_ops(quantization))
    longest = max(paths)
    test = ctx.splits["test"]
    inputs = map_inputs(encode(tokenizer, test.data.texts, longest), mapping)
    bucketed = BucketedModel({length: TFLiteModel(path, num_threads=1) for length, path in paths.items()})
    single = TFLiteModel(paths[longest], num_threads=1)
    rows = [{k: v[i:i + 1] for k, v in inputs.items()} for i in range(len(test.data))]
    timings = {}
    for label, runner in (("longest", single), ("bucketed", bucketed)):
        start = time.perf_counter()
        logits = np.concatenate([runner.predict(row) for row in rows])
        timings[label] = (time.perf_counter() - start, logits)
    same = float(np.mean(timings["longest"][1].argmax(-1) == timings["bucketed"][1].argmax(-1)))
    dev = ctx.splits["dev"]
    dev_inputs = map_inputs(encode(tokenizer, dev.data.texts, longest), mapping)
    dev_logits = np.concatenate([bucketed.predict({k: v[i:i + 1] for k, v in dev_inputs.items()})
                                 for i in range(len(dev.data))])
    metrics, temperature = file_metrics({"dev": dev_logits, "test": timings["bucketed"][1]},
                                        {"dev": Split(dev.data, dev_inputs), "test": Split(test.data, inputs)})
    report = {"buckets": list(paths), "quantization": quantization, "identical_labels": same, "longest_s": timings["longest"][0],
              "bucketed_s": timings["bucketed"][0], "speedup": timings["longest"][0] / timings["bucketed"][0],
              "metrics": metrics, "temperature": temperature}
    return paths, report


def bucketed_variant(model, model_cfg: ModelConfig, prefix: str, cfg: KitConfig, ctx: Context, mapping,
                     work: Path, fields: dict, quantization: Quantization | None = None) -> tuple[dict, dict]:
    """<prefix>-<quantization> (default cfg.slim.bucket_quantization): one file per bucket length, the seq_len
    one the entry's own file -> (manifest entry, bucketed-vs-longest report). mapping: the compact id map, or None."""
    quantization = quantization or cfg.slim.bucket_quantization
    name = f"{prefix}-{quantization}"
    paths, report = export_buckets(model, model_cfg, name, cfg, ctx, mapping, work, quantization)
    main = paths[cfg.model.max_seq_len]
    others = {length: path for length, path in paths.items() if path != main}
    buckets = {bucket_key(length): path.name for length, path in others.items()}
    fields = {**fields, "extra_sources": {**fields.get("extra_sources", {}),
                                          **{path.name: str(path) for path in others.values()}}}
    entry = model_entry(name, main, quantization, model_cfg, report["metrics"],
                        buckets=list(paths), float_ops=list(cfg.export.float_ops(quantization)),
                        **({Key.TEMPERATURE: report["temperature"]} if report["temperature"] else {}),
                        sparsity=round(encoder_sparsity(main), 4), gzip_bytes=gzip_bytes(main), **buckets, **fields)
    entry[bucket_key(cfg.model.max_seq_len)] = entry[Key.FILE]  # the seq_len bucket is the entry's own file
    return entry, report


def structured_student(cfg: KitConfig, ctx: Context, teacher, teacher_cfg: ModelConfig, student,
                       student_cfg: ModelConfig, scores, keep_heads: float, keep_ffn: float, work_name: str,
                       resume: bool):
    """Remove the least important heads and FFN neurons (by `scores` of the student, from
    importance_scores), then recover by distillation -> (model, cfg, report)."""
    print(f"structured pruning: keep {keep_heads:.0%} of heads, {keep_ffn:.0%} of FFN neurons "
          f"({cfg.slim.importance} importance)", flush=True)
    heads, neurons = keep_top(scores, keep_heads, keep_ffn)
    small, small_cfg = slice_model(student, student_cfg, heads, neurons)
    small, small_cfg, state = distill(
        teacher, teacher_cfg, *train_dev(ctx), replace(cfg.distill, train=cfg.slim.recovery),
        Path(cfg.work_dir) / work_name, resume=resume, student=small, student_cfg=small_cfg)
    report = {"keep_heads": keep_heads, "keep_ffn": keep_ffn, "importance": cfg.slim.importance, "heads": [len(h) for h in heads],
              "intermediate": [len(n) for n in neurons], "best_dev_accuracy": state["best_dev_accuracy"]}
    return small, small_cfg, report




def recovery_rows(slim: SlimConfig, inputs: list[np.ndarray], labels: np.ndarray, unk: int, seed: int):
    """The slim recovery's training rows -> (inputs, labels, teacher rows): the training split, plus its
    [UNK] copy when slim.unk_copy_prob or slim.unk_rare_alpha asks for one (teacher rows: the original
    sentence each row's teacher logits come from; None without a copy)."""
    if not (slim.unk_copy_prob or slim.unk_rare_alpha):
        return inputs, labels, None
    return unk_copy(inputs, labels, unk, slim.unk_copy_prob, seed, slim.unk_rare_alpha)


def slim_model(cfg: KitConfig, ctx: Context, mctx: Context, teacher, teacher_cfg: ModelConfig, small,
               small_cfg: ModelConfig, kept: np.ndarray, mapping: np.ndarray, work_dir: Path, resume: bool = False):
    """The 5 MB model from a structured cut: compact, word table factorized (cfg.slim.embedding_rank,
    rows weighted by cfg.slim.embedding_weights) and position table cut to the longest bucket (rank
    0: neither), then recovered by distillation on mapped ids (plus an [UNK] copy: recovery_rows)
    -> (model, its ModelConfig, report)."""
    slim, slim_cfg = compact_model(small, small_cfg, kept)
    positions = max(bucket_lengths(cfg.slim.buckets, slim_cfg.max_seq_len, slim_cfg.max_position_embeddings))
    weights = None
    if cfg.slim.embedding_weights == "counts":
        counts = np.bincount(ctx.splits["train"].inputs[INPUT_IDS].reshape(-1), minlength=len(mapping))
        weights = counts[kept] + 1.0
    if cfg.slim.embedding_rank:  # 0: the compact table stays full width (a point on the size curve)
        slim, slim_cfg = factorize_embeddings(slim, slim_cfg, cfg.slim.embedding_rank, positions, weights)
    print(f"slim student: {len(kept)} embedding rows at rank {slim_cfg.embedding_rank or slim_cfg.hidden_size} "
          f"({cfg.slim.embedding_weights} weights), {slim_cfg.max_position_embeddings} positions", flush=True)
    dev = mctx.splits["dev"]
    before = split_metrics(slim.predict(list(dev.inputs.values()), batch_size=64, verbose=0), dev)["test"]["accuracy"]
    (inputs, labels), dev_pair = train_dev(mctx)
    unk = int(mapping[load_vocab(ctx.vocab)["[UNK]"]])
    inputs, labels, rows = recovery_rows(cfg.slim, inputs, labels, unk, cfg.distill.train.seed)
    slim, slim_cfg, state = distill(
        teacher, teacher_cfg, (inputs, labels), dev_pair, replace(cfg.distill, train=cfg.slim.slim_recovery),
        work_dir, resume=resume, student=slim, student_cfg=slim_cfg,
        teacher_inputs=list(ctx.splits["train"].inputs.values()), teacher_rows=rows)
    report = {"embedding_rank": slim_cfg.embedding_rank, "embedding_weights": cfg.slim.embedding_weights,
              "unk_copy_prob": cfg.slim.unk_copy_prob,
              "unk_rare_alpha": cfg.slim.unk_rare_alpha, "positions": slim_cfg.max_position_embeddings,
              "dev_before_recovery": before,
              "best_dev_accuracy": state["best_dev_accuracy"]}
    return slim, slim_cfg, report


def run_slim(cfg: KitConfig, ctx: Context, teacher, teacher_cfg: ModelConfig, student, student_cfg: ModelConfig,
             calibration, resume: bool = False):
    """student-compact-int8, student-structured-int8, the bucketed student-slim-int8, the structured cuts
    bucketed, and the int4w variants of the student, the structured cuts (whole or compact table) and the
    slim one -> (entries, report)."""
    work = Path(cfg.work_dir) / "slim"
    kept, mapping, map_path, report = compaction(cfg, ctx, work)
    mctx = mapped_context(ctx, mapping)
    map_fields = _map_fields(map_path, kept)
    mapped_calibration = map_inputs(calibration, mapping)
    compact, compact_cfg = compact_model(student, student_cfg, kept)
    entries = export_variants(compact, compact_cfg, "student-compact", mctx, cfg, (Quantization.INT8,), mapped_calibration,
                              **map_fields)
    dev, mdev = ctx.splits["dev"], mctx.splits["dev"]
    for key, model, split in (("dev_before", student, dev), ("dev_after", compact, mdev)):
        logits = model.predict(list(split.inputs.values()), batch_size=64, verbose=0)
        report[key] = split_metrics(logits, split)["test"]  # split_metrics names its first key "test"

    # One ranking of the student's heads and neurons serves both cuts (Taylor: a pass over the training split).
    scores = importance_scores(student, student_cfg, cfg.slim.importance, train_dev(ctx)[0])
    small, small_cfg, report["structured"] = structured_student(
        cfg, ctx, teacher, teacher_cfg, student, student_cfg, scores, cfg.slim.keep_heads, cfg.slim.keep_ffn,
        "student_structured", resume)
    entries += export_variants(small, small_cfg, "student-structured", ctx, cfg, (Quantization.INT8,), calibration)
    structured, structured_cfg = small, small_cfg
    lowbit_sources = [(student, student_cfg, "student", ctx, {}, ()), (small, small_cfg, "student-structured", ctx, {}, ()),
                      (*compact_model(small, small_cfg, kept), "student-structured-compact", mctx, map_fields, (map_path,))]
    cuts = [(structured, structured_cfg, "student-structured", "structured_buckets")]
    if (cfg.slim.slim_keep_heads, cfg.slim.slim_keep_ffn) != (cfg.slim.keep_heads, cfg.slim.keep_ffn):
        small, small_cfg, report["slim_structured"] = structured_student(
            cfg, ctx, teacher, teacher_cfg, student, student_cfg, scores, cfg.slim.slim_keep_heads,
            cfg.slim.slim_keep_ffn, "student_slim_structured", resume)
        # The slim cut before its table is factorized: the same structure with the whole (or compact) table.
        cuts.append((small, small_cfg, "student-slim-structured", "slim_structured_buckets"))
        lowbit_sources.append((*compact_model(small, small_cfg, kept), "student-slim-structured-compact", mctx,
                               map_fields, (map_path,)))

    slim, slim_cfg, report["slim"] = slim_model(cfg, ctx, mctx, teacher, teacher_cfg, small, small_cfg, kept, mapping,
                                                Path(cfg.work_dir) / "student_slim", resume)
    entries += export_variants(slim, slim_cfg, "student-slim", mctx, cfg, (Quantization.INT8,), mapped_calibration, **map_fields)
    # What a device needs for this one model (the manifest comes on top: ~1 KB per entry).
    report["slim"]["bundle_bytes_without_manifest"] = sum(
        Path(p).stat().st_size for p in (entries[-1]["source"], ctx.vocab, map_path))

    if cfg.slim.lowbit:
        lowbit_sources.append((slim, slim_cfg, "student-slim", mctx, map_fields, (map_path,)))
        lowbit_entries, report["lowbit"] = lowbit_variants(lowbit_sources, cfg, Path(ctx.vocab), teacher, ctx, resume)
        entries += lowbit_entries

    entry, report["buckets"] = bucketed_variant(slim, slim_cfg, "student-slim", cfg, mctx, mapping, work, map_fields)
    entries.append(entry)
    if cfg.slim.structured_buckets:  # the structured cuts at the same lengths: speed from structure alone
        for model, model_cfg, prefix, key in cuts:
            entry, report[key] = bucketed_variant(model, model_cfg, prefix, cfg, ctx, None, work, {})
            entries.append(entry)
    if cfg.slim.int8_buckets:  # full int8 per bucket: faster on int8 dot-product CPUs; labels may move between buckets
        entry, report["structured_int8_buckets"] = bucketed_variant(
            structured, structured_cfg, "student-structured-buckets", cfg, ctx, None, work, {}, Quantization.INT8)
        entries.append(entry)
    return entries, report
