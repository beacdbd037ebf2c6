"""Fine-tune a classifier: AdamW with linear warmup/decay, best-on-dev selection, resumable epochs."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from converter.config import FinetuneConfig

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
            self.model.save_weights(str(self.work_dir / "best.weights.h5"))
        tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer).write(str(self.work_dir / "last"))
        self.state["epoch"] = epoch + 1
        _write_json(self.work_dir / "state.json", self.state)
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


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def dev_accuracy(model, inputs, labels) -> float:
    logits = model.predict(inputs, batch_size=64, verbose=0)
    return float((logits.argmax(-1) == labels).mean())


def fit_classifier(model, train: tuple, dev: tuple, cfg: FinetuneConfig, work_dir: Path, *,
                   loss=None, resume: bool = False, score_fn=dev_accuracy, callbacks=(), first_candidate_epoch: int = 1):
    """Train `model` on train=(inputs, targets); keep the epoch best on dev=(inputs, labels).

    `loss` defaults to cross-entropy on logits; distillation passes its own loss and targets.
    With resume=True an interrupted run continues from the last finished epoch in work_dir.
    Epochs before `first_candidate_epoch` are trained but never selected (e.g. while a pruning
    schedule is still ramping up).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    inputs, targets = train
    steps = int(np.ceil(len(targets) / cfg.batch_size))
    model.compile(optimizer=make_optimizer(cfg, steps),
                  loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    state = {"epoch": 0, "best_dev_accuracy": -1.0, "best_epoch": 0, "history": []}
    state_path = work_dir / "state.json"
    if resume and state_path.is_file():
        state = json.loads(state_path.read_text())
        model.optimizer.build(model.trainable_variables)
        tf.train.Checkpoint(model=model, optimizer=model.optimizer).read(str(work_dir / "last")).expect_partial()
        print(f"resuming {work_dir} after epoch {state['epoch']}", flush=True)
    if state["epoch"] < cfg.epochs:
        tty = sys.stdout.isatty()
        callback = EpochCheckpoint(work_dir, dev[0], dev[1], state, score_fn, first_candidate_epoch)
        model.fit(inputs, targets, batch_size=cfg.batch_size, epochs=cfg.epochs, initial_epoch=state["epoch"],
                  shuffle=True, callbacks=[*callbacks, callback] + ([] if tty else [ProgressLine(steps)]),
                  verbose=int(tty))
    model.load_weights(str(work_dir / "best.weights.h5"))
    return model, state
