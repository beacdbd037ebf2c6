"""`python -m converter`: thin Typer commands; each builds KitConfig, calls one job, prints a summary."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path

import typer

from converter.config import KitConfig, with_overrides

SLIM = KitConfig().slim  # the slim command's defaults

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Host converter: HF BERT -> fine-tuned, compressed TFLite bundle.")


def _config(checkpoint: str, data: Path | None, out: Path, work_dir: Path, seq_len: int, **finetune) -> KitConfig:
    cfg = KitConfig(checkpoint=checkpoint, out_dir=str(out), work_dir=str(work_dir))
    cfg = with_overrides(cfg, "model", max_seq_len=seq_len)
    if data is not None:
        cfg = with_overrides(cfg, "data", data_dir=str(data))
    changes = {k: v for k, v in finetune.items() if v is not None}
    return with_overrides(cfg, "finetune", **changes) if changes else cfg


def _run(job, *args):
    """Run a job; the kit's deliberate errors become one line on stderr and exit code 1.

    Anything else (a plain ValueError, KeyError, ...) is a bug and propagates with its traceback."""
    from converter.errors import KitError
    from device_runtime.errors import BundleInputError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return job(*args)
    except (KitError, BundleInputError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


@app.command()
def convert(
    checkpoint: str = typer.Option("minilm", help="'minilm' (packaged), a local HF folder, or a hub id"),
    data: Path | None = typer.Option(None, help="split folder ({train,dev,test}.tsv) or FPB release folder"),
    out: Path = typer.Option(Path("dist"), help="bundle folder"),
    work_dir: Path = typer.Option(Path("work"), help="checkpoints and intermediate files"),
    seq_len: int = typer.Option(64, help="fixed sequence length of the exported models"),
    epochs: int | None = typer.Option(None), batch_size: int | None = typer.Option(None),
    learning_rate: float | None = typer.Option(None),
    seed: int | None = typer.Option(None, help="teacher fine-tuning seed (default: chosen on dev, see README)"),
    max_train_examples: int | None = typer.Option(None, help="cap training rows (quick runs)"),
    resume: bool = typer.Option(False, help="continue an interrupted run from work_dir"),
    teacher_only: bool = typer.Option(False, help="skip distillation, QAT and pruning"),
    student_layers: int = typer.Option(3, help="encoder layers of the distilled student"),
    compress_epochs: int | None = typer.Option(None, help="epochs of every compression step (quick runs)"),
    pooling: str = typer.Option("cls", help="cls, mean, or auto (the checkpoint's: mean for sentence-transformers)"),
):
    """Fine-tune the teacher, distill, prune, QAT; export every variant, evaluate, write the bundle."""
    from converter.jobs.context import format_table
    from converter.jobs.convert import run_convert

    cfg = _config(checkpoint, data, out, work_dir, seq_len, epochs=epochs, batch_size=batch_size,
                  learning_rate=learning_rate, max_train_examples=max_train_examples, seed=seed)
    cfg = with_overrides(dataclasses.replace(cfg, compress=not teacher_only, pooling=pooling), "distill",
                         num_layers=student_layers)
    if compress_epochs is not None:
        for section in ("distill", "prune", "qat"):
            part = getattr(cfg, section)
            cfg = with_overrides(cfg, section, train=dataclasses.replace(part.train, epochs=compress_epochs))
        cfg = with_overrides(cfg, "qat", student_epochs=compress_epochs)
    manifest = _run(run_convert, cfg, resume)
    typer.echo(format_table(manifest))


@app.command()
def export(
    checkpoint: str = typer.Option(..., help="fine-tuned sequence-classification checkpoint folder"),
    out: Path = typer.Option(Path("dist"), help="bundle folder"),
    seq_len: int = typer.Option(64),
    quantization: str = typer.Option("float32,dynamic,float16,int8", help="comma-separated list"),
    calibration_data: Path | None = typer.Option(None, help="sentences for full int8 (.tsv/.csv or one per line)"),
    data: Path | None = typer.Option(None, help="split folder whose test.tsv scores each file"),
    work_dir: Path = typer.Option(Path("work")),
):
    """Export an already fine-tuned checkpoint without training."""
    from converter.jobs.context import format_table
    from converter.jobs.convert import run_export

    cfg = _config(checkpoint, data, out, work_dir, seq_len)
    quantizations = tuple(q.strip() for q in quantization.split(",") if q.strip())
    manifest = _run(run_export, cfg, quantizations, calibration_data)
    typer.echo(format_table(manifest))


@app.command()
def distill(
    checkpoint: str = typer.Option("minilm", help="the checkpoint convert started from"),
    data: Path | None = typer.Option(None), out: Path = typer.Option(Path("dist")),
    work_dir: Path = typer.Option(Path("work")), seq_len: int = typer.Option(64),
    layers: int = typer.Option(3, help="student encoder layers"),
    alpha: float = typer.Option(0.1, help="weight of the hard-label loss"), temperature: float = typer.Option(2.0),
    ablation: bool = typer.Option(False, help="also train on hard labels only (alpha = 1); see `ablation`"),
    resume: bool = typer.Option(False),
):
    """Distill a student from the teacher fine-tuned by `convert` (reads --work-dir, adds to the bundle)."""
    from converter.jobs.compression import run_step
    from converter.jobs.context import format_table

    cfg = with_overrides(_config(checkpoint, data, out, work_dir, seq_len), "distill", num_layers=layers, alpha=alpha,
                         temperature=temperature, run_ablation=ablation)
    typer.echo(format_table(_run(run_step, cfg, "distill", "student", resume)))


@app.command()
def ablation(
    checkpoint: str = typer.Option("minilm", help="the checkpoint convert started from"),
    data: Path | None = typer.Option(None), work_dir: Path = typer.Option(Path("work")),
    seq_len: int = typer.Option(64), layers: int = typer.Option(3, help="student encoder layers (as distilled)"),
    epochs: int | None = typer.Option(None, help="student epochs (default: the config's, as convert used)"),
    resume: bool = typer.Option(False),
):
    """Train the distilled student of --work-dir again on hard labels only (alpha = 1); print both."""
    from converter.jobs.compression import ablation_report

    cfg = with_overrides(_config(checkpoint, data, Path("dist"), work_dir, seq_len), "distill", num_layers=layers)
    if epochs is not None:
        cfg = with_overrides(cfg, "distill", train=dataclasses.replace(cfg.distill.train, epochs=epochs))
    report = _run(ablation_report, cfg, resume)
    typer.echo(f"{'student (Keras, float)':<38} {'dev acc':>8} {'test acc':>8} {'macro-F1':>8} {'AllAgree':>8}")
    for key, name in (("distilled", f"distilled (alpha {report['alpha']}, T {report['temperature']})"),
                      ("hard_labels", "hard labels only (alpha 1)")):
        row = report[key]
        typer.echo(f"{name:<38} {row['best_dev_accuracy']:>8.4f} {row['test']['accuracy']:>8.4f} "
                   f"{row['test']['macro_f1']:>8.4f} {row.get('test_allagree', {}).get('accuracy', float('nan')):>8.4f}")
    typer.echo(f"written: {Path(work_dir) / 'report_ablation.json'}")


@app.command()
def prune(
    checkpoint: str = typer.Option("minilm", help="the checkpoint convert started from"),
    data: Path | None = typer.Option(None), out: Path = typer.Option(Path("dist")),
    work_dir: Path = typer.Option(Path("work")), seq_len: int = typer.Option(64),
    model: str = typer.Option("teacher", help="teacher or student"),
    target_sparsity: float = typer.Option(0.5, help="0.5, 0.7 or 0.9"), resume: bool = typer.Option(False),
):
    """Magnitude-prune the teacher or student with TF-MOT (student: plus prune-preserving QAT)."""
    from converter.jobs.compression import run_step
    from converter.jobs.context import format_table

    cfg = with_overrides(_config(checkpoint, data, out, work_dir, seq_len), "prune", target_sparsity=target_sparsity)
    typer.echo(format_table(_run(run_step, cfg, "prune", model, resume)))


@app.command()
def qat(
    checkpoint: str = typer.Option("minilm", help="the checkpoint convert started from"),
    data: Path | None = typer.Option(None), out: Path = typer.Option(Path("dist")),
    work_dir: Path = typer.Option(Path("work")), seq_len: int = typer.Option(64), resume: bool = typer.Option(False),
    model: str = typer.Option("student", help="student or teacher"),
    target: str | None = typer.Option(None, help="whose float logits QAT learns: teacher or self (default: config)"),
):
    """Quantization-aware fine-tune of the distilled student (or the teacher), exported as full int8."""
    from converter.jobs.compression import run_step
    from converter.jobs.context import format_table

    cfg = _config(checkpoint, data, out, work_dir, seq_len)
    if target is not None:
        cfg = with_overrides(cfg, "qat", target=target)
    typer.echo(format_table(_run(run_step, cfg, "qat", model, resume)))


@app.command()
def slim(
    checkpoint: str = typer.Option("minilm", help="the checkpoint convert started from"),
    data: Path | None = typer.Option(None), out: Path = typer.Option(Path("dist")),
    work_dir: Path = typer.Option(Path("work")), seq_len: int = typer.Option(64),
    keep_heads: float = typer.Option(SLIM.keep_heads, help="student-structured: share of heads kept per layer"),
    keep_ffn: float = typer.Option(SLIM.keep_ffn, help="student-structured: share of FFN neurons kept per layer"),
    slim_keep_heads: float = typer.Option(SLIM.slim_keep_heads, help="student-slim: share of heads kept"),
    slim_keep_ffn: float = typer.Option(SLIM.slim_keep_ffn, help="student-slim: share of FFN neurons kept"),
    extra_text: str = typer.Option("", help="unlabeled text whose frequent ids the compact table keeps"),
    extra_top_k: int = typer.Option(0),
    min_count: int = typer.Option(SLIM.min_count, help="keep a training id seen this often"),
    embedding_rank: int = typer.Option(SLIM.embedding_rank, help="rank of the slim model's factorized word table"),
    embedding_weights: str = typer.Option(SLIM.embedding_weights, help="factorization row weights: counts or none"),
    unk_copy_prob: float = typer.Option(SLIM.unk_copy_prob, help="slim recovery: [UNK] rate of the extra copy (0 = off)"),
    bucket_quantization: str = typer.Option(SLIM.bucket_quantization, help="quantization of the length-bucket files"),
    slim_epochs: int = typer.Option(SLIM.slim_recovery.epochs, help="recovery epochs of the slim model"),
    resume: bool = typer.Option(False),
):
    """Compact embeddings, structured pruning and length buckets for the distilled student."""
    from converter.jobs.compression import run_step
    from converter.jobs.context import format_table

    cfg = with_overrides(_config(checkpoint, data, out, work_dir, seq_len), "slim", keep_heads=keep_heads,
                         keep_ffn=keep_ffn, slim_keep_heads=slim_keep_heads, slim_keep_ffn=slim_keep_ffn,
                         extra_text=extra_text, extra_top_k=extra_top_k, min_count=min_count,
                         embedding_rank=embedding_rank, embedding_weights=embedding_weights,
                         unk_copy_prob=unk_copy_prob, bucket_quantization=bucket_quantization)
    cfg = with_overrides(cfg, "slim", slim_recovery=dataclasses.replace(cfg.slim.slim_recovery, epochs=slim_epochs))
    typer.echo(format_table(_run(run_step, cfg, "slim", "student", resume)))


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app()


if __name__ == "__main__":
    sys.exit(main())
