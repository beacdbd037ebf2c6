"""Compact embeddings, structured pruning and length buckets on the tiny model."""


import numpy as np
import pytest
import tf_keras as keras

from converter.compress.compact import compact_model, factorize_embeddings, id_map, kept_ids
from converter.compress.structured import importance_scores, keep_top, slice_model, taylor_scores, zero_removed
from converter.export.bundle import model_entry, write_bundle
from converter.export.tflite import export_tflite
from converter.jobs.slim import at_length, bucket_lengths
from converter.modeling.bert import encoder_outputs
from converter.modeling.hf_weights import build_from_checkpoint
from device_runtime.bundle import Bundle
from device_runtime.tokenizer import load_vocab
from tests.helpers import TINY_BERT


@pytest.fixture(scope="module")
def tiny():
    model, cfg, _, _ = build_from_checkpoint(str(TINY_BERT), 7)
    return model, cfg


def test_kept_ids_and_map():
    train = np.array([[2, 6, 7, 3, 0], [2, 6, 9, 3, 0]])
    kept = kept_ids(train, special_ids=[0, 1, 2, 3, 4])
    assert kept.tolist() == [0, 1, 2, 3, 4, 6, 7, 9]
    mapping = id_map(kept, 40, unk_id=1)
    assert mapping[[0, 6, 9, 8, 39]].tolist() == [0, 5, 7, 1, 1]  # 8 and 39 unseen -> compact [UNK]
    assert kept_ids(train, [0, 1], min_count=2).tolist() == [0, 1, 2, 3, 6]
    assert kept_ids(train, [0], extra_ids=np.array([[11, 11, 12]]), extra_top_k=1).tolist() == [0, 2, 3, 6, 7, 9, 11]


def test_id_map_is_applied_identically_on_host_and_device(tiny, tmp_path):
    model, cfg = tiny
    vocab = load_vocab(TINY_BERT / "vocab.txt")
    kept = kept_ids(np.array([[2, 3, 6, 7, 9, 10]]), [0, 1, 2, 3, 4])
    mapping = id_map(kept, 40, vocab["[UNK]"])
    compact, compact_cfg = compact_model(model, cfg, kept)
    path = export_tflite(compact, 7, "float32", tmp_path / "compact.tflite")
    map_path = tmp_path / "m.idmap.npy"
    np.save(map_path, mapping.astype(np.int16))
    entry = model_entry("compact", path, "float32", compact_cfg, {}, id_map_file=map_path.name,
                        id_map_sha256=__import__("hashlib").sha256(map_path.read_bytes()).hexdigest(),
                        kept_ids=len(kept), extra_sources={map_path.name: str(map_path)})
    write_bundle(tmp_path / "dist", [entry], TINY_BERT / "vocab.txt", ["negative", "neutral", "positive"], 7, True)
    bundle = Bundle(tmp_path / "dist")
    text = "the profit fell by 10 %"  # 'fell', 'by', '%' ... are not kept
    enc = bundle.tokenizer.encode(text, 7)
    assert (mapping[enc["input_ids"]] == mapping[1]).sum() >= 2
    _, device_model = bundle.load("compact")
    host = compact([mapping[enc["input_ids"]], enc["attention_mask"]]).numpy()
    np.testing.assert_allclose(device_model.predict(enc), host, atol=1e-5)
    full_with_unk = np.where(np.isin(enc["input_ids"], kept), enc["input_ids"], vocab["[UNK]"])
    np.testing.assert_allclose(model([full_with_unk, enc["attention_mask"]]).numpy(), host, atol=1e-5)


def test_factorized_embeddings_full_rank_is_exact_and_low_rank_is_the_svd(tiny, tmp_path):
    model, cfg = tiny
    ref = np.load(TINY_BERT.parent / "tiny_reference.npz")
    inputs = [ref["input_ids"], ref["attention_mask"]]
    full, full_cfg = factorize_embeddings(model, cfg, rank=12, positions=7)
    assert full_cfg.embedding_rank == 12 and full.get_layer("embeddings_position").embeddings.shape == (7, 12)
    np.testing.assert_allclose(full(inputs).numpy(), model(inputs).numpy(), atol=1e-5)
    low, low_cfg = factorize_embeddings(model, cfg, rank=4, positions=7)
    table = model.get_layer("embeddings_word").get_weights()[0]
    product = low.get_layer("embeddings_word").get_weights()[0] @ low.get_layer("embeddings_project").get_weights()[0]
    u, s, vt = np.linalg.svd(table)
    np.testing.assert_allclose(product, (u[:, :4] * s[:4]) @ vt[:4], atol=1e-5)
    assert np.linalg.norm(product - table) == pytest.approx(np.sqrt((s[4:] ** 2).sum()), rel=1e-4)
    path = export_tflite(low, 7, "int8", tmp_path / "low.tflite", {"input_ids": ref["input_ids"],
                                                                  "attention_mask": ref["attention_mask"]})
    assert path.stat().st_size > 0
    weights = np.arange(1.0, len(table) + 1) ** 2  # frequent rows (here: the last ones) count more
    weighted = factorize_embeddings(model, cfg, rank=4, positions=7, row_weights=weights)[0]
    approx = weighted.get_layer("embeddings_word").get_weights()[0] @ weighted.get_layer("embeddings_project").get_weights()[0]
    scaled_s = np.linalg.svd(table * np.sqrt(weights)[:, None], compute_uv=False)
    weighted_error = lambda a: np.sqrt((weights[:, None] * (a - table) ** 2).sum())  # noqa: E731
    assert weighted_error(approx) == pytest.approx(np.sqrt((scaled_s[4:] ** 2).sum()), rel=1e-4)  # Eckart-Young, weighted
    assert weighted_error(approx) < weighted_error(product)
    same = factorize_embeddings(model, cfg, rank=4, positions=7, row_weights=np.full(len(table), 3.0))[0]
    same_product = same.get_layer("embeddings_word").get_weights()[0] @ same.get_layer("embeddings_project").get_weights()[0]
    np.testing.assert_allclose(same_product, product, atol=1e-5)  # equal weights: the plain SVD
    with pytest.raises(ValueError, match="row_weights"):
        factorize_embeddings(model, cfg, rank=4, positions=7, row_weights=np.ones(3))
    with pytest.raises(ValueError, match="already factorized"):
        factorize_embeddings(low, low_cfg, rank=2, positions=7)
    with pytest.raises(ValueError, match="below seq_len"):
        factorize_embeddings(model, cfg, rank=4, positions=5)


def test_structured_pruning_equals_zeroed_heads_and_neurons(tiny):
    model, cfg = tiny
    heads, neurons = keep_top(importance_scores(model, cfg), keep_heads=0.67, keep_ffn=0.5)
    assert [len(h) for h in heads] == [2, 2] and [len(n) for n in neurons] == [10, 10]
    small, small_cfg = slice_model(model, cfg, heads, neurons)
    assert small.get_layer("layer_0_attn_query").kernel.shape == (12, 8)
    assert small.get_layer("layer_1_ffn_out").kernel.shape == (10, 12)
    zeroed = build_from_checkpoint(str(TINY_BERT), 7)[0]
    zero_removed(zeroed, cfg, heads, neurons)
    ref = np.load(TINY_BERT.parent / "tiny_reference.npz")
    inputs = [ref["input_ids"], ref["attention_mask"]]
    small_hidden = encoder_outputs(small, 2)(inputs)[0].numpy()
    np.testing.assert_allclose(small_hidden, encoder_outputs(zeroed, 2)(inputs)[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(small(inputs).numpy(), zeroed(inputs).numpy(), atol=1e-6)
    assert not np.allclose(small(inputs).numpy(), model(inputs).numpy(), atol=1e-4)  # pruning did change it


def test_bucket_lengths():
    assert bucket_lengths((16, 32, 64, 128), 64, 512) == [16, 32, 64, 128]
    assert bucket_lengths((16, 32, 64, 128), 7, 16) == [7, 16]
    assert bucket_lengths((16, 128), 48, 512) == [16, 48, 128]


def test_buckets_give_the_longest_bucket_labels_and_verify_checks_extra_files(tiny, tmp_path, capsys):
    from device_runtime import cli

    model, cfg = tiny
    paths = {length: export_tflite(at_length(model, cfg, length), length, "float32", tmp_path / f"b{length}.tflite")
             for length in (4, 7, 16)}
    buckets = {f"bucket_{length}_file": p.name for length, p in paths.items()}
    entry = model_entry("bucketed", paths[7], "float32", cfg, {}, buckets=[4, 7, 16], **buckets,
                        extra_sources={p.name: str(p) for p in paths.values()})
    write_bundle(tmp_path / "dist", [entry], TINY_BERT / "vocab.txt", ["negative", "neutral", "positive"], 7, True)
    bundle = Bundle(tmp_path / "dist")
    _, bucketed = bundle.load("bucketed")
    _, longest = Bundle(tmp_path / "dist").load("bucketed")
    for text, bucket in (("profit", 4), ("the profit rose", 7), ("the profit rose by 10 % in the year", 16)):
        enc = bundle.tokenizer.encode(text, 16)
        logits = bucketed.predict(enc)
        assert bucketed.last_bucket == bucket
        np.testing.assert_allclose(logits, longest.models[16].predict(enc), atol=1e-5)
    assert cli.main(["verify", "--bundle", str(tmp_path / "dist")]) == 0
    one = tmp_path / "one"
    assert cli.main(["pack", "--bundle", str(tmp_path / "dist"), "--model", "bucketed", "--out", str(one)]) == 0
    assert sorted(p.name for p in one.iterdir()) == ["MODEL_CARD.md", "b16.tflite", "b4.tflite", "b7.tflite", "bucketed.tflite",
                                                     "manifest.json", "vocab.txt"]
    assert [m["name"] for m in Bundle(one).models] == ["bucketed"]
    assert cli.main(["pack", "--bundle", str(tmp_path / "dist"), "--model", "bucketed", "--out", str(one)]) == 1
    (tmp_path / "dist" / "b16.tflite").unlink()
    assert cli.main(["verify", "--bundle", str(tmp_path / "dist")]) == 1
    assert "bucket_16_file" in capsys.readouterr().out


def _float64_logits():
    """The tiny model built in float64, as a model returning the classifier's float64 logits."""
    keras.backend.set_floatx("float64")
    try:
        model = build_from_checkpoint(str(TINY_BERT), 7)[0]  # same float32 values, held exactly
    finally:
        keras.backend.set_floatx("float32")
    return keras.Model(model.inputs, model.get_layer("classifier").output)  # "logits" casts to float32


def _summed_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    logits = logits - logits.max(-1, keepdims=True)
    return float(-(logits[np.arange(len(labels)), labels] - np.log(np.exp(logits).sum(-1))).sum())


def test_taylor_importance_is_the_loss_change_of_removing_a_head_or_neuron(tiny):
    """Each score is sum over batches of |dL_batch / d(scale of the head's / neuron's W_output rows)|.

    Reference: central differences on a float64 copy. A 1% scale moves the summed loss by ~1e-6,
    near float32 rounding of the loss, so a float32 difference is off by a few % on some CPUs."""
    model, cfg = tiny
    ref = np.load(TINY_BERT.parent / "tiny_reference.npz")
    inputs = [ref["input_ids"], ref["attention_mask"]]
    labels = np.arange(len(ref["input_ids"])) % 3
    heads, neurons = taylor_scores(model, cfg, inputs, labels, batch_size=2)  # batches [0, 1] and [2]
    logits64 = _float64_logits()

    def slope(name: str, rows: np.ndarray, batch: slice, step: float = 1e-2) -> float:
        layer = logits64.get_layer(name)
        kernel, bias = layer.get_weights()
        losses = []
        for scale in (1 + step, 1 - step):
            scaled = kernel.copy()
            scaled[rows] *= scale
            layer.set_weights([scaled, bias])
            losses.append(_summed_loss(logits64([x[batch] for x in inputs]).numpy(), labels[batch]))
        layer.set_weights([kernel, bias])
        return (losses[0] - losses[1]) / (2 * step)

    def expected(name: str, groups: list) -> list:
        return [sum(abs(slope(name, rows, batch)) for batch in (slice(0, 2), slice(2, 3))) for rows in groups]

    size = cfg.head_size
    for i in range(cfg.num_layers):
        head_rows = [np.arange(h * size, (h + 1) * size) for h in range(cfg.heads(i))]
        np.testing.assert_allclose(heads[i], expected(f"layer_{i}_attn_output", head_rows), rtol=1e-3)
        neuron_rows = [np.array([j]) for j in range(cfg.intermediate(i))]
        np.testing.assert_allclose(neurons[i], expected(f"layer_{i}_ffn_out", neuron_rows), rtol=1e-3)
    assert min(s.min() for s in heads + neurons) > 1e-6
    one_batch = taylor_scores(model, cfg, inputs, labels)[0]  # importance_scores' default: one batch of 3
    kept_heads, kept_neurons = keep_top(importance_scores(model, cfg, "taylor", (inputs, labels)), 0.67, 0.5)
    assert [len(h) for h in kept_heads] == [2, 2] and kept_heads[1].tolist() == np.sort(np.argsort(-one_batch[1])[:2]).tolist()
    with pytest.raises(ValueError, match="slim.importance"):
        importance_scores(model, cfg, "random")
