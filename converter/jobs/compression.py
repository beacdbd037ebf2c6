"""The compression stage of `make convert`: distilled student (+ hard-label ablation), QAT,
magnitude pruning of teacher and student, prune-preserving QAT. Each step adds bundle entries."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from converter.compress.distill import distill, distillation_data, initialised_from, student_config
from converter.compress.prune import prune
from converter.compress.qat import qat, trained_float
from converter.config import LABELS, KitConfig, ModelConfig, ModelRole, QatTarget
from converter.data.augment import token_id
from converter.errors import ConfigError, MissingFileError
from converter.export.bundle import write_bundle
from converter.files import write_json_atomic
from converter.jobs.context import (
    Context,
    calibration_inputs,
    export_variants,
    prepare,
    shipping,
    split_metrics,
    teacher_pooling,
    teacher_story,
    train_dev,
)
from converter.jobs.slim import run_slim
from converter.modeling import hf_weights as ck
from converter.modeling.bert import build_classifier
from converter.train.distribute import on_replicas
from device_runtime.format import Quantization

log = logging.getLogger(__name__)
STUDENT_QUANTIZATIONS = (Quantization.FLOAT32, Quantization.DYNAMIC, Quantization.FLOAT16, Quantization.INT8,
                         Quantization.INT16X8)
PRUNED_QUANTIZATIONS = (Quantization.DYNAMIC, Quantization.INT8)  # the teacher's; the student's: int8


def keras_test_metrics(model, ctx: Context) -> dict:
    test = ctx.splits["test"]
    return split_metrics(model.predict(list(test.inputs.values()), batch_size=64, verbose=0), test)


def load_trained(cfg: KitConfig, model_cfg: ModelConfig, folder: str):
    """A model fine-tuned earlier in work_dir (best-on-dev weights)."""
    weights = Path(cfg.work_dir) / folder / "best.weights.h5"
    if not weights.is_file():
        raise MissingFileError(f"{weights}: not found; run the earlier step first (make convert)")
    model = build_classifier(model_cfg)
    model.load_weights(str(weights))
    return model


def teacher_config(cfg: KitConfig) -> ModelConfig:
    folder = ck.resolve_checkpoint(cfg.checkpoint)
    return cfg.model.apply(ck.from_hf_config(ck.read_hf_config(folder), cfg.model.max_seq_len, teacher_pooling(cfg, folder)))


def trained_teacher(cfg: KitConfig):
    """(encoded splits, the teacher fine-tuned earlier in work_dir, its ModelConfig): what every
    step and sweep after `convert` starts from."""
    ctx = prepare(cfg, ck.resolve_checkpoint(cfg.checkpoint))
    teacher_cfg = teacher_config(cfg)
    return ctx, load_trained(cfg, teacher_cfg, "teacher"), teacher_cfg


def run_distill(cfg: KitConfig, ctx: Context, teacher, teacher_cfg: ModelConfig, calibration, resume=False):
    """Student (+ the alpha = 1 ablation when cfg.distill.run_ablation) -> (student, its config, entries, report)."""
    train, dev = train_dev(ctx)
    print(f"distilling a {cfg.distill.num_layers}-layer student (alpha {cfg.distill.alpha}, T {cfg.distill.temperature})"
          f"{on_replicas(ctx.strategy)}", flush=True)
    student, student_cfg, state = distill(teacher, teacher_cfg, train, dev, cfg.distill, Path(cfg.work_dir) / "student",
                                          resume=resume, mask_id=token_id(ctx.vocab), strategy=ctx.strategy)
    report = {"alpha": cfg.distill.alpha, "temperature": cfg.distill.temperature,
              "teacher_layers": initialised_from(teacher_cfg, student_cfg),
              "distilled": {"best_dev_accuracy": state["best_dev_accuracy"], **keras_test_metrics(student, ctx)}}
    if cfg.distill.run_ablation:
        report["hard_labels"] = run_ablation(cfg, ctx, teacher, teacher_cfg, resume)
    entries = export_variants(student, student_cfg, "student", ctx, cfg, STUDENT_QUANTIZATIONS, calibration)
    return student, student_cfg, entries, report


def run_ablation(cfg: KitConfig, ctx: Context, teacher, teacher_cfg: ModelConfig, resume=False) -> dict:
    """The same student trained on hard labels only (alpha = 1) -> its dev and test metrics."""
    train, dev = train_dev(ctx)
    print("ablation: the same student on hard labels only (alpha = 1)", flush=True)
    # No teacher at all: the original sentences only (no teacher-labelled augmented copies).
    hard, _, state = distill(teacher, teacher_cfg, train, dev, replace(cfg.distill, augment_copies=0, hidden_weight=0.0),
                             Path(cfg.work_dir) / "student_hard", alpha=1.0, resume=resume)
    return {"best_dev_accuracy": state["best_dev_accuracy"], **keras_test_metrics(hard, ctx)}


def ablation_report(cfg: KitConfig, resume=False) -> dict:
    """`make ablation`: the distilled student of work_dir vs the same student on hard labels only."""
    ctx, teacher, teacher_cfg = trained_teacher(cfg)
    student = load_trained(cfg, student_config(teacher_cfg, cfg.distill), "student")
    state = json.loads((Path(cfg.work_dir) / "student" / "state.json").read_text())
    report = {"alpha": cfg.distill.alpha, "temperature": cfg.distill.temperature,
              "epochs": cfg.distill.train.epochs,
              "distilled": {"best_dev_accuracy": state["best_dev_accuracy"], **keras_test_metrics(student, ctx)},
              "hard_labels": run_ablation(cfg, ctx, teacher, teacher_cfg, resume)}
    write_json_atomic(Path(cfg.work_dir) / "report_ablation.json", report)
    return report


def distillation_targets(cfg: KitConfig, teacher, train: tuple, cache_dir: Path | None = None):
    """(inputs, [label | teacher logits]) and the distillation loss, for fine-tunes after distill.

    cache_dir: where the logits are cached (default: the work dir, the teacher's cache)."""
    inputs, labels = train
    targets, loss = distillation_data(teacher, inputs, labels, cache_dir or Path(cfg.work_dir), cfg.distill.alpha,
                                      cfg.distill.temperature)
    return (inputs, targets), loss


def run_qat(cfg: KitConfig, ctx: Context, model, model_cfg: ModelConfig, calibration, teacher, resume=False,
            prefix: str = "student"):
    """<prefix>-qat-int8: a short QAT fine-tune on the distillation loss, then full int8.

    The target's logits come from the float teacher (cfg.qat.target "teacher") or from the float
    model being quantized ("self": QAT learns to match its own float model, not to learn more).
    For the teacher both are the same."""
    train, dev = train_dev(ctx)
    work = Path(cfg.work_dir) / f"{prefix}_qat"
    source = teacher if cfg.qat.target == QatTarget.TEACHER else model
    print(f"quantization-aware training of the {prefix} (distillation loss from the float "
          f"{'teacher' if source is teacher else prefix})", flush=True)
    train, loss = distillation_targets(cfg, source, train, None if source is teacher else work)
    qat_cfg = cfg.qat if prefix != "student" else replace(cfg.qat, train=replace(cfg.qat.train,
                                                                                   epochs=cfg.qat.student_epochs))
    quantized, state = qat(model, train, dev, qat_cfg, work, resume=resume, loss=loss)
    # The fine-tuned weights, converted like post-training int8 (see converter.compress.qat: trained_float).
    entries = export_variants(trained_float(quantized, model), model_cfg, f"{prefix}-qat", ctx, cfg, (Quantization.INT8,),
                              calibration)
    return entries, {"best_dev_accuracy": state["best_dev_accuracy"]}


def run_prune(cfg: KitConfig, ctx: Context, model, model_cfg: ModelConfig, prefix: str, calibration,
              quantizations=PRUNED_QUANTIZATIONS, with_pqat: bool = False, resume=False):
    """Prune `model` to the target sparsity; export; optionally add prune-preserving QAT."""
    train, dev = train_dev(ctx)
    tag = f"{prefix}-pruned{round(cfg.prune.target_sparsity * 100)}"
    print(f"{tag}: magnitude pruning to {cfg.prune.target_sparsity:.0%} of encoder Dense weights", flush=True)
    pruned, state = prune(model, train, dev, cfg.prune, Path(cfg.work_dir) / tag.replace("-", "_"), resume=resume)
    entries = export_variants(pruned, model_cfg, tag, ctx, cfg, quantizations, calibration)
    report = {"best_dev_accuracy": state["best_dev_accuracy"],
              "keras_kernel_sparsity_mean": sum(state["kernel_sparsity"].values()) / len(state["kernel_sparsity"])}
    if with_pqat:
        print(f"{tag}: prune-preserving quantization-aware training", flush=True)
        pqat, _ = qat(pruned, train, dev, cfg.qat, Path(cfg.work_dir) / f"{tag}_pqat".replace("-", "_"),
                      preserve_sparsity=True, resume=resume)
        entries += export_variants(pqat, model_cfg, f"{tag}-pqat", ctx, cfg, (Quantization.INT8,), calibration)
    return entries, report


def run_compression(cfg: KitConfig, ctx: Context, teacher, teacher_cfg: ModelConfig, calibration, resume=False):
    """All compression steps in order -> (entries, report); the report lands in work_dir/report.json."""
    student, student_cfg, entries, report = run_distill(cfg, ctx, teacher, teacher_cfg, calibration, resume)
    report = {"distillation": report}
    qat_entries, report["qat"] = run_qat(cfg, ctx, student, student_cfg, calibration, teacher, resume)
    if cfg.qat.teacher:
        teacher_qat, report["teacher_qat"] = run_qat(cfg, ctx, teacher, teacher_cfg, calibration, teacher, resume,
                                                     prefix="teacher")
        qat_entries += teacher_qat
    teacher_entries, report["teacher_pruning"] = run_prune(cfg, ctx, teacher, teacher_cfg, "teacher", calibration,
                                                           resume=resume)
    student_entries, report["student_pruning"] = run_prune(cfg, ctx, student, student_cfg, "student", calibration,
                                                           quantizations=(Quantization.INT8,), with_pqat=True, resume=resume)
    entries += qat_entries + teacher_entries + student_entries
    if cfg.slim.enabled:
        slim_entries, report["slim"] = run_slim(cfg, ctx, teacher, teacher_cfg, student, student_cfg, calibration, resume)
        entries += slim_entries
    write_json_atomic(Path(cfg.work_dir) / "report.json", report)
    return entries, report


def run_step(cfg: KitConfig, step: str, target: str = "teacher", resume: bool = False) -> dict:
    """One compression step on models fine-tuned earlier in work_dir; its entries join the bundle."""
    try:
        target = ModelRole(target)
    except ValueError:
        raise ConfigError(f"--model must be teacher or student, not {target!r}") from None
    ctx, teacher, teacher_cfg = trained_teacher(cfg)
    calibration = calibration_inputs(ctx.splits["train"], cfg.export.num_calibration_examples, cfg.export.calibration_seed)
    if step == "distill":
        entries = run_distill(cfg, ctx, teacher, teacher_cfg, calibration, resume)[2]
    elif step == "slim":
        student_cfg = student_config(teacher_cfg, cfg.distill)
        entries, report = run_slim(cfg, ctx, teacher, teacher_cfg, load_trained(cfg, student_cfg, "student"),
                                   student_cfg, calibration, resume)
        write_json_atomic(Path(cfg.work_dir) / "report_slim.json", report)
    else:
        student_cfg = student_config(teacher_cfg, cfg.distill)
        model, model_cfg = ((teacher, teacher_cfg) if target == ModelRole.TEACHER
                            else (load_trained(cfg, student_cfg, "student"), student_cfg))
        if step == "qat":
            entries = run_qat(cfg, ctx, model, model_cfg, calibration, teacher, resume, prefix=target)[0]
        elif step == "prune":
            entries = run_prune(cfg, ctx, model, model_cfg, target, calibration, with_pqat=target == ModelRole.STUDENT,
                                quantizations=PRUNED_QUANTIZATIONS if target == ModelRole.TEACHER else (Quantization.INT8,),
                                resume=resume)[0]
        else:
            raise ConfigError(f"unknown step {step!r}")
    story = teacher_story(cfg)
    return write_bundle(Path(cfg.out_dir), entries, ctx.vocab, LABELS, cfg.model.max_seq_len, ctx.do_lower_case,
                        **shipping(cfg, ctx, story, as_is=story is not None))
