"""Fine-tune a classifier: AdamW with linear warmup/decay, best-on-dev selection, resumable epochs."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from converter.config import FinetuneConfig
from converter.errors import ResumeError
from converter.files import write_file_atomic, write_json_atomic
from converter.train.distribute import check_batch

log = logging.getLogger(__name__)


@keras.utils.register_keras_serializable(package="converter")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to peak over warmup_steps, then linear decay to 0 at total_steps."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak, self.warmup_steps, self.total_steps = peak, warmup_steps, total_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = step / max(1, self.warmup_steps)
        decay = (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps)
        return self.peak * tf.maximum(0.0, tf.minimum(warm, decay))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def seed_everything(seed: int) -> None:
    """Python, numpy and TF seeds. Called before a model with fresh layers is built and before
    training: on this CPU build, same seed + same thread count gives bit-identical weights."""
    keras.utils.set_random_seed(seed)


def make_optimizer(cfg: FinetuneConfig, steps_per_epoch: int, epochs: int | None = None):
    total = steps_per_epoch * (epochs or cfg.epochs)
    schedule = WarmupLinearDecay(cfg.learning_rate, int(total * cfg.warmup_fraction), total)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay, epsilon=1e-8)
    # Standard BERT practice: no weight decay on biases and LayerNorm parameters.
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


class EpochCheckpoint(keras.callbacks.Callback):
    """Each epoch: score dev, keep the best weights, save a resumable checkpoint and state.json."""

    def __init__(self, work_dir: Path, dev_inputs, dev_labels, state: dict, score_fn, first_candidate_epoch: int = 1):
        super().__init__()
        self.work_dir, self.dev_inputs, self.dev_labels = work_dir, dev_inputs, dev_labels
        self.state, self.score_fn, self.first_candidate = state, score_fn, first_candidate_epoch

    def on_epoch_end(self, epoch, logs=None):
        dev_acc = self.score_fn(self.model, self.dev_inputs, self.dev_labels)
        self.state["history"].append({"epoch": epoch + 1, "loss": float(logs.get("loss", np.nan)), "dev_accuracy": dev_acc})
        if epoch + 1 >= self.first_candidate and dev_acc > self.state["best_dev_accuracy"]:
            self.state.update(best_dev_accuracy=dev_acc, best_epoch=epoch + 1)
            write_file_atomic(self.work_dir / "best.weights.h5", lambda tmp: self.model.save_weights(str(tmp)))
        # A checkpoint is two files (.index, .data-*): each epoch writes a new prefix, and state.json,
        # replaced atomically after it, names the one to resume from; a kill leaves the previous pair.
        prefix = f"last-{epoch + 1}"
        tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer).write(str(self.work_dir / prefix))
        self.state.update(epoch=epoch + 1, checkpoint=prefix, geometry=model_geometry(self.model))
        write_json_atomic(self.work_dir / "state.json", self.state)
        _remove_checkpoints(self.work_dir, keep=prefix)
        print(f"epoch {epoch + 1}: loss {self.state['history'][-1]['loss']:.4f}  dev accuracy {dev_acc:.4f}"
              f"  (best {self.state['best_dev_accuracy']:.4f} @ epoch {self.state['best_epoch']})", flush=True)


class ProgressLine(keras.callbacks.Callback):
    """When stdout is not a terminal: one line every ~10% of an epoch instead of a progress bar."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps, self.every = steps, max(1, steps // 10)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.start = epoch + 1, time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every == 0 or batch + 1 == self.steps:
            spent = time.monotonic() - self.start
            eta = spent / (batch + 1) * (self.steps - batch - 1)
            print(f"  epoch {self.epoch} step {batch + 1}/{self.steps}  loss {logs.get('loss', float('nan')):.4f}"
                  f"  {spent:.0f}s elapsed, ~{eta:.0f}s left", flush=True)


def _remove_checkpoints(work_dir: Path, keep: str) -> None:
    """Delete the checkpoint files of earlier epochs (last-<n>.*, and the unnumbered last.* of older runs)."""
    for path in [*work_dir.glob("last.*"), *work_dir.glob("last-*.*")]:
        if path.name.split(".")[0] != keep:
            path.unlink(missing_ok=True)


def model_geometry(model) -> list[str]:
    """One line per layer with weights or heads: its type, weight shapes and head count (by
    position, not name: auto-numbered names differ between processes). Heads change no shape,
    so a checkpoint's variables alone cannot tell 2 heads from 3."""
    rows = []
    for layer in model.layers:
        heads = getattr(getattr(layer, "layer", layer), "num_heads", None)  # QAT/pruning wrappers hold .layer
        if layer.weights or heads:
            shapes = " ".join(str(tuple(w.shape)) for w in layer.weights)
            rows.append(f"{type(layer).__name__} {shapes}" + (f" heads={heads}" if heads else ""))
    return rows


def restore_checkpoint(model, prefix: Path, geometry: list[str] | None = None) -> None:
    """Load a resumable checkpoint into model and its optimizer; refuse one written by another model.

    geometry: model_geometry() of the model that wrote it (state.json), compared first. Then every
    variable of the model and optimizer must get a value of its shape from the checkpoint and every
    value in it must be used. A mismatch raises ResumeError naming the folder."""
    mine = model_geometry(model)
    if geometry is not None and geometry != mine:
        at = next((i for i, (a, b) in enumerate(zip(geometry, mine)) if a != b), min(len(geometry), len(mine)))
        reason = (f"layer {at}: {geometry[at] if at < len(geometry) else 'none'} there, "
                  f"{mine[at] if at < len(mine) else 'none'} here")
        raise ResumeError(f"{prefix.parent}: its checkpoint {prefix.name} does not match this model ({reason}); "
                          "resume with the settings it was trained with, or use another --work-dir")
    try:
        status = tf.train.Checkpoint(model=model, optimizer=model.optimizer).read(str(prefix))
        status.assert_consumed()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ResumeError(f"{prefix.parent}: its checkpoint {prefix.name} does not match this model ({reason}); "
                          "resume with the settings it was trained with, or use another --work-dir") from None


def dev_accuracy(model, inputs, labels) -> float:
    logits = model.predict(inputs, batch_size=64, verbose=0)
    return float((logits.argmax(-1) == labels).mean())


def fit_classifier(model, train: tuple, dev: tuple, cfg: FinetuneConfig, work_dir: Path, *,
                   loss=None, resume: bool = False, score_fn=dev_accuracy, callbacks=(), first_candidate_epoch: int = 1,
                   strategy=None, build=None):
    """Train `model` on train=(inputs, targets); keep the epoch best on dev=(inputs, labels).

    `loss` defaults to cross-entropy on logits; distillation passes its own loss and targets.
    With resume=True an interrupted run continues from the last finished epoch in work_dir.
    Epochs before `first_candidate_epoch` are trained but never selected (e.g. while a pruning
    schedule is still ramping up). strategy (a tf.distribute strategy, converter.train.distribute)
    with build (no arguments -> a fresh model of the same architecture): the training runs on a twin
    built in the strategy's scope, and `model` gets the best weights back.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    inputs, targets = train
    rows = len(inputs[0]) if isinstance(inputs, (list, tuple)) else len(inputs)
    steps = int(np.ceil(rows / cfg.batch_size))
    plain = model
    with _scope(strategy):
        if strategy is not None:
            check_batch(strategy, cfg.batch_size)
            model = build()
            model.set_weights(plain.get_weights())
        model.compile(optimizer=make_optimizer(cfg, steps),
                      loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        state = {"epoch": 0, "best_dev_accuracy": -1.0, "best_epoch": 0, "history": []}
        state_path = work_dir / "state.json"
        if resume and state_path.is_file():
            state = json.loads(state_path.read_text())
            model.optimizer.build(model.trainable_variables)
            restore_checkpoint(model, work_dir / state.get("checkpoint", "last"), state.get("geometry"))
            print(f"resuming {work_dir} after epoch {state['epoch']}", flush=True)
    if state["epoch"] < cfg.epochs:
        tty = sys.stdout.isatty()
        callback = EpochCheckpoint(work_dir, dev[0], dev[1], state, score_fn, first_candidate_epoch)
        model.fit(inputs, targets, batch_size=cfg.batch_size, epochs=cfg.epochs, initial_epoch=state["epoch"],
                  shuffle=True, callbacks=[*callbacks, callback] + ([] if tty else [ProgressLine(steps)]),
                  verbose=int(tty))
    plain.load_weights(str(work_dir / "best.weights.h5"))
    return plain, state


def _scope(strategy):
    return contextlib.nullcontext() if strategy is None else strategy.scope()
