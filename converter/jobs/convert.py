"""The end-to-end jobs behind `make convert` and `python -m converter export`."""

from __future__ import annotations

from pathlib import Path

from converter.config import LABELS, KitConfig
from converter.data.splits import load_splits, load_table
from converter.data.tokenize import encode, load_tokenizer
from converter.errors import ConfigError
from converter.export.bundle import read_manifest, write_bundle
from converter.files import write_file_atomic, write_json_atomic
from converter.jobs.compression import run_compression
from converter.jobs.context import (
    Context,
    calibration_inputs,
    export_variants,
    format_table,
    prepare,
    shipping,
    teacher_pooling,
    teacher_story,
    train_dev,
)
from converter.modeling import hf_weights as ck
from converter.modeling import names
from converter.modeling.bert import build_classifier
from converter.train.distribute import on_replicas
from converter.train.finetune import dev_accuracy, fit_classifier, seed_everything
from device_runtime.format import Key


def train_teacher(cfg: KitConfig, ctx: Context, resume: bool = False):
    """The teacher -> (model, ModelConfig, state): the checkpoint's own classifier when
    teacher_labels() says so, else fine-tuned here on the training split (resumable)."""
    folder = Path(cfg.work_dir) / "teacher"
    given = teacher_labels(cfg, ctx.folder)
    if given is not None:
        return given_teacher(cfg, ctx, given, folder)
    seed_everything(cfg.finetune.seed)  # the fresh classifier head is random: unseeded, every run differed
    pooling = teacher_pooling(cfg, ctx.folder) if resume else ck.resolve_pooling(cfg.pooling, ctx.folder)
    model, model_cfg, labels, _ = ck.build_from_checkpoint(cfg.checkpoint, cfg.model.max_seq_len,
                                                           allow_fresh=names.HEAD, pooling=pooling, options=cfg.model)
    ck.to_kit_order(model, labels)  # a head of the checkpoint's own, in another order, starts mapped by name
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "head.json", {"pooling": pooling}, indent=None)
    train, dev = train_dev(ctx)
    print(f"fine-tuning teacher: {len(train[1])} train / {len(dev[1])} dev sentences, "
          f"{cfg.finetune.epochs} epochs{on_replicas(ctx.strategy)}", flush=True)
    model, state = fit_classifier(model, train, dev, cfg.finetune, folder, resume=resume,
                                  strategy=ctx.strategy, build=lambda: build_classifier(model_cfg))
    return model, model_cfg, state


def teacher_labels(cfg: KitConfig, folder: Path) -> tuple[str, ...] | None:
    """The checkpoint's label order when its own classifier is the teacher as given, else None.

    cfg.teacher_as_is None (auto): as given when the checkpoint has a classifier whose id2label names
    negative, neutral and positive in any order. True: the same, and anything else is one error line
    naming the labels or the missing head. False: always fine-tune."""
    if cfg.teacher_as_is is False:
        return None
    hf = ck.read_hf_config(folder)
    labels, head = ck.named_labels(hf), ck.has_classifier(folder)
    if cfg.teacher_as_is is None:
        return labels if head else None
    if not head:
        raise ck.CheckpointError(f"{folder}: --teacher-as-is needs a sequence-classification checkpoint "
                                 "(classifier.weight and classifier.bias); this one has no classifier")
    if labels is None:
        raise ck.CheckpointError(f"{folder / 'config.json'}: --teacher-as-is maps the classifier's outputs to "
                                 f"{', '.join(LABELS)} by name, but {ck.label_mismatch(hf)}")
    return labels


def given_teacher(cfg: KitConfig, ctx: Context, labels: tuple[str, ...], folder: Path):
    """The checkpoint's classifier as it is, its outputs mapped to LABELS by name; saved in work_dir
    as the teacher, as a fine-tune would leave it, for the steps after it."""
    model, model_cfg, _, _ = ck.build_from_checkpoint(cfg.checkpoint, cfg.model.max_seq_len, pooling="cls",
                                                      options=cfg.model)
    ck.to_kit_order(model, labels)
    folder.mkdir(parents=True, exist_ok=True)
    write_file_atomic(folder / "best.weights.h5", lambda tmp: model.save_weights(str(tmp)))
    write_json_atomic(folder / "head.json", {"pooling": "cls", "as_is": True, "labels": list(labels)}, indent=None)
    _, dev = train_dev(ctx)
    state = {"as_is": True, "labels": list(labels), "best_dev_accuracy": dev_accuracy(model, *dev)}
    print(f"teacher: the checkpoint's own classifier, used as given (labels {', '.join(labels)} mapped to "
          f"{', '.join(LABELS)} by name); dev accuracy {state['best_dev_accuracy']:.4f}", flush=True)
    return model, model_cfg, state


def run_convert(cfg: KitConfig, resume: bool = False) -> dict:
    """Fine-tune the teacher, export its variants; then (cfg.compress) the compressed models. One bundle."""
    folder = ck.resolve_checkpoint(cfg.checkpoint)
    ctx = prepare(cfg, folder)
    model, model_cfg, _ = train_teacher(cfg, ctx, resume)
    calibration = calibration_inputs(ctx.splits["train"], cfg.export.num_calibration_examples, cfg.export.calibration_seed)
    entries = export_variants(model, model_cfg, "teacher", ctx, cfg, calibration=calibration)
    # A fresh bundle (nothing kept from an earlier run), usable from here on; compression adds to it.
    story = teacher_story(cfg)  # None: the teacher was fine-tuned here
    manifest = write_bundle(Path(cfg.out_dir), entries, ctx.vocab, LABELS, model_cfg.max_seq_len, ctx.do_lower_case,
                            keep_existing=False, **shipping(cfg, ctx, story, trains=story is None, as_is=story is not None))
    if cfg.compress:
        print(f"teacher bundle written to {cfg.out_dir}/:\n{format_table(manifest)}\ncompression next", flush=True)
        entries = run_compression(cfg, ctx, model, model_cfg, calibration, resume)[0]
        manifest = write_bundle(Path(cfg.out_dir), entries, ctx.vocab, LABELS, model_cfg.max_seq_len,
                                ctx.do_lower_case, **shipping(cfg, ctx, story, as_is=story is not None))
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
                        **shipping(cfg, ctx, teacher="the checkpoint as given (not trained by the kit)", trains=False))


