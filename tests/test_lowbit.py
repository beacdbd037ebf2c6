"""4-bit and mixed 4/8-bit weights (int4w): the file's integers times its scales are the
fake-quantized Keras weights, group by group; the GATHER rewrite changes no value."""

import numpy as np
import pytest

from converter.export.lookup import gather_to_embedding_lookup
from converter.export.lowbit import WeightBits, export_lowbit, fake_quantize, file_weights, layer_groups, on_grid
from converter.export.tflite import convert
from converter.modeling import hf_weights as ck
from converter.modeling import names
from converter.modeling.bert import build_classifier
from device_runtime.interpreter import TFLiteModel
from tests.helpers import FIXTURES, TINY_BERT

SEQ = 7


@pytest.fixture(scope="module")
def tiny():
    model, cfg, _, _ = ck.build_from_checkpoint(str(TINY_BERT), SEQ)
    return model, cfg, np.load(FIXTURES / "tiny_reference.npz")


def _rows(reference):
    return [{"input_ids": reference["input_ids"][i:i + 1], "attention_mask": reference["attention_mask"][i:i + 1]}
            for i in range(len(reference["input_ids"]))]


def _file_tensor(weights: dict, layer_name: str):
    """The file tensor of a Keras layer's matrix. The converter folds the 1/sqrt(head_size) query
    scaling into the query kernel, whose tensor is then named after the attention core's `mul`."""
    if layer_name == names.WORD:
        found = [name for name in weights if name.endswith(f"/{names.WORD}/embedding_lookup")]
    else:
        key = layer_name.replace(names.ATTN_QUERY, f"{names.ATTN_CORE}/mul") + ("" if names.ATTN_QUERY in layer_name else "/")
        found = [name for name in weights if f"/{key}" in name]
    assert len(found) == 1, (layer_name, found)
    return weights[found[0]]


def test_on_grid_is_the_symmetric_per_channel_grid():
    w = np.array([[0.7, -0.1], [-0.35, 0.2], [0.05, -0.4]], np.float32)  # columns are the channels
    got = on_grid(w, 4, axis=-1)
    scale = np.array([0.7, 0.4], np.float32) / 7
    np.testing.assert_allclose(got, np.round(w / scale) * scale, rtol=1e-6)
    np.testing.assert_allclose(got[:, 0] / scale[0], [7, -4, 0])  # -3.5 rounds to even; 0.5 to 0
    assert len(np.unique(np.round(on_grid(np.linspace(-1, 1, 101)[None], 4, axis=0) * 7, 5))) <= 15


def test_gather_rewrite_keeps_every_value(tiny, tmp_path):
    model, _, reference = tiny
    float_bytes = convert(model, SEQ, "float32")
    rewritten, tables = gather_to_embedding_lookup(float_bytes)
    assert tables == [f"{model.name}/{names.WORD}/embedding_lookup"]
    (tmp_path / "a.tflite").write_bytes(float_bytes)
    (tmp_path / "b.tflite").write_bytes(rewritten)
    a, b = TFLiteModel(tmp_path / "a.tflite"), TFLiteModel(tmp_path / "b.tflite")
    for row in _rows(reference):
        np.testing.assert_array_equal(a.predict(row), b.predict(row))


@pytest.mark.parametrize("bits", [WeightBits(4, 4, 4), WeightBits(8, 4, 8)])
def test_file_integers_times_scales_are_the_fake_quantized_weights(tiny, tmp_path, bits):
    model, cfg, reference = tiny
    quantized = build_classifier(cfg, name=model.name)
    quantized.set_weights(model.get_weights())
    fake_quantize(quantized, bits)
    path = export_lowbit(quantized, SEQ, bits, tmp_path / f"m-{bits.tag}.tflite")
    weights = file_weights(path)
    head_size = cfg.hidden_size // cfg.num_heads
    checked = 0
    for group, layers in layer_groups(quantized).items():
        want_bits = bits.as_dict()[group]
        for layer in layers:
            got_bits, got = _file_tensor(weights, layer.name)
            keras = layer.get_weights()[0]
            expected = keras if layer.name == names.WORD else keras.T  # TFLite FC weights are [out, in]
            if layer.name.endswith(names.ATTN_QUERY):
                expected = expected / np.sqrt(head_size)
            assert got_bits == want_bits, (layer.name, got_bits)
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7 * np.abs(expected).max(), err_msg=layer.name)
            # and the Keras weights are on the grid: quantizing them again changes nothing
            np.testing.assert_allclose(on_grid(keras, want_bits, 0 if layer.name == names.WORD else -1), keras, rtol=1e-6)
            checked += 1
    assert checked == 1 + cfg.num_layers * 6 + 2  # word table, 6 matrices per block, pooler and classifier
    # The file computes what the fake-quantized model computes, up to the on-the-fly int8 activations.
    runner = TFLiteModel(path)
    for row in _rows(reference):
        keras_logits = quantized.predict([row["input_ids"], row["attention_mask"]], verbose=0)
        np.testing.assert_allclose(runner.predict(row), keras_logits, atol=0.03)


def test_qat_graph_computes_the_int4w_weights(tiny):
    """QAT of the rounding trains the model the file will hold: its forward pass equals the float model
    with every matrix fake-quantized at its group's bits, and its trained weights come back by name."""
    from converter.compress.qat import weight_only_model, weights_by_layer
    from converter.jobs.lowbit import bits_by_layer

    model, cfg, reference = tiny
    bits = WeightBits(4, 4, 8)
    layers = bits_by_layer(model, bits)
    assert layers[names.WORD] == 4 and layers["layer_0_ffn_in"] == 8 and layers["classifier"] == 8
    qat_model = weight_only_model(model, layers)
    expected = build_classifier(cfg, name=model.name)
    expected.set_weights(model.get_weights())
    fake_quantize(expected, bits)
    inputs = [reference["input_ids"], reference["attention_mask"]]
    np.testing.assert_allclose(qat_model(inputs, training=False).numpy(), expected(inputs, training=False).numpy(),
                               rtol=1e-5, atol=1e-6)
    back = weights_by_layer(qat_model, model)
    for a, b in zip(back.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the float weights, not their rounding: export puts them on the grid


def test_qat_of_the_rounding_trains_the_float_weights(tiny, tmp_path):
    """One epoch through the 4-bit rounding moves the float weights (straight-through gradient) and
    returns them in an ordinary classifier, which the int4w export then puts on the grid."""
    from converter.compress.qat import weight_only_qat
    from converter.config import FinetuneConfig
    from converter.jobs.lowbit import bits_by_layer

    model, _, reference = tiny
    inputs = [reference["input_ids"], reference["attention_mask"]]
    labels = np.arange(len(reference["input_ids"])) % 3
    before = [w.copy() for w in model.get_weights()]
    trained, state = weight_only_qat(model, bits_by_layer(model, WeightBits(4, 4, 4)), (inputs, labels), (inputs, labels),
                                     FinetuneConfig(epochs=1, batch_size=2, learning_rate=1e-2), tmp_path / "qat")
    assert state["epoch"] == 1 and (tmp_path / "qat" / "best.weights.h5").is_file()
    moved = [not np.array_equal(a, b) for a, b in zip(trained.get_weights(), before, strict=True)]
    assert all(moved[:1]) and sum(moved) > len(moved) // 2  # the word table and most other weights trained
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before, strict=True))  # the source is left as it was
