"""TFLite export: fixed [1, seq_len] signatures, float parity, atomic writes, an untouched dist/ on failure."""

import json
import os

import numpy as np
import pytest

from converter.config import ExportConfig
from converter.export import tflite as ex
from converter.jobs import convert as pipeline
from converter.modeling.hf_weights import build_from_checkpoint
from device_runtime.interpreter import ModelLoadError, TFLiteModel
from tests.helpers import TINY_BERT, tiny_config

CALIBRATION = TINY_BERT.parent / "tiny_reference.npz"


@pytest.fixture(scope="module")
def tiny_model():
    model, cfg, _, _ = build_from_checkpoint(str(TINY_BERT), 7)
    return model


def test_every_variant_has_fixed_named_inputs(tiny_model, tmp_path):
    ref = np.load(CALIBRATION)
    inputs = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    keras_logits = tiny_model([ref["input_ids"], ref["attention_mask"]]).numpy()
    for quantization in ("float32", "dynamic", "float16", "int8"):
        float_ops = ExportConfig().int8_float_ops if quantization == "int8" else ()
        path = ex.export_tflite(tiny_model, 7, quantization, tmp_path / f"{quantization}.tflite", inputs, float_ops)
        runner = TFLiteModel(path)
        for name, detail in runner.inputs.items():
            assert list(detail["shape"]) == [1, 7] and list(detail["shape_signature"]) == [1, 7], name
            assert detail["dtype"] == np.int32
        assert sorted(runner.inputs) == ["attention_mask", "input_ids"] and runner.output_name == "logits"
        logits = ex.tflite_logits(path, inputs)
        tolerance = {"float32": 1e-5, "dynamic": 1e-5, "float16": 2e-3, "int8": 0.1}[quantization]
        np.testing.assert_allclose(logits, keras_logits, atol=tolerance)


def _op_input_dtypes(path):
    runner = TFLiteModel(path)
    tensors = {t["index"]: t["dtype"] for t in runner.interpreter.get_tensor_details()}
    return [(op["op_name"], tensors[op["inputs"][0]]) for op in runner.interpreter._get_ops_details()]


def test_int8_keeps_float_islands_only_where_configured(tiny_model, tmp_path):
    ref = np.load(CALIBRATION)
    inputs = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    islands = ex.export_tflite(tiny_model, 7, "int8", tmp_path / "a.tflite", inputs, ("MEAN", "ADD"))
    full = ex.export_tflite(tiny_model, 7, "int8", tmp_path / "b.tflite", inputs)
    ops = _op_input_dtypes(islands)
    assert {d for op, d in ops if op == "FULLY_CONNECTED"} == {np.int8}
    assert {d for op, d in ops if op in ("MEAN", "ADD")} == {np.float32}
    assert {d for op, d in _op_input_dtypes(full) if op in ("MEAN", "FULLY_CONNECTED")} == {np.int8}


def test_shape_check_rejects_a_one_token_signature(tmp_path):
    model, _, _, _ = build_from_checkpoint(str(TINY_BERT), 1)
    path = tmp_path / "one.tflite"
    ex.write_atomic(path, ex.convert(model, 1, "float32"))
    assert TFLiteModel(path).input_shapes() == {"input_ids": [1, 1], "attention_mask": [1, 1]}
    with pytest.raises(ModelLoadError, match=r"input '(input_ids|attention_mask)' has shape \[1, 1\], expected \[1, 7\]"):
        TFLiteModel(path, seq_len=7)


def test_write_atomic_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        ex.write_atomic(target, b"new" * 1000)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.tflite"]


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_failed_conversion_leaves_dist_as_it_was(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path)
    pipeline.run_export(cfg, ("float32",), None)
    before = _snapshot(tmp_path / "dist")
    real_convert = ex.convert

    def failing(model, seq_len, quantization, calibration=None, float_ops=()):
        if quantization == "float16":
            raise RuntimeError("converter crashed")
        return real_convert(model, seq_len, quantization, calibration, float_ops)

    monkeypatch.setattr(ex, "convert", failing)
    with pytest.raises(RuntimeError, match="converter crashed"):
        pipeline.run_export(cfg, ("dynamic", "float16"), None)
    assert _snapshot(tmp_path / "dist") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "dist", "work"]  # no staging folder left


def test_export_without_calibration_skips_int8_and_writes_manifest(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    manifest = pipeline.run_export(cfg, ("float32", "int8"), None)
    assert "model-int8: skipped" in capsys.readouterr().out
    assert [m["name"] for m in manifest["models"]] == ["model-float32"]
    on_disk = json.loads((tmp_path / "dist" / "manifest.json").read_text())
    assert on_disk == manifest
    entry = manifest["models"][0]
    assert entry["arch"] == {"layers": 2, "hidden": 12, "heads": 3, "intermediate": 20, "vocab_size": 40}
    assert set(entry["metrics"]) == {"test", "test_allagree"}
    assert entry["bytes"] == (tmp_path / "dist" / entry["file"]).stat().st_size
    assert manifest["labels"] == ["negative", "neutral", "positive"] and manifest["seq_len"] == 7
