"""Parity of the Functional model with transformers' BertModel, and loader errors."""

from pathlib import Path

import numpy as np
import pytest

from converter.modeling import hf_weights as ck
from converter.modeling.bert import build_classifier, encoder_outputs
from tests.fixtures.random_checkpoint import BASE, random_bert_tensors

FIXTURES = Path(__file__).parent / "fixtures"


def _outputs(model, num_layers, ref):
    hidden, pooled = encoder_outputs(model, num_layers)([ref["input_ids"], ref["attention_mask"]], training=False)
    return np.asarray(hidden), np.asarray(pooled)


def test_tiny_safetensors_parity_with_transformers():
    ref = np.load(FIXTURES / "tiny_reference.npz")
    model, cfg, labels, _ = ck.build_from_checkpoint(str(FIXTURES / "tiny_bert"), 7)
    hidden, _ = _outputs(model, cfg.num_layers, ref)
    np.testing.assert_allclose(hidden, ref["last_hidden"], atol=1e-5)
    logits = model([ref["input_ids"], ref["attention_mask"]], training=False).numpy()
    np.testing.assert_allclose(logits, ref["logits"], atol=1e-5)
    assert labels == ("negative", "neutral", "positive")


def test_tf_h5_checkpoint_parity():
    ref = np.load(FIXTURES / "tiny_tf_reference.npz")
    model, _, _, _ = ck.build_from_checkpoint(str(FIXTURES / "tiny_tf"), 7)
    logits = model([ref["input_ids"], ref["attention_mask"]], training=False).numpy()
    np.testing.assert_allclose(logits, ref["logits"], atol=1e-5)


@pytest.mark.slow
def test_minilm_parity_with_transformers():
    ref = np.load(FIXTURES / "minilm_reference.npz")
    model, cfg, _, _ = ck.build_from_checkpoint("minilm", ref["input_ids"].shape[1], allow_fresh=("classifier",))
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads) == (6, 384, 12)
    assert (ref["attention_mask"] == 0).any(), "fixture must contain padding"
    hidden, pooled = _outputs(model, cfg.num_layers, ref)
    np.testing.assert_allclose(hidden, ref["last_hidden"], atol=1e-4)
    np.testing.assert_allclose(pooled, ref["pooled"], atol=1e-4)


def test_bert_base_geometry_parity():
    ref = np.load(FIXTURES / "bert_base_random_reference.npz")
    cfg = ck.from_hf_config(BASE, ref["input_ids"].shape[1])
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.intermediate_size) == (12, 768, 12, 3072)
    model = build_classifier(cfg)
    ck.load_hf_weights(model, random_bert_tensors(BASE, seed=3), cfg.num_layers, allow_fresh=("classifier",))
    hidden, pooled = _outputs(model, cfg.num_layers, ref)
    np.testing.assert_allclose(hidden, ref["last_hidden"], atol=1e-4)
    np.testing.assert_allclose(pooled, ref["pooled"], atol=1e-4)


@pytest.fixture(scope="module")
def tiny():
    hf = ck.read_hf_config(FIXTURES / "tiny_bert")
    cfg = ck.from_hf_config(hf, 7)
    return build_classifier(cfg), cfg, ck.read_tensors(FIXTURES / "tiny_bert")


def test_missing_tensor_is_named(tiny):
    model, cfg, tensors = tiny
    broken = {k: v for k, v in tensors.items() if k != "encoder.layer.1.output.dense.weight"}
    with pytest.raises(ck.CheckpointError, match=r"missing tensor: encoder\.layer\.1\.output\.dense\.weight"):
        ck.load_hf_weights(model, broken, cfg.num_layers)


def test_classifier_missing_is_error_unless_allowed(tiny):
    model, cfg, tensors = tiny
    headless = {k: v for k, v in tensors.items() if not k.startswith("classifier")}
    with pytest.raises(ck.CheckpointError, match=r"missing tensor: classifier\.weight"):
        ck.load_hf_weights(model, headless, cfg.num_layers)
    assert ck.load_hf_weights(model, headless, cfg.num_layers, allow_fresh=("classifier",)) == ["classifier"]


def test_unexpected_tensor_is_named(tiny):
    model, cfg, tensors = tiny
    extra = {**tensors, "encoder.layer.2.output.dense.weight": np.zeros((12, 20), np.float32),
             "cls.predictions.bias": np.zeros(40, np.float32)}  # the cls.* head is ignored
    with pytest.raises(ck.CheckpointError) as err:
        ck.load_hf_weights(model, extra, cfg.num_layers)
    assert "unexpected tensor: encoder.layer.2.output.dense.weight (12, 20)" in str(err.value)
    assert "cls.predictions" not in str(err.value)


def test_shape_mismatch_names_both_shapes(tiny):
    model, cfg, tensors = tiny
    bad = {**tensors, "encoder.layer.0.intermediate.dense.weight": np.zeros((21, 12), np.float32)}
    message = r"encoder\.layer\.0\.intermediate\.dense\.weight \(21, 12\).*expects \(12, 20\)"
    with pytest.raises(ck.CheckpointError, match=message):
        ck.load_hf_weights(model, bad, cfg.num_layers)


def test_failed_load_assigns_nothing(tiny):
    model, cfg, tensors = tiny
    before = model.get_layer("layer_0_ffn_in").kernel.numpy().copy()
    bad = {**tensors, "pooler.dense.bias": np.zeros(5, np.float32)}
    with pytest.raises(ck.CheckpointError):
        ck.load_hf_weights(model, bad, cfg.num_layers)
    np.testing.assert_array_equal(model.get_layer("layer_0_ffn_in").kernel.numpy(), before)


def test_offline_hub_id_gives_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ck.CheckpointError, match="offline.*--checkpoint DIR") as err:
        ck.resolve_checkpoint("bert-base-uncased")
    assert "\n" not in str(err.value)


def test_missing_folder_and_config(tmp_path):
    with pytest.raises(ck.CheckpointError, match="not found"):
        ck.resolve_checkpoint(str(tmp_path / "nope"))
    with pytest.raises(ck.CheckpointError, match=r"config\.json: missing"):
        ck.read_hf_config(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ck.CheckpointError, match="no model.safetensors or tf_model.h5"):
        ck.read_tensors(tmp_path)
