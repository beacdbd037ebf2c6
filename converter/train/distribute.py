"""tf.distribute for the fine-tunes that carry the compute: the teacher and the student distillation.

`make_strategy` turns KitConfig.strategy into a tf.distribute strategy (None for "none"); `fit_classifier`
builds a twin of the model inside its scope, trains the twin, and hands the best weights back to the
plain model, so that everything after training (export, TF-MOT) sees an ordinary Keras model.
Keras splits each global batch (FinetuneConfig.batch_size) across the replicas, so the number of
steps, the learning-rate schedule and the per-epoch loss keep their one-device meaning."""

from __future__ import annotations

import json
import logging
import os

from converter.config import Strategy
from converter.errors import ConfigError

log = logging.getLogger(__name__)


def make_strategy(kind: Strategy | str, cpu_replicas: int = 0):
    """None (the default device), MirroredStrategy or MultiWorkerMirroredStrategy.

    mirrored: over the visible GPUs; with none and cpu_replicas >= 2, over that many logical CPU
    devices (which must be set up before TensorFlow starts its runtime: a ConfigError otherwise).
    multiworker: the cluster and this worker's task come from the TF_CONFIG environment variable."""
    import tensorflow as tf

    kind = Strategy(kind)
    if kind == Strategy.NONE:
        return None
    if kind == Strategy.MULTIWORKER:
        _check_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")  # list_logical_devices would start the runtime
    if gpus or cpu_replicas < 2:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.MirroredStrategy([device.name for device in split_cpu(cpu_replicas)])
    log.info("MirroredStrategy over %d replica(s): %s", strategy.num_replicas_in_sync,
             ", ".join(strategy.extended.worker_devices))
    return strategy


def split_cpu(count: int) -> list:
    """The CPU as `count` logical devices -> their LogicalDevice records."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration()] * count
    if tf.config.get_logical_device_configuration(cpu) != wanted:
        try:
            tf.config.set_logical_device_configuration(cpu, wanted)
        except RuntimeError:
            raise ConfigError(f"cpu_replicas {count}: TensorFlow's runtime already started with "
                              f"{len(tf.config.list_logical_devices('CPU'))} CPU device(s); set it in a fresh "
                              "process, before any model is built") from None
    return tf.config.list_logical_devices("CPU")[:count]


def _check_tf_config(raw: str | None) -> None:
    """TF_CONFIG must name a cluster with workers and this process's task: one error line otherwise."""
    if not raw:
        raise ConfigError("--strategy multiworker: TF_CONFIG is not set; it names the cluster and this "
                          'worker, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                          '"task": {"type": "worker", "index": 0}}')
    try:
        config = json.loads(raw)
        workers, task = config["cluster"]["worker"], config["task"]
        assert isinstance(workers, list) and workers and task["type"] in ("worker", "chief")
        assert 0 <= int(task["index"]) < len(workers) or task["type"] == "chief"
    except (ValueError, KeyError, TypeError, AssertionError):
        raise ConfigError(f"--strategy multiworker: TF_CONFIG {raw[:120]!r} does not name a worker list and "
                          "this process's task (type worker, index in the list)") from None


def on_replicas(strategy) -> str:
    """' on N replicas (Strategy)' for a progress line; '' on one device."""
    return "" if strategy is None else f" on {strategy.num_replicas_in_sync} replicas ({type(strategy).__name__})"


def check_batch(strategy, batch_size: int) -> None:
    """The global batch must split evenly: Keras would otherwise hand replicas unequal shares."""
    if strategy is not None and batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(f"batch size {batch_size} does not split across {strategy.num_replicas_in_sync} "
                          "replicas; choose a multiple")
