"""tf.distribute (--strategy): the same training under MirroredStrategy as on one device."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from converter.config import KitConfig, Strategy
from converter.errors import ConfigError
from converter.train.distribute import _check_tf_config, check_batch

ROOT = Path(__file__).resolve().parents[1]


def test_mirrored_on_two_cpus_matches_one_device(tmp_path):
    """Teacher fine-tune and student distillation, 2 epochs each, from the same weights and seed:
    per-epoch losses on 2 logical CPU replicas equal one device's to 1e-5 relative (float32 sums
    taken in another order), and training moved them."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-m", "tests.distribute_worker", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    losses = json.loads(done.stdout.strip().splitlines()[-1])
    one, mirrored = losses["one_device"], losses["mirrored"]
    assert (one["replicas"], mirrored["replicas"]) == (1, 2)
    for stage in ("teacher", "student"):
        assert len(one[stage]) == len(mirrored[stage]) == 2
        assert mirrored[stage] == pytest.approx(one[stage], rel=1e-5), stage
        assert abs(one[stage][1] - one[stage][0]) > 1e-3, f"{stage}: the loss did not move; nothing was compared"


@pytest.mark.parametrize("raw, message", [
    (None, "TF_CONFIG is not set"),
    ("{not json", "does not name a worker list"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "does not name a worker list"),
])
def test_multiworker_needs_tf_config(raw, message):
    with pytest.raises(ConfigError, match=message):
        _check_tf_config(raw)
    _check_tf_config('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}')


def test_global_batch_must_split_across_replicas():
    class Two:
        num_replicas_in_sync = 2

    check_batch(Two(), 32)
    with pytest.raises(ConfigError, match="batch size 33 does not split across 2 replicas"):
        check_batch(Two(), 33)


@pytest.mark.parametrize("strategy, replicas", [(Strategy.NONE, 2), (Strategy.MIRRORED, 1), (Strategy.MULTIWORKER, 2)])
def test_cpu_replicas_only_with_mirrored(strategy, replicas):
    with pytest.raises(ConfigError, match="cpu_replicas"):
        KitConfig(strategy=strategy, cpu_replicas=replicas)
