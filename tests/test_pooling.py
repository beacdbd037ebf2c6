"""Mean pooling (sentence-transformers checkpoints): exact masked mean, chosen from the checkpoint,
TF-MOT-compatible, exported, and never silently swapped for the pooling a work dir was trained with."""

import json
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from converter.compress.prune import apply_pruning
from converter.compress.qat import quantize_model
from converter.config import ExportConfig, PruneConfig
from converter.export.tflite import export_tflite, tflite_logits
from converter.jobs.context import teacher_pooling
from converter.modeling import hf_weights as ck
from converter.modeling.bert import build_classifier, encoder_outputs
from converter.modeling.layers import MaskedMeanPooling
from tests.helpers import TINY_BERT, tiny_config


@pytest.fixture(scope="module")
def tiny_mean():
    model, cfg, _, _ = ck.build_from_checkpoint(str(TINY_BERT), 7, pooling="mean")
    ref = np.load(TINY_BERT.parent / "tiny_reference.npz")
    return model, cfg, ref


def test_masked_mean_is_exact_and_ignores_padding():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 3)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32)
    got = MaskedMeanPooling()([tf.constant(x), tf.constant(mask)]).numpy()
    np.testing.assert_allclose(got[0], x[0, :3].mean(0), atol=1e-6)
    np.testing.assert_allclose(got[1], x[1].mean(0), atol=1e-6)
    x[0, 3:] = 1e6  # padded rows carry anything
    np.testing.assert_allclose(MaskedMeanPooling()([tf.constant(x), tf.constant(mask)]).numpy()[0], got[0], atol=1e-6)


def test_mean_pooled_model_is_the_masked_mean_through_pooler_and_classifier(tiny_mean):
    model, cfg, ref = tiny_mean
    names = [layer.name for layer in model.layers]
    assert "pooler_mean" in names and "pooler_cls" not in names
    inputs = [ref["input_ids"], ref["attention_mask"]]
    hidden, _ = encoder_outputs(model, cfg.num_layers)(inputs)  # (batch, seq, hidden)
    mask = ref["attention_mask"].astype(np.float64)[:, :, None]  # (batch, seq, 1)
    mean = (hidden.numpy() * mask).sum(1) / mask.sum(1)  # (batch, hidden)
    pooler, bias = model.get_layer("pooler").get_weights()
    classifier, classifier_bias = model.get_layer("classifier").get_weights()
    expected = np.tanh(mean @ pooler + bias) @ classifier + classifier_bias
    assert (ref["attention_mask"] == 0).any()  # padding present, so a plain mean would differ
    np.testing.assert_allclose(model(inputs).numpy(), expected, atol=1e-5)
    cls_names = {layer.name for layer in build_classifier(replace(cfg, pooling="cls")).layers}
    assert "pooler_cls" in cls_names and "pooler_mean" not in cls_names


def test_pooling_follows_the_checkpoint():
    assert ck.checkpoint_pooling(ck.resolve_checkpoint("minilm")) == "mean"  # 1_Pooling/config.json: mean tokens
    assert ck.checkpoint_pooling(TINY_BERT) == "cls"
    assert ck.resolve_pooling("cls", ck.resolve_checkpoint("minilm")) == "cls"
    with pytest.raises(ck.CheckpointError, match="choose auto, cls or mean"):
        ck.resolve_pooling("max", TINY_BERT)


def test_mean_pooled_model_exports_and_padding_ids_do_not_matter(tiny_mean, tmp_path):
    model, cfg, ref = tiny_mean
    assert "pooler_mean" in [layer.name for layer in model.layers]
    inputs = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    keras_logits = model([inputs["input_ids"], inputs["attention_mask"]]).numpy()
    path = export_tflite(model, 7, "float32", tmp_path / "mean.tflite")
    np.testing.assert_allclose(tflite_logits(path, inputs), keras_logits, atol=1e-5)
    other = inputs["input_ids"].copy()
    other[inputs["attention_mask"] == 0] = 5  # change only padded positions
    np.testing.assert_allclose(model([other, inputs["attention_mask"]]).numpy(), keras_logits, atol=1e-5)
    path8 = export_tflite(model, 7, "int8", tmp_path / "mean8.tflite", inputs, ExportConfig().int8_float_ops)
    assert (tflite_logits(path8, inputs).argmax(-1) == keras_logits.argmax(-1)).mean() >= 0.5


def test_mean_pooled_model_is_accepted_by_tf_mot(tiny_mean):
    model, _, _ = tiny_mean
    quantized = quantize_model(model)
    assert any("quant" in layer.name for layer in quantized.layers)
    pruned = apply_pruning(model, PruneConfig(), 10)
    assert any(layer.__class__.__name__ == "PruneLowMagnitude" for layer in pruned.layers)


def test_work_dir_pooling_is_never_silently_swapped(tmp_path):
    cfg = replace(tiny_config(tmp_path), pooling="auto")
    assert teacher_pooling(cfg, TINY_BERT) == "cls"
    record = tmp_path / "work" / "teacher" / "head.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"pooling": "mean"}))
    assert teacher_pooling(cfg, TINY_BERT) == "mean"  # auto: what the teacher was trained with
    with pytest.raises(ValueError, match="trained with mean pooling"):
        teacher_pooling(replace(cfg, pooling="cls"), TINY_BERT)
