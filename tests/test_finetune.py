"""Fine-tuning is seeded end to end: same seed -> bit-identical weights, another seed -> others."""

import shutil
from dataclasses import replace

import numpy as np
from safetensors.numpy import load_file, save_file

from converter.config import with_overrides
from converter.data.splits import load_splits
from converter.jobs.context import prepare
from converter.jobs.convert import train_teacher
from converter.modeling import hf_weights as ck
from tests.helpers import ROWS, TINY_BERT, tiny_config


def _headless_checkpoint(folder):
    """The tiny checkpoint without classifier.*: the head starts from a random init, as with MiniLM."""
    shutil.copytree(TINY_BERT, folder)
    tensors = {k: v for k, v in load_file(folder / "model.safetensors").items() if not k.startswith("classifier.")}
    save_file(tensors, folder / "model.safetensors")
    return folder


def _train(tmp_path, name: str, seed: int):
    cfg = replace(tiny_config(tmp_path), checkpoint=str(tmp_path / "headless"), work_dir=str(tmp_path / name))
    cfg = with_overrides(cfg, "finetune", seed=seed, epochs=1, batch_size=4)
    ctx = prepare(cfg, ck.resolve_checkpoint(cfg.checkpoint))
    np.random.uniform(size=7)  # whatever ran before must not matter
    model, _, _ = train_teacher(cfg, ctx)
    return model.get_weights()


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    _headless_checkpoint(tmp_path / "headless")
    first, again, other = _train(tmp_path, "a", 5), _train(tmp_path, "b", 5), _train(tmp_path, "c", 6)
    assert all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(first, other, strict=True))


def test_prepare_leaves_the_callers_splits_alone(tmp_path):
    cfg = with_overrides(tiny_config(tmp_path), "finetune", max_train_examples=3)
    splits = load_splits(cfg.data)
    given = dict(splits)
    ctx = prepare(cfg, TINY_BERT, splits)
    assert len(ctx.splits["train"].data) == 3
    assert splits == given and splits["train"] is given["train"] and len(splits["train"]) == len(ROWS)
