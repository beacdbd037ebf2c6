"""The end-to-end jobs behind `make convert` and `python -m converter export`."""

from __future__ import annotations

from pathlib import Path

from converter.config import LABELS, KitConfig
from converter.data.splits import load_splits, load_table
from converter.data.tokenize import encode, load_tokenizer
from converter.errors import ConfigError
from converter.export.bundle import read_manifest, write_bundle
from converter.files import write_json_atomic
from converter.jobs.compression import run_compression
from converter.jobs.context import (
    Context,
    calibration_inputs,
    export_variants,
    format_table,
    prepare,
    shipping,
    teacher_pooling,
    train_dev,
)
from converter.modeling import hf_weights as ck
from converter.modeling import names
from converter.train.finetune import fit_classifier, seed_everything
from device_runtime.format import Key


def train_teacher(cfg: KitConfig, ctx: Context, resume: bool = False):
    folder = Path(cfg.work_dir) / "teacher"
    seed_everything(cfg.finetune.seed)  # the fresh classifier head is random: unseeded, every run differed
    pooling = teacher_pooling(cfg, ctx.folder) if resume else ck.resolve_pooling(cfg.pooling, ctx.folder)
    model, model_cfg, _, _ = ck.build_from_checkpoint(cfg.checkpoint, cfg.model.max_seq_len, allow_fresh=names.HEAD,
                                                      pooling=pooling, options=cfg.model)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "head.json", {"pooling": pooling}, indent=None)
    train, dev = train_dev(ctx)
    print(f"fine-tuning teacher: {len(train[1])} train / {len(dev[1])} dev sentences, "
          f"{cfg.finetune.epochs} epochs", flush=True)
    model, state = fit_classifier(model, train, dev, cfg.finetune, folder, resume=resume)
    return model, model_cfg, state


def run_convert(cfg: KitConfig, resume: bool = False) -> dict:
    """Fine-tune the teacher, export its variants; then (cfg.compress) the compressed models. One bundle."""
    folder = ck.resolve_checkpoint(cfg.checkpoint)
    ctx = prepare(cfg, folder)
    model, model_cfg, _ = train_teacher(cfg, ctx, resume)
    calibration = calibration_inputs(ctx.splits["train"], cfg.export.num_calibration_examples, cfg.export.calibration_seed)
    entries = export_variants(model, model_cfg, "teacher", ctx, cfg, calibration=calibration)
    # A fresh bundle (nothing kept from an earlier run), usable from here on; compression adds to it.
    manifest = write_bundle(Path(cfg.out_dir), entries, ctx.vocab, LABELS, model_cfg.max_seq_len, ctx.do_lower_case,
                            keep_existing=False, **shipping(cfg, ctx))
    if cfg.compress:
        print(f"teacher bundle written to {cfg.out_dir}/:\n{format_table(manifest)}\ncompression next", flush=True)
        entries = run_compression(cfg, ctx, model, model_cfg, calibration, resume)[0]
        manifest = write_bundle(Path(cfg.out_dir), entries, ctx.vocab, LABELS, model_cfg.max_seq_len,
                                ctx.do_lower_case, **shipping(cfg, ctx))
    if cfg.bundle.mobile:
        manifest = write_mobile(Path(cfg.out_dir))
    return manifest


def write_mobile(out_dir: Path) -> dict:
    """The default model as a MediaPipe file in the bundle (`python -m converter mobile`) -> the new manifest."""
    from converter.export.mobile import export_mobile

    entry = export_mobile(out_dir)
    print(f"mobile: {entry[Key.FILE]} ({entry[Key.BYTES] / 1e6:.1f} MB), MediaPipe TextClassifier file of "
          f"{entry['source_model']}", flush=True)
    return read_manifest(out_dir)


def read_calibration_texts(path: Path) -> list[str]:
    """Calibration sentences: a text,label table (.tsv/.csv) or one sentence per line."""
    path = Path(path)
    if path.suffix in (".tsv", ".csv"):
        return load_table(path).texts
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise ConfigError(f"{path}: no calibration sentences")
    return texts


def run_export(cfg: KitConfig, quantizations, calibration_file: Path | None) -> dict:
    """Export an already fine-tuned sequence-classification checkpoint without training."""
    model, model_cfg, labels, folder = ck.build_from_checkpoint(cfg.checkpoint, cfg.model.max_seq_len, options=cfg.model)
    data_dir = Path(cfg.data.data_dir)
    # dev (when the folder has one) fits the temperatures and picks the default model; test scores every file
    splits = {k: v for k, v in load_splits(cfg.data).items() if k in ("dev", "test")} if data_dir.is_dir() else {}
    ctx = prepare(cfg, folder, splits)
    calibration = None
    if calibration_file is not None:
        texts = read_calibration_texts(calibration_file)[: cfg.export.num_calibration_examples]
        calibration = encode(load_tokenizer(folder), texts, model_cfg.max_seq_len)
    entries = export_variants(model, model_cfg, "model", ctx, cfg, quantizations, calibration, labels)
    return write_bundle(Path(cfg.out_dir), entries, ctx.vocab, labels, model_cfg.max_seq_len, ctx.do_lower_case,
                        **shipping(cfg, ctx, teacher="the checkpoint as given (not trained by the kit)"))


