"""`python -m converter`: thin Typer commands; each builds KitConfig, calls one job, prints a summary.

Defaults come from KitConfig; the options every command shares are declared once below."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from converter.config import EmbeddingWeights, KitConfig, ModelRole, Pooling, QatTarget, Strategy, with_overrides
from converter.errors import KitError
from converter.quiet import PARKING, native_output_parked
from device_runtime.errors import BundleInputError
from device_runtime.format import Quantization

KIT = KitConfig()  # every default shown by --help

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Host converter: HF BERT -> fine-tuned, compressed TFLite bundle.")

Checkpoint = Annotated[str, typer.Option(help="'minilm' (packaged), a local HF folder, or a hub id")]
Data = Annotated[Path | None, typer.Option(help="split folder ({train,dev,test}.tsv) or FPB release folder")]
Out = Annotated[Path, typer.Option(help="bundle folder")]
WorkDir = Annotated[Path, typer.Option(help="checkpoints and intermediate files")]
SeqLen = Annotated[int, typer.Option(help="fixed sequence length of the exported models")]
Resume = Annotated[bool, typer.Option(help="continue an interrupted run from --work-dir")]
Model = Annotated[ModelRole, typer.Option(help="which model of --work-dir")]
Epochs = Annotated[int | None, typer.Option(help="override the step's epochs (quick runs)")]
DefaultModel = Annotated[str, typer.Option(help="the bundle's default model by name, instead of the rule on dev")]
BudgetMb = Annotated[float, typer.Option(help="default model: its files at most this many MB (0: no budget)")]
StrategyOption = Annotated[Strategy, typer.Option(
    help="tf.distribute for the teacher fine-tune and the distillation: mirrored (GPUs, or --cpu-replicas), "
         "multiworker (TF_CONFIG)")]
CpuReplicas = Annotated[int, typer.Option(help="--strategy mirrored without GPUs: split the CPU into N devices (tests)")]
Tolerance = Annotated[float | None, typer.Option(
    help="default model: dev accuracy within this many points of the best (default: one standard error)")]


def quiet_frameworks(verbose: bool = False) -> None:
    """TensorFlow, absl, CUDA and transformers start-up lines off (before TensorFlow is imported)."""
    PARKING["on"] = not verbose
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ logs: errors too (the CUDA probe's cuInit line)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # "PyTorch was not found": tokenizers only here
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.getLogger("absl").setLevel(logging.ERROR)
    # The converter's calibration debugger builds tf.lite.Interpreter objects; the kit's own runs use LiteRT.
    warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated", category=UserWarning)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def import_frameworks_quietly() -> None:
    """Import TensorFlow once with the native output parked: the CUDA probe and oneDNN write lines
    before absl's logging starts, which no log level reaches. An import error still shows."""
    if "tensorflow" in sys.modules:
        return
    with native_output_parked():
        import tensorflow  # noqa: F401
        import tf_keras  # noqa: F401


def command(fn):
    """app.command(), with TensorFlow imported quietly before the command's body imports the jobs."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        import_frameworks_quietly()
        try:
            return fn(*args, **kwargs)
        finally:
            PARKING["on"] = False  # in-process callers (tests, notebooks) get native output back
    return app.command()(run)


@app.callback()
def _options(verbose: Annotated[bool, typer.Option(help="show TensorFlow's and absl's own log lines")] = False):
    quiet_frameworks(verbose)


def _config(checkpoint: str, data: Path | None, out: Path, work_dir: Path, seq_len: int, **finetune) -> KitConfig:
    """KitConfig from the shared options; a bad value is one error line, before any model loads."""
    return _run(_build_config, checkpoint, data, out, work_dir, seq_len, finetune)


def _build_config(checkpoint: str, data: Path | None, out: Path, work_dir: Path, seq_len: int, finetune: dict):
    cfg = dataclasses.replace(KIT, checkpoint=checkpoint, out_dir=str(out), work_dir=str(work_dir))
    cfg = with_overrides(cfg, "model", max_seq_len=seq_len)
    if data is not None:
        cfg = with_overrides(cfg, "data", data_dir=str(data))
    changes = {k: v for k, v in finetune.items() if v is not None}
    return with_overrides(cfg, "finetune", **changes) if changes else cfg


def _override(cfg: KitConfig, section: str, **changes) -> KitConfig:
    """with_overrides, a bad value reported as one error line."""
    return _run(lambda: with_overrides(cfg, section, **changes))


def _with_epochs(cfg: KitConfig, section: str, epochs: int | None, key: str = "train") -> KitConfig:
    """cfg with one fine-tune schedule's epochs replaced (None: unchanged)."""
    if epochs is None:
        return cfg
    schedule = getattr(getattr(cfg, section), key)
    return _run(lambda: with_overrides(cfg, section, **{key: dataclasses.replace(schedule, epochs=epochs)}))


def _run(job, *args):
    """Run a job; the kit's deliberate errors become one line on stderr and exit code 1.

    Anything else (a plain ValueError, KeyError, ...) is a bug and propagates with its traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return job(*args)
    except (KitError, BundleInputError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


@command
def convert(
    checkpoint: Checkpoint = KIT.checkpoint, data: Data = None, out: Out = Path(KIT.out_dir),
    work_dir: WorkDir = Path(KIT.work_dir), seq_len: SeqLen = KIT.model.max_seq_len,
    epochs: int | None = None, batch_size: int | None = None, learning_rate: float | None = None,
    seed: Annotated[int | None, typer.Option(help=f"teacher fine-tuning seed (default {KIT.finetune.seed})")] = None,
    max_train_examples: Annotated[int | None, typer.Option(help="cap training rows (quick runs)")] = None,
    resume: Resume = False,
    teacher_only: Annotated[bool, typer.Option(help="skip distillation, QAT and pruning")] = False,
    student_layers: Annotated[int, typer.Option(help="encoder layers of the distilled student")] = KIT.distill.num_layers,
    compress_epochs: Annotated[int | None, typer.Option(help="epochs of every compression step (quick runs)")] = None,
    pooling: Annotated[Pooling, typer.Option(help="auto: the checkpoint's (mean for sentence-transformers)")] = KIT.pooling,
    default_model: DefaultModel = KIT.bundle.default_model, budget_mb: BudgetMb = KIT.bundle.budget_mb,
    tolerance_points: Tolerance = KIT.bundle.tolerance_points,
    teacher_as_is: Annotated[bool | None, typer.Option(
        "--teacher-as-is/--fine-tune-teacher",
        help="use the checkpoint's own classifier as the teacher, labels mapped by name (default: when its "
             "id2label names negative, neutral and positive)", show_default=False)] = KIT.teacher_as_is,
    strategy: StrategyOption = KIT.strategy, cpu_replicas: CpuReplicas = KIT.cpu_replicas,
    lowbit: Annotated[bool, typer.Option(help="the int4w variants (8 conversions per model, bits chosen on dev)")]
    = KIT.slim.lowbit,
):
    """Fine-tune the teacher (or take a fine-tuned one as is), distill, prune, QAT; export, evaluate, write the bundle."""
    from converter.jobs.context import format_default, format_table
    from converter.jobs.convert import run_convert

    cfg = _config(checkpoint, data, out, work_dir, seq_len, epochs=epochs, batch_size=batch_size,
                  learning_rate=learning_rate, max_train_examples=max_train_examples, seed=seed)
    cfg = _run(lambda: dataclasses.replace(cfg, compress=not teacher_only, pooling=pooling, teacher_as_is=teacher_as_is,
                                           strategy=strategy, cpu_replicas=cpu_replicas))
    cfg = _override(cfg, "distill", num_layers=student_layers)
    cfg = _override(cfg, "slim", lowbit=lowbit)
    for section in ("distill", "prune", "qat"):
        cfg = _with_epochs(cfg, section, compress_epochs)
    if compress_epochs is not None:
        cfg = _override(cfg, "qat", student_epochs=compress_epochs)
    cfg = _override(cfg, "bundle", default_model=default_model, budget_mb=budget_mb, tolerance_points=tolerance_points)
    manifest = _run(run_convert, cfg, resume)
    typer.echo(f"{format_table(manifest)}\n{format_default(manifest)}")


@command
def export(
    checkpoint: Annotated[str, typer.Option(help="fine-tuned sequence-classification checkpoint folder")],
    out: Out = Path(KIT.out_dir), seq_len: SeqLen = KIT.model.max_seq_len,
    quantization: Annotated[str, typer.Option(help="comma-separated list")] = ",".join(KIT.export.quantizations),
    calibration_data: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                                          help="sentences for full int8 (.tsv/.csv or one per line)")] = None,
    data: Annotated[Path | None, typer.Option(help="split folder whose test.tsv scores each file")] = None,
    work_dir: WorkDir = Path(KIT.work_dir),
):
    """Export an already fine-tuned checkpoint without training."""
    from converter.jobs.context import format_table
    from converter.jobs.convert import run_export

    cfg = _config(checkpoint, data, out, work_dir, seq_len)
    quantizations = tuple(q.strip() for q in quantization.split(",") if q.strip())
    cfg = _override(cfg, "export", quantizations=quantizations)  # validated before the model loads
    typer.echo(format_table(_run(run_export, cfg, cfg.export.quantizations, calibration_data)))


@command
def distill(
    checkpoint: Checkpoint = KIT.checkpoint, data: Data = None, out: Out = Path(KIT.out_dir),
    work_dir: WorkDir = Path(KIT.work_dir), seq_len: SeqLen = KIT.model.max_seq_len,
    layers: Annotated[int, typer.Option(help="student encoder layers")] = KIT.distill.num_layers,
    alpha: Annotated[float, typer.Option(help="weight of the hard-label loss")] = KIT.distill.alpha,
    temperature: float = KIT.distill.temperature,
    ablation: Annotated[bool, typer.Option(help="also train on hard labels only (alpha = 1); see `ablation`")] = False,
    resume: Resume = False, strategy: StrategyOption = KIT.strategy, cpu_replicas: CpuReplicas = KIT.cpu_replicas,
):
    """Distill a student from the teacher fine-tuned by `convert` (reads --work-dir, adds to the bundle)."""
    from converter.jobs.compression import run_step
    from converter.jobs.context import format_table

    cfg = _config(checkpoint, data, out, work_dir, seq_len)
    cfg = _run(lambda: dataclasses.replace(cfg, strategy=strategy, cpu_replicas=cpu_replicas))
    cfg = _override(cfg, "distill", num_layers=layers, alpha=alpha, temperature=temperature, run_ablation=ablation)
    typer.echo(format_table(_run(run_step, cfg, "distill", "student", resume)))


@command
def ablation(
    checkpoint: Checkpoint = KIT.checkpoint, data: Data = None, work_dir: WorkDir = Path(KIT.work_dir),
    seq_len: SeqLen = KIT.model.max_seq_len,
    layers: Annotated[int, typer.Option(help="student encoder layers (as distilled)")] = KIT.distill.num_layers,
    epochs: Epochs = None, resume: Resume = False,
):
    """Train the distilled student of --work-dir again on hard labels only (alpha = 1); print both."""
    from converter.jobs.compression import ablation_report

    cfg = _override(_config(checkpoint, data, Path(KIT.out_dir), work_dir, seq_len), "distill", num_layers=layers)
    report = _run(ablation_report, _with_epochs(cfg, "distill", epochs), resume)
    typer.echo(f"{'student (Keras, float)':<38} {'dev acc':>8} {'test acc':>8} {'macro-F1':>8} {'AllAgree':>8}")
    for key, name in (("distilled", f"distilled (alpha {report['alpha']}, T {report['temperature']})"),
                      ("hard_labels", "hard labels only (alpha 1)")):
        row = report[key]
        typer.echo(f"{name:<38} {row['best_dev_accuracy']:>8.4f} {row['test']['accuracy']:>8.4f} "
                   f"{row['test']['macro_f1']:>8.4f} {row.get('test_allagree', {}).get('accuracy', float('nan')):>8.4f}")
    typer.echo(f"written: {Path(work_dir) / 'report_ablation.json'}")


@command
def prune(
    checkpoint: Checkpoint = KIT.checkpoint, data: Data = None, out: Out = Path(KIT.out_dir),
    work_dir: WorkDir = Path(KIT.work_dir), seq_len: SeqLen = KIT.model.max_seq_len, model: Model = ModelRole.TEACHER,
    target_sparsity: float = KIT.prune.target_sparsity, resume: Resume = False,
):
    """Magnitude-prune the teacher or student with TF-MOT (student: plus prune-preserving QAT)."""
    from converter.jobs.compression import run_step
    from converter.jobs.context import format_table

    cfg = _override(_config(checkpoint, data, out, work_dir, seq_len), "prune", target_sparsity=target_sparsity)
    typer.echo(format_table(_run(run_step, cfg, "prune", model, resume)))


@command
def qat(
    checkpoint: Checkpoint = KIT.checkpoint, data: Data = None, out: Out = Path(KIT.out_dir),
    work_dir: WorkDir = Path(KIT.work_dir), seq_len: SeqLen = KIT.model.max_seq_len, resume: Resume = False,
    model: Model = ModelRole.STUDENT,
    target: Annotated[QatTarget, typer.Option(help="whose float logits QAT learns")] = KIT.qat.target,
):
    """Quantization-aware fine-tune of the distilled student (or the teacher), exported as full int8."""
    from converter.jobs.compression import run_step
    from converter.jobs.context import format_table

    cfg = _override(_config(checkpoint, data, out, work_dir, seq_len), "qat", target=target)
    typer.echo(format_table(_run(run_step, cfg, "qat", model, resume)))


@command
def slim(
    checkpoint: Checkpoint = KIT.checkpoint, data: Data = None, out: Out = Path(KIT.out_dir),
    work_dir: WorkDir = Path(KIT.work_dir), seq_len: SeqLen = KIT.model.max_seq_len,
    keep_heads: Annotated[float, typer.Option(help="student-structured: share of heads kept per layer")] = KIT.slim.keep_heads,
    keep_ffn: Annotated[float, typer.Option(help="student-structured: share of FFN neurons kept")] = KIT.slim.keep_ffn,
    slim_keep_heads: Annotated[float, typer.Option(help="student-slim: share of heads kept")] = KIT.slim.slim_keep_heads,
    slim_keep_ffn: Annotated[float, typer.Option(help="student-slim: share of FFN neurons kept")] = KIT.slim.slim_keep_ffn,
    extra_text: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                                    help="unlabeled text whose frequent ids the compact table keeps")] = None,
    extra_top_k: int = KIT.slim.extra_top_k,
    min_count: Annotated[int, typer.Option(help="keep a training id seen this often")] = KIT.slim.min_count,
    embedding_rank: Annotated[int, typer.Option(help="rank of the slim model's word table")] = KIT.slim.embedding_rank,
    embedding_weights: Annotated[EmbeddingWeights, typer.Option(help="factorization row weights")] = KIT.slim.embedding_weights,
    unk_copy_prob: Annotated[float, typer.Option(help="slim recovery: [UNK] rate of the extra copy")] = KIT.slim.unk_copy_prob,
    bucket_quantization: Annotated[Quantization, typer.Option(help="quantization of the length-bucket files")] = (
        KIT.slim.bucket_quantization),
    slim_epochs: Annotated[int | None, typer.Option(help="recovery epochs of the slim model")] = None,
    resume: Resume = False,
):
    """Compact embeddings, structured pruning and length buckets for the distilled student."""
    from converter.jobs.compression import run_step
    from converter.jobs.context import format_table

    cfg = _override(_config(checkpoint, data, out, work_dir, seq_len), "slim", keep_heads=keep_heads,
               keep_ffn=keep_ffn, slim_keep_heads=slim_keep_heads, slim_keep_ffn=slim_keep_ffn,
               extra_text=str(extra_text or ""), extra_top_k=extra_top_k, min_count=min_count,
               embedding_rank=embedding_rank, embedding_weights=embedding_weights,
               unk_copy_prob=unk_copy_prob, bucket_quantization=bucket_quantization)
    cfg = _with_epochs(cfg, "slim", slim_epochs, key="slim_recovery")
    typer.echo(format_table(_run(run_step, cfg, "slim", "student", resume)))


@command
def mobile(
    bundle: Annotated[Path, typer.Option(help="bundle folder (written into)")] = Path(KIT.out_dir),
    model: Annotated[str | None, typer.Option(help="bundle model (default: the one `classify` uses)")] = None,
):
    """Write <model>.mediapipe.tflite, the model as MediaPipe Tasks' TextClassifier runs it, into the bundle."""
    from converter.export.mobile import export_mobile

    entry = _run(export_mobile, bundle, model)
    typer.echo(f"{entry['source_model']} -> {bundle / entry['file']} ({entry['bytes'] / 1e6:.2f} MB, "
               f"sha256 {entry['sha256'][:12]}); listed under `mobile` in {bundle / 'manifest.json'}")


def main():
    app()


if __name__ == "__main__":
    sys.exit(main())
