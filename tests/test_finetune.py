"""Fine-tuning is seeded end to end: same seed -> bit-identical weights, another seed -> others."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from converter.config import TINY, FinetuneConfig, with_overrides
from converter.data.splits import load_splits
from converter.errors import ResumeError
from converter.jobs.context import prepare
from converter.jobs.convert import train_teacher
from converter.modeling import hf_weights as ck
from converter.modeling.bert import build_classifier
from converter.train.finetune import fit_classifier, model_geometry
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


def _tiny_fit(work, model_cfg, epochs: int, resume: bool):
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 40, (8, 7)).astype(np.int32)
    inputs, labels = [ids, np.ones_like(ids)], rng.integers(0, 3, 8).astype(np.int32)
    cfg = FinetuneConfig(epochs=epochs, batch_size=4, learning_rate=1e-3)
    return fit_classifier(build_classifier(model_cfg), (inputs, labels), (inputs, labels), cfg, work, resume=resume)


@pytest.mark.parametrize("other", [dict(num_heads=2), dict(intermediate_size=24), dict(num_layers=1), dict(num_layers=3)],
                         ids=["fewer_heads", "wider_ffn", "fewer_layers", "more_layers"])
def test_resume_refuses_a_checkpoint_of_another_geometry(tmp_path, other):
    _tiny_fit(tmp_path / "work", TINY, 1, resume=False)
    with pytest.raises(ResumeError, match=f"{tmp_path / 'work'}: its checkpoint last-1 does not match"):
        _tiny_fit(tmp_path / "work", replace(TINY, **other), 2, resume=True)


def test_resume_continues_a_matching_checkpoint(tmp_path):
    _tiny_fit(tmp_path / "work", TINY, 1, resume=False)
    _, state = _tiny_fit(tmp_path / "work", TINY, 2, resume=True)
    assert [h["epoch"] for h in state["history"]] == [1, 2] and state["checkpoint"] == "last-2"
    assert json.loads((tmp_path / "work" / "state.json").read_text())["geometry"] == model_geometry(build_classifier(TINY))
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [
        "best.weights.h5", "last-2.data-00000-of-00001", "last-2.index", "state.json"]
