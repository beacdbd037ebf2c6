"""Intermediate-layer distillation: the loss against a hand computation, the trainer, one epoch."""

import numpy as np
import pytest
import tf_keras as keras

from converter.compress.distill import DistillationLoss, distill, init_student, pack_targets, student_config
from converter.compress.intermediate import (
    HiddenStateLoss,
    hidden_layer_names,
    teacher_hidden_targets,
    trainer_model,
)
from converter.config import DistillConfig, FinetuneConfig
from converter.modeling import hf_weights as ck
from converter.modeling.bert import build_classifier
from tests.helpers import FIXTURES, TINY_BERT


def _hand_hidden_loss(mask, teacher, student, weight):
    """numpy: per sentence, mean over features of the squared difference, summed over real tokens
    and divided by their number; then the batch mean."""
    per_token = ((student - teacher) ** 2).mean(-1)
    return weight * float(np.mean((per_token * mask).sum(1) / mask.sum(1)))


def _hand_kd_loss(labels, teacher, student, alpha, t):
    def log_softmax(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))
    hard = -log_softmax(student)[np.arange(len(labels)), labels]
    tp, sp = log_softmax(teacher / t), log_softmax(student / t)
    kl = (np.exp(tp) * (tp - sp)).sum(-1)
    return float(np.mean(alpha * hard + (1 - alpha) * t * t * kl))


def test_hidden_state_loss_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], np.float32)
    teacher, student = rng.normal(size=(3, 5, 8)).astype(np.float32), rng.normal(size=(3, 5, 8)).astype(np.float32)
    y_true = np.concatenate([mask[..., None], teacher], -1)
    got = float(HiddenStateLoss(0.7)(y_true, student))
    assert got == pytest.approx(_hand_hidden_loss(mask, teacher, student, 0.7), rel=1e-6)
    # padding is masked out: changing a padded position changes nothing
    student[0, 4] += 100.0
    assert float(HiddenStateLoss(0.7)(y_true, student)) == pytest.approx(got, rel=1e-6)


@pytest.fixture(scope="module")
def tiny():
    teacher, teacher_cfg, _, _ = ck.build_from_checkpoint(str(TINY_BERT), 7)
    reference = np.load(FIXTURES / "tiny_reference.npz")
    inputs = [reference["input_ids"], reference["attention_mask"]]
    return teacher, teacher_cfg, inputs


def test_total_loss_is_logits_plus_weighted_hidden_states(tiny):
    """The trainer's first loss equals the hand computation from the teacher's and student's own outputs."""
    teacher, teacher_cfg, inputs = tiny
    cfg = DistillConfig(num_layers=1, hidden_weight=0.5)
    student_cfg = student_config(teacher_cfg, cfg)
    student = init_student(teacher, teacher_cfg, student_cfg)  # layer 0 starts from teacher layer 1
    hidden = teacher_hidden_targets(teacher, teacher_cfg, [1], inputs)
    assert hidden.shape == (len(inputs[0]), 7, 1 + 2 * teacher_cfg.hidden_size)
    labels = np.array([0, 2, 1])[: len(inputs[0])]
    teacher_logits = teacher.predict(inputs, verbose=0)
    trainer = trainer_model(student, student_cfg, teacher_cfg.hidden_size)
    trainer.compile(loss=[DistillationLoss(0.1, 2.0), HiddenStateLoss(0.5)])
    total = trainer.evaluate(inputs, [pack_targets(labels, teacher_logits), hidden], batch_size=len(labels), verbose=0)[0]

    probe = keras.Model(student.inputs, [student.get_layer(n).output for n in hidden_layer_names(1)])
    student_hidden = np.concatenate(probe.predict(inputs, verbose=0), -1)
    mask = inputs[1].astype(np.float32)
    hand = (_hand_kd_loss(labels, teacher_logits, student.predict(inputs, verbose=0), 0.1, 2.0)
            + _hand_hidden_loss(mask, hidden[..., 1:], student_hidden, 0.5))
    assert total == pytest.approx(hand, rel=1e-5)
    # the student's embeddings are the teacher's own (copied): that part of the hidden loss is zero
    embeddings = slice(0, teacher_cfg.hidden_size)
    assert _hand_hidden_loss(mask, hidden[..., 1:][..., embeddings],
                             student_hidden[..., embeddings].astype(np.float16), 1.0) == 0.0


def test_narrower_student_learns_through_a_projection(tiny, tmp_path):
    teacher, teacher_cfg, inputs = tiny
    cfg = DistillConfig(num_layers=1, hidden_size=6, num_heads=2, intermediate_size=10, hidden_weight=1.0,
                        train=FinetuneConfig(epochs=2, batch_size=4, learning_rate=1e-3, seed=1))
    labels = np.array([0, 2, 1, 0, 2, 1, 0, 1])
    train = ([np.repeat(x, 3, axis=0)[:8] for x in inputs], labels)
    student, student_cfg, state = distill(teacher, teacher_cfg, train, train, cfg, tmp_path / "student")
    assert student_cfg.hidden_size == 6 and len(student.outputs) == 1 and student.output_shape == (None, 3)
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    assert state["history"][1]["loss"] < state["history"][0]["loss"]
    # later steps reload the student from its folder (load_trained): its own weights are there
    reloaded = build_classifier(student_cfg)
    reloaded.load_weights(str(tmp_path / "student" / "best.weights.h5"))
    np.testing.assert_array_equal(reloaded.predict(train[0], verbose=0), student.predict(train[0], verbose=0))
    trainer = trainer_model(student, student_cfg, teacher_cfg.hidden_size)
    assert [layer.name for layer in trainer.layers if layer.name.startswith("hidden_project_")] == [
        "hidden_project_0", "hidden_project_1"]
