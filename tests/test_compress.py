"""Distillation loss, TF-MOT pruning and QAT on the tiny model, and a Lambda-free graph check."""

import logging
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from converter.compress.distill import (
    TEACHER_LOGITS,
    DistillationLoss,
    distill,
    distillation_data,
    init_student,
    student_config,
    teacher_layer_map,
    teacher_logits,
)
from converter.compress.prune import kernel_sparsity, prune, prune_targets
from converter.compress.qat import qat, trained_float
from converter.compress.quant.quantizers import PerChannelKernelQuantizer
from converter.config import DistillConfig, ExportConfig, FinetuneConfig, PruneConfig, QatConfig
from converter.data.augment import augment_ids
from converter.export.stats import encoder_sparsity, encoder_weight_scales, encoder_weights, int8_ops
from converter.export.tflite import export_tflite, tflite_logits
from converter.modeling.hf_weights import build_from_checkpoint
from tests.helpers import TINY_BERT

FORBIDDEN = {"Lambda", "TFOpLambda", "SlicingOpLambda"}
QUICK = FinetuneConfig(epochs=2, batch_size=8, learning_rate=1e-3, warmup_fraction=0.0)


@pytest.fixture(scope="module")
def tiny():
    model, cfg, _, _ = build_from_checkpoint(str(TINY_BERT), 7)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 40, (48, 7)).astype(np.int32)
    ids[:, 0], ids[:24, 5:] = 2, 0
    mask = (ids > 0).astype(np.int32)
    labels = rng.integers(0, 3, 48).astype(np.int32)
    return model, cfg, ([ids, mask], labels), ([ids[:8], mask[:8]], labels[:8])


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_kd_loss_matches_hand_computation():
    student = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], np.float32)
    teacher = np.array([[1.0, 1.5, -0.5], [-2.0, 0.0, 2.0]], np.float32)
    labels = np.array([0, 2])
    alpha, t = 0.3, 4.0
    ce = -np.log(_softmax(student)[[0, 1], labels])
    p, q = _softmax(teacher / t), _softmax(student / t)
    kl = (p * (np.log(p) - np.log(q))).sum(-1)
    expected = np.mean(alpha * ce + (1 - alpha) * t * t * kl)
    y_true = np.concatenate([labels[:, None], teacher], axis=1).astype(np.float32)
    got = float(DistillationLoss(alpha, t)(y_true, student))
    assert got == pytest.approx(expected, rel=1e-5)
    plain = tf.keras.losses.sparse_categorical_crossentropy(labels, student, from_logits=True).numpy().mean()
    assert float(DistillationLoss(1.0, t)(y_true, student)) == pytest.approx(plain, rel=1e-6)
    same = np.concatenate([labels[:, None], student], axis=1).astype(np.float32)
    assert float(DistillationLoss(0.0, t)(same, student)) == pytest.approx(0.0, abs=1e-6)
    assert float(DistillationLoss(0.0, t)(y_true, student)) > 0.1


def test_student_starts_from_every_kth_teacher_layer(tiny):
    teacher, cfg, _, _ = tiny
    assert teacher_layer_map(6, 3) == [1, 3, 5] and teacher_layer_map(12, 4) == [2, 5, 8, 11]
    student_cfg = student_config(cfg, DistillConfig(num_layers=1))
    student = init_student(teacher, cfg, student_cfg)
    assert len([w for w in student.weights]) < len(teacher.weights)
    np.testing.assert_array_equal(student.get_layer("layer_0_ffn_in").kernel.numpy(),
                                  teacher.get_layer("layer_1_ffn_in").kernel.numpy())
    np.testing.assert_array_equal(student.get_layer("classifier").kernel.numpy(), teacher.get_layer("classifier").kernel.numpy())
    narrow = init_student(teacher, cfg, student_config(cfg, DistillConfig(num_layers=1, hidden_size=6, num_heads=2,
                                                                         intermediate_size=10)))
    assert narrow.get_layer("layer_0_ffn_in").kernel.shape == (6, 10)


def test_pruning_reaches_target_and_survives_export(tiny, tmp_path):
    model, _, train, dev = tiny
    cfg = PruneConfig(target_sparsity=0.7, frequency=1, end_fraction=0.5, train=QUICK)
    pruned, state = prune(model, train, dev, cfg, tmp_path / "prune")
    names = prune_targets(pruned, cfg)
    assert len(names) == 13 and names[-1] == "embeddings_word"  # 12 encoder kernels + the word table
    assert all(abs(s - 0.7) <= 0.01 for s in kernel_sparsity(pruned, names).values())
    assert kernel_sparsity(model, names)["layer_0_ffn_in"] == 0.0  # the original is untouched
    for quantization in ("float32", "dynamic"):
        path = export_tflite(pruned, 7, quantization, tmp_path / f"{quantization}.tflite")
        assert len(encoder_weights(path)) == 12
        assert 0.69 <= encoder_sparsity(path) <= 0.75


def test_qat_model_has_fake_quant_and_exports_int8(tiny, tmp_path):
    model, _, train, dev = tiny
    quantized, _ = qat(model, train, dev, QatConfig(train=replace(QUICK, epochs=1)), tmp_path / "qat")
    graph = tf.function(lambda ids, mask: quantized([ids, mask])).get_concrete_function(
        tf.TensorSpec([1, 7], tf.int32), tf.TensorSpec([1, 7], tf.int32)).graph
    assert any(op.type.startswith("FakeQuantWithMinMaxVars") for op in graph.get_operations())
    calibration = {"input_ids": train[0][0][:8], "attention_mask": train[0][1][:8]}
    path = export_tflite(trained_float(quantized, model), 7, "int8", tmp_path / "qat.tflite", calibration,
                         ExportConfig().int8_float_ops)
    weights = encoder_weights(path)
    assert {w.dtype for w in weights.values()} == {np.dtype(np.int8)}
    # Per output channel, as simulated in training (a per-tensor scale would be 1).
    assert encoder_weight_scales(path) == {name: w.shape[0] for name, w in weights.items()}
    logits = tflite_logits(path, calibration)
    keras_logits = quantized.predict([train[0][0][:8], train[0][1][:8]], verbose=0)
    assert (logits.argmax(-1) == keras_logits.argmax(-1)).mean() >= 0.75


def test_qat_kernel_quantizer_rounds_like_the_converter(tiny, tmp_path):
    """Training sees kernels rounded exactly as the int8 file stores them (per channel, symmetric)."""
    model, _, train, dev = tiny
    quantized, _ = qat(model, train, dev, QatConfig(train=replace(QUICK, epochs=1)), tmp_path / "qat")
    calibration = {"input_ids": train[0][0][:8], "attention_mask": train[0][1][:8]}
    path = export_tflite(trained_float(quantized, model), 7, "int8", tmp_path / "qat.tflite", calibration,
                         ExportConfig().int8_float_ops)
    wrapper = quantized.get_layer("quant_layer_0_ffn_in")
    kernel = next(w for w in wrapper.trainable_weights if "kernel" in w.name).numpy()  # the float kernel trained
    simulated = PerChannelKernelQuantizer()(tf.constant(kernel), True, {}).numpy()
    stored = encoder_weights(path)
    name = next(n for n in stored if "layer_0_ffn_in" in n)
    scale = np.abs(kernel).max(0) / 127
    np.testing.assert_allclose(stored[name].T * scale, simulated, rtol=0, atol=1e-6)
    assert not np.allclose(simulated, kernel)  # the quantizer really rounds


def test_qat_export_keeps_the_float_islands_of_post_training_int8(tiny, tmp_path):
    """The QAT file computes in int8 exactly the ops post-training int8 does (no residual add,
    LayerNorm mean or attention matmul in int8, which the fine-tune does not simulate), from the
    fine-tuned weights; the residual adds carry no fake quantization in training either."""
    model, _, train, dev = tiny
    quantized, _ = qat(model, train, dev, QatConfig(train=replace(QUICK, epochs=1)), tmp_path / "qat")
    residual = quantized.get_layer("quant_layer_0_attn_residual")
    assert not residual.quantize_config.get_output_quantizers(residual.layer)
    exported = trained_float(quantized, model)
    trained = {v.name: v.numpy() for v in quantized.weights}
    for variable in exported.weights:
        np.testing.assert_array_equal(variable.numpy(), trained[variable.name])
    moved = [v.name for v in model.weights if not np.array_equal(v.numpy(), trained[v.name])]
    assert any("kernel" in name for name in moved)  # the copy holds the fine-tune's weights, not the start's
    calibration = {"input_ids": train[0][0][:8], "attention_mask": train[0][1][:8]}
    float_ops = ExportConfig().int8_float_ops
    qat_ops = int8_ops(export_tflite(exported, 7, "int8", tmp_path / "qat.tflite", calibration, float_ops))
    ptq_ops = int8_ops(export_tflite(model, 7, "int8", tmp_path / "ptq.tflite", calibration, float_ops))
    assert qat_ops == ptq_ops and qat_ops["FULLY_CONNECTED"] > 0
    assert not set(qat_ops) & set(float_ops)


def test_trained_float_names_a_missing_weight(tiny, tmp_path):
    model, _, train, dev = tiny
    student = init_student(model, tiny[1], student_config(tiny[1], DistillConfig(num_layers=1)))
    quantized, _ = qat(student, train, dev, QatConfig(train=replace(QUICK, epochs=1)), tmp_path / "qat")
    with pytest.raises(ValueError, match="layer_1_"):
        trained_float(quantized, model)  # the 2-layer model's second layer is not in the 1-layer QAT model


def test_no_lambda_layers_in_any_built_model(tiny, tmp_path):
    model, cfg, train, dev = tiny
    student = init_student(model, cfg, student_config(cfg, DistillConfig(num_layers=1)))
    pruned, _ = prune(model, train, dev, PruneConfig(train=replace(QUICK, epochs=1)), tmp_path / "p")
    quantized, _ = qat(student, train, dev, QatConfig(train=replace(QUICK, epochs=1)), tmp_path / "q")
    for built in (model, student, pruned, quantized):
        classes = {layer.__class__.__name__ for layer in built.layers}
        inner = {layer.layer.__class__.__name__ for layer in built.layers if hasattr(layer, "layer")}
        assert not (classes | inner) & FORBIDDEN, built.name


def test_augmented_distillation_learns_from_teacher_logits_of_the_copies(tiny, tmp_path):
    teacher, cfg, train, dev = tiny
    distill_cfg = DistillConfig(num_layers=1, augment_copies=1, augment_mask_prob=0.3, augment_drop_prob=0.2,
                                train=replace(QUICK, epochs=1))
    with pytest.raises(ValueError, match="\\[MASK\\] id"):
        distill(teacher, cfg, train, dev, distill_cfg, tmp_path / "work" / "none")
    distill(teacher, cfg, train, dev, distill_cfg, tmp_path / "work" / "student", mask_id=4)
    ids, mask, _ = augment_ids(*train[0], 1, 0.3, 0.2, 4, QUICK.seed)
    assert not np.array_equal(ids, train[0][0])
    cached = np.load(next((tmp_path / "work").glob("teacher_augmented_1x*_logits.npy")))
    np.testing.assert_allclose(cached, teacher.predict([ids, mask], verbose=0), atol=1e-5)


def test_cached_teacher_logits_of_another_teacher_are_recomputed(tiny, tmp_path):
    teacher, _, train, _ = tiny
    cache = tmp_path / "logits.npy"
    fresh = teacher_logits(teacher, train[0], cache)
    np.save(cache, fresh + 1.0)  # as if written by an earlier, different teacher
    np.testing.assert_allclose(teacher_logits(teacher, train[0], cache), fresh, atol=1e-5)
    np.testing.assert_allclose(np.load(cache), fresh, atol=1e-5)



@pytest.mark.parametrize("damage", ["truncated", "wrong_shape", "not_finite"])
def test_a_damaged_teacher_logit_cache_is_rebuilt(tiny, tmp_path, caplog, damage):
    teacher, _, ((ids, mask), labels), _ = tiny
    fresh = teacher.predict([ids, mask], verbose=0)
    cache = tmp_path / TEACHER_LOGITS
    np.save(cache, fresh)
    if damage == "truncated":  # a run killed while np.save wrote the file
        cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    elif damage == "wrong_shape":
        np.save(cache, np.concatenate([fresh, fresh[:, :1]], axis=1))
    else:
        np.save(cache, np.where(np.arange(len(fresh))[:, None] == len(fresh) - 1, np.nan, fresh))
    with caplog.at_level(logging.INFO, logger="converter.compress.distill"):
        targets, _ = distillation_data(teacher, [ids, mask], labels, tmp_path, 0.5, 2.0)
    assert "recomputing" in caplog.text and str(cache) in caplog.text
    np.testing.assert_allclose(targets[:, 1:], fresh, atol=1e-5)
    np.testing.assert_allclose(np.load(cache), fresh, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [TEACHER_LOGITS]


def test_teacher_rows_label_copies_from_the_cached_logits_of_their_originals(tiny, tmp_path):
    teacher, _, train, _ = tiny
    (ids, mask), labels = train
    rows = np.tile(np.arange(len(labels)), 2)
    copies = [np.concatenate([ids, np.zeros_like(ids)]), np.concatenate([mask, mask])]  # the copies' own ids differ
    targets, _ = distillation_data(teacher, copies, labels[rows], tmp_path, 0.5, 2.0, [ids, mask], rows)
    once = np.load(tmp_path / "teacher_train_logits.npy")
    assert once.shape == (len(labels), 3)  # the teacher read each original sentence once
    np.testing.assert_array_equal(targets[:, 0], labels[rows])
    np.testing.assert_array_equal(targets[:, 1:], once[rows])


def test_qat_activation_range_choice_reaches_every_quantizer(tiny):
    from tensorflow_model_optimization.quantization.keras import quantizers

    from converter.compress.qat import annotate

    teacher = tiny[0]
    for kind, cls in (("all_values", quantizers.AllValuesQuantizer),
                      ("moving_average", quantizers.MovingAverageQuantizer)):
        configs = [layer.quantize_config for layer in annotate(teacher, activation_range=kind).layers
                   if hasattr(layer, "quantize_config")]
        dense = [c for c in configs if hasattr(c, "activation_quantizer")]
        outputs = [q for c in configs for q in c.get_output_quantizers(None)]
        assert dense and outputs
        assert all(isinstance(c.activation_quantizer, cls) for c in dense)
        assert all(isinstance(q, cls) for q in outputs)
    with pytest.raises(ValueError, match="qat.activation_range: 'bogus'"):
        annotate(teacher, activation_range="bogus")


def test_qat_without_dropout_trains_deterministically(tiny):
    """qat.dropout False: no dropout anywhere in the QAT model, so training-mode calls agree
    (up to int8 rounding flips), as inference does."""
    from converter.compress.qat import quantize_model
    from converter.modeling.layers import AttentionCore

    teacher, _, train, _ = tiny
    batch = [x[:8] for x in train[0]]
    for dropout in (True, False):
        quantized = quantize_model(teacher, activation_range="all_values", dropout=dropout)
        layers = [getattr(layer, "layer", layer) for layer in quantized.layers]
        rates = [layer.rate for layer in layers if isinstance(layer, tf_keras.layers.Dropout)]
        rates += [layer.dropout_rate for layer in layers if isinstance(layer, AttentionCore)]
        assert rates and (all(r == 0 for r in rates) if not dropout else all(r > 0 for r in rates))
        quantized(batch, training=True)  # all_values ranges settle on this batch
        first, second = (quantized(batch, training=True).numpy() for _ in range(2))
        # Without dropout only a few int8 rounding steps differ (0.01 measured); dropout: 0.35.
        assert (np.abs(first - second).max() < 0.05) != dropout


@pytest.mark.parametrize("step", ["prune", "qat", "pqat"])
def test_resume_restores_pruning_and_qat_wrappers(tiny, tmp_path, step, capsys):
    """--resume after a pruning or QAT epoch reloads the wrapped model (masks, steps, quantizer
    ranges) into a freshly wrapped one and continues; nothing is refused as a mismatch."""
    model, _, train, dev = tiny
    one = replace(QUICK, epochs=1)
    prune_cfg = PruneConfig(target_sparsity=0.5, frequency=1, end_fraction=0.5, train=one)
    base = prune(model, train, dev, prune_cfg, tmp_path / "base")[0] if step == "pqat" else model

    def run(work, epochs, resume):
        if step == "prune":
            return prune(model, train, dev, replace(prune_cfg, train=replace(one, epochs=epochs)), work, resume=resume)
        cfg = QatConfig(train=replace(one, epochs=epochs))
        return qat(base, train, dev, cfg, work, preserve_sparsity=step == "pqat", resume=resume)

    run(tmp_path / step, 1, False)
    capsys.readouterr()
    resumed, state = run(tmp_path / step, 2, True)
    assert "resuming" in capsys.readouterr().out
    assert state["epoch"] == 2 and [row["epoch"] for row in state["history"]] == [1, 2]
