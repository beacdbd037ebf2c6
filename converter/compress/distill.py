"""Knowledge distillation: a smaller student BERT learns from the frozen teacher's cached logits.

total = alpha * CE(y, student) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from converter.config import DistillConfig, ModelConfig
from converter.data.augment import augment_ids
from converter.errors import ConfigError
from converter.files import save_npy_atomic, write_file_atomic, write_json_atomic
from converter.modeling import names
from converter.modeling.bert import build_classifier
from converter.train.finetune import fit_classifier, seed_everything

log = logging.getLogger(__name__)
SHARED_LAYERS = (names.WORD, names.POSITION, names.SEGMENT, names.EMBEDDINGS_NORM) + names.HEAD


@keras.utils.register_keras_serializable(package="converter")
class DistillationLoss(keras.losses.Loss):
    """y_true packs (batch, 1 + labels): the gold label, then the teacher's logits."""

    def __init__(self, alpha: float, temperature: float, name: str = "distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        self.alpha, self.temperature = alpha, temperature

    def call(self, y_true, y_pred):
        labels = tf.cast(y_true[:, 0], tf.int32)
        teacher = y_true[:, 1:]
        hard = keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        t = self.temperature
        teacher_log_probs = tf.nn.log_softmax(teacher / t, axis=-1)
        student_log_probs = tf.nn.log_softmax(y_pred / t, axis=-1)
        kl = tf.reduce_sum(tf.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1)
        return self.alpha * hard + (1.0 - self.alpha) * t * t * kl

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "temperature": self.temperature}


def student_config(teacher: ModelConfig, cfg: DistillConfig) -> ModelConfig:
    return replace(teacher, num_layers=cfg.num_layers, hidden_size=cfg.hidden_size or teacher.hidden_size,
                   num_heads=cfg.num_heads or teacher.num_heads,
                   intermediate_size=cfg.intermediate_size or teacher.intermediate_size)


def teacher_layer_map(num_teacher: int, num_student: int) -> list[int]:
    """Every k-th teacher layer, ending at the last one: 6 -> 3 gives [1, 3, 5]."""
    step = num_teacher / num_student
    return [round((i + 1) * step) - 1 for i in range(num_student)]


def initialised_from(teacher_cfg: ModelConfig, student_cfg: ModelConfig) -> list[int] | None:
    """The teacher layer each student layer starts from (teacher_layer_map), or None when the widths
    differ and the student starts at random."""
    same_width = (student_cfg.hidden_size, student_cfg.num_heads, student_cfg.intermediate_size) == (
        teacher_cfg.hidden_size, teacher_cfg.num_heads, teacher_cfg.intermediate_size)
    return teacher_layer_map(teacher_cfg.num_layers, student_cfg.num_layers) if same_width else None


def init_student(teacher, teacher_cfg: ModelConfig, student_cfg: ModelConfig) -> keras.Model:
    """Build the student; copy embeddings, mapped layers and head when the widths allow it."""
    student = build_classifier(student_cfg, name="student")
    layer_map = initialised_from(teacher_cfg, student_cfg)
    if layer_map is None:
        log.info("student widths differ from the teacher's: random initialisation")
        return student
    pairs = [(name, name) for name in SHARED_LAYERS]
    for s, t in enumerate(layer_map):
        pairs += [(names.block(s, part), names.block(t, part)) for part in names.BLOCK_WEIGHTED]
    for student_name, teacher_name in pairs:
        student.get_layer(student_name).set_weights(teacher.get_layer(teacher_name).get_weights())
    log.info("student initialised from teacher layers %s", layer_map)
    return student


def pack_targets(labels: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """(n, 1 + labels) float32: the gold label, then the teacher's logits (DistillationLoss's y_true)."""
    return np.concatenate([labels[:, None].astype(np.float32), teacher], axis=1)


TEACHER_LOGITS = "teacher_train_logits.npy"  # cached in the work dir
CACHE_PROBE_ROWS = 8


def distillation_data(teacher, inputs: list[np.ndarray], labels: np.ndarray, work: Path, alpha: float,
                      temperature: float, teacher_inputs: list[np.ndarray] | None = None,
                      teacher_rows: np.ndarray | None = None):
    """-> (targets [label | teacher logits], DistillationLoss) for any fine-tune that learns from the teacher.

    teacher_inputs: the same rows as the teacher reads them, when the student's ids differ
    (a compact embedding table reads mapped ids). teacher_rows: the teacher_inputs row that labels
    each training row, when several training rows are copies of one sentence (default: row i)."""
    soft = teacher_logits(teacher, teacher_inputs or inputs, Path(work) / TEACHER_LOGITS)
    return pack_targets(labels, soft if teacher_rows is None else soft[teacher_rows]), DistillationLoss(alpha, temperature)


def teacher_logits(teacher, inputs: list[np.ndarray], cache: Path) -> np.ndarray:
    """The frozen teacher's logits on the training inputs, computed once and cached.

    A cache is reused only if it has one row per input and its first rows match this teacher
    (a work dir reused with a retrained teacher must not feed the student the old teacher)."""
    logits = _read_cache(cache, (len(inputs[0]), teacher.output_shape[-1]))
    if logits is not None:
        probe = [x[:CACHE_PROBE_ROWS] for x in inputs]
        if np.allclose(teacher.predict(probe, verbose=0), logits[:CACHE_PROBE_ROWS], atol=1e-4):
            return logits
        log.info("%s: cached logits are not this teacher's on these inputs; recomputing", cache)
    logits = teacher.predict(inputs, batch_size=64, verbose=0).astype(np.float32)
    save_npy_atomic(cache, logits)
    return logits


def _read_cache(cache: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The cached (rows, labels) logits, or None (with a log line) when missing, unreadable, of
    another shape or not finite (a run killed mid-write by an older version, a disk error)."""
    if not cache.is_file():
        return None
    try:
        logits = np.load(cache)
    except (OSError, ValueError, EOFError) as err:
        log.info("%s: unreadable cache (%s); recomputing", cache, err)
        return None
    if logits.shape != shape or not np.isfinite(logits).all():
        log.info("%s: cache has shape %s (expected %s) or non-finite values; recomputing", cache, logits.shape, shape)
        return None
    return logits


def distill(teacher, teacher_cfg: ModelConfig, train: tuple, dev: tuple, cfg: DistillConfig, work_dir: Path,
            alpha: float | None = None, resume: bool = False, student=None, student_cfg: ModelConfig | None = None,
            teacher_inputs: list[np.ndarray] | None = None, mask_id: int | None = None,
            teacher_rows: np.ndarray | None = None, strategy=None):
    """Train a student on train=(inputs, labels) against the teacher -> (student, its ModelConfig, state).

    Without `student`, one is built from cfg and initialised from the teacher's layers; only such a
    student trains under `strategy` (converter.train.distribute), as its twin is built from cfg.
    teacher_inputs, teacher_rows: see distillation_data. mask_id: the vocabulary's [MASK] id, for cfg.augment_copies.
    """
    inputs, labels = train
    alpha = cfg.alpha if alpha is None else alpha
    targets, loss = distillation_data(teacher, inputs, labels, Path(work_dir).parent, alpha, cfg.temperature,
                                      teacher_inputs, teacher_rows)
    if cfg.augment_copies and teacher_inputs is None:
        inputs, targets = augmented(teacher, inputs, labels, targets, cfg, mask_id, Path(work_dir).parent)
    build = None
    if student is None:
        student_cfg = student_config(teacher_cfg, cfg)
        seed_everything(cfg.train.seed)  # random init when widths differ
        student = init_student(teacher, teacher_cfg, student_cfg)
        build = lambda: build_classifier(student_cfg, name="student")  # noqa: E731
        if cfg.hidden_weight:
            return _distill_hidden(teacher, teacher_cfg, student, student_cfg, (inputs, targets), dev, loss, cfg,
                                   work_dir, resume, strategy)
    elif strategy is not None:
        raise ValueError("distill: a student passed in trains on one device (strategy needs one built from cfg)")
    student, state = fit_classifier(student, (inputs, targets), dev, cfg.train, work_dir, loss=loss, resume=resume,
                                    strategy=strategy, build=build)
    return student, student_cfg, state


def _distill_hidden(teacher, teacher_cfg: ModelConfig, student, student_cfg: ModelConfig, train: tuple, dev: tuple,
                    loss, cfg: DistillConfig, work_dir: Path, resume: bool, strategy):
    """distill() with cfg.hidden_weight > 0: logits and hidden states (converter.compress.intermediate)."""
    from converter.compress.intermediate import HiddenStateLoss, teacher_hidden_targets, trainer_model
    from converter.train.finetune import dev_accuracy

    if strategy is not None:
        raise ConfigError("distill.hidden_weight > 0 trains on one device; use --strategy none")
    inputs, targets = train
    layer_map = teacher_layer_map(teacher_cfg.num_layers, student_cfg.num_layers)
    print(f"intermediate-layer distillation: student layers 0-{student_cfg.num_layers - 1} learn teacher layers "
          f"{layer_map} (hidden weight {cfg.hidden_weight})", flush=True)
    hidden = teacher_hidden_targets(teacher, teacher_cfg, layer_map, inputs)
    trainer = trainer_model(student, student_cfg, teacher_cfg.hidden_size)
    # The trainer (student + projections) checkpoints in its own folder; the student's own best weights
    # and state then go where every later step reads a student (load_trained).
    _, state = fit_classifier(trainer, (inputs, [targets, hidden]), dev, cfg.train, Path(work_dir) / "trainer",
                              loss=[loss, HiddenStateLoss(cfg.hidden_weight)], resume=resume,
                              score_fn=lambda _, x, y: dev_accuracy(student, x, y))
    write_file_atomic(Path(work_dir) / "best.weights.h5", lambda tmp: student.save_weights(str(tmp)))
    write_json_atomic(Path(work_dir) / "state.json", {**state, "trained_by": "trainer"})
    return student, student_cfg, state  # the trainer shares the student's layers: they hold the best epoch


def augmented(teacher, inputs: list[np.ndarray], labels: np.ndarray, targets: np.ndarray, cfg: DistillConfig,
              mask_id: int | None, work: Path):
    """Append cfg.augment_copies perturbed copies of the training rows, labelled by the teacher's logits."""
    if mask_id is None:
        raise ConfigError("distill.augment_copies > 0 needs the vocabulary's [MASK] id")
    ids, mask, rows = augment_ids(inputs[0], inputs[1], cfg.augment_copies, cfg.augment_mask_prob,
                                  cfg.augment_drop_prob, mask_id, cfg.train.seed)
    tag = f"{cfg.augment_copies}x_m{cfg.augment_mask_prob}_d{cfg.augment_drop_prob}_s{cfg.train.seed}"
    print(f"distillation data: {len(labels)} sentences + {len(rows)} augmented copies ({tag})", flush=True)
    soft = teacher_logits(teacher, [ids, mask], work / f"teacher_augmented_{tag}_logits.npy")
    return ([np.concatenate([inputs[0], ids]), np.concatenate([inputs[1], mask])],
            np.concatenate([targets, pack_targets(labels[rows], soft)]))
