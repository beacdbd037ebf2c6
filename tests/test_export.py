"""TFLite export: fixed [1, seq_len] signatures, float parity, atomic writes, an untouched dist/ on failure."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from converter.config import ExportConfig
from converter.export import bundle
from converter.export import tflite as ex
from converter.export.bundle import read_manifest, write_bundle
from converter.files import write_bytes_atomic
from converter.jobs import convert as pipeline
from converter.modeling.hf_weights import build_from_checkpoint
from device_runtime.bundle import sha256_of
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
    write_bytes_atomic(path, ex.convert(model, 1, "float32"))
    assert TFLiteModel(path).input_shapes() == {"input_ids": [1, 1], "attention_mask": [1, 1]}
    with pytest.raises(ModelLoadError, match=r"input '(input_ids|attention_mask)' has shape \[1, 1\], expected \[1, 7\]"):
        TFLiteModel(path, seq_len=7)


def test_write_atomic_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomic(target, b"new" * 1000)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.tflite"]



@pytest.mark.parametrize("bad", ["garbage", "wrong_shape"])
def test_an_export_failing_its_check_keeps_the_previous_file(tiny_model, tmp_path, monkeypatch, bad):
    path = tmp_path / "model.tflite"
    ex.export_tflite(tiny_model, 7, "float32", path)
    before = path.read_bytes()
    one_token, _, _, _ = build_from_checkpoint(str(TINY_BERT), 1)
    data = b"\x00garbage" * 100 if bad == "garbage" else ex.convert(one_token, 1, "float32")
    monkeypatch.setattr(ex, "convert", lambda *args, **kwargs: data)
    with pytest.raises(ModelLoadError, match="model.tflite"):
        ex.export_tflite(tiny_model, 7, "float32", path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.tflite"]


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


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
    assert entry["arch"] == {"layers": 2, "hidden": 12, "heads": 3, "head_size": 4, "intermediate": 20, "vocab_size": 40}
    assert set(entry["metrics"]) == {"platform", "dev", "test", "test_allagree", "calibration"}
    assert entry["bytes"] == (tmp_path / "dist" / entry["file"]).stat().st_size
    assert manifest["labels"] == ["negative", "neutral", "positive"] and manifest["seq_len"] == 7


class Killed(BaseException):
    """kill -9 at a filesystem step: that step and every later one never happen."""


def _fake_bundle(tmp_path, out, tag: str, keep_existing=True):
    """A bundle of two small files through write_bundle (no conversion needed)."""
    sources = tmp_path / f"src-{tag}"
    sources.mkdir(exist_ok=True)
    entries = []
    for name in ("a", "b"):
        (sources / f"{name}.tflite").write_bytes(f"{tag} {name}".encode() * 100)
        entries.append({"name": f"{tag}-{name}", "file": f"{tag}-{name}.tflite", "source": str(sources / f"{name}.tflite"),
                        "quantization": "float32"})
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n")
    return write_bundle(out, entries, vocab, ["negative", "neutral", "positive"], 7, True, keep_existing)


def _assert_complete(out, allowed: list[set]):
    manifest = read_manifest(out)
    assert manifest is not None, f"{out}: no manifest"
    assert sha256_of(out / manifest["vocab"]) == manifest["vocab_sha256"]
    for entry in manifest["models"]:
        assert sha256_of(out / entry["file"]) == entry["sha256"], entry["file"]
    assert {e["name"] for e in manifest["models"]} in allowed


SWAP_STEPS = [(Path, "rename"), (os, "rename"), (os, "replace"), (bundle.shutil, "rmtree"), (bundle, "_exchange")]


def _kill_at(monkeypatch, step: int) -> list:
    """Patch every filesystem step of the swap; the step-th call (0-based) and all after it raise Killed."""
    calls = []
    for owner, name in SWAP_STEPS:
        real = getattr(owner, name)

        def patched(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            if len(calls) > step:
                raise Killed(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(owner, name, patched)
    return calls


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "fallback"])
def test_dist_is_a_complete_bundle_whenever_the_swap_is_killed(tmp_path, monkeypatch, exchange):
    old, new = {"old-a", "old-b"}, {"old-a", "old-b", "new-a", "new-b"}  # keep_existing: new adds to old
    if not exchange:
        monkeypatch.setattr(bundle, "_exchange", lambda a, b: False)
    for step in range(8):
        out = tmp_path / f"run{step}" / "dist"
        out.parent.mkdir()
        _fake_bundle(tmp_path, out, "old", keep_existing=False)
        with monkeypatch.context() as patch:
            calls = _kill_at(patch, step)
            try:
                _fake_bundle(tmp_path, out, "new")
            except Killed:
                pass
        if exchange or calls[step:step + 1] != ["rename"] or out.exists():
            _assert_complete(out, [old, new])  # renameat2: dist/ is never missing
        bundle.recover_bundle(out)  # what the next run does first
        _assert_complete(out, [old, new])
        assert [p.name for p in out.parent.iterdir()] == ["dist"]
        if len(calls) <= step:  # the swap finished before the step-th call
            break
    assert step >= 2


def test_write_bundle_restores_a_left_over_old_bundle_and_clears_stale_folders(tmp_path):
    out = tmp_path / "dist"
    _fake_bundle(tmp_path, out, "old", keep_existing=False)
    dead = 2**22 + 12345  # above the default pid_max: no such process
    out.rename(tmp_path / f".dist.old-{dead}")  # a fallback swap killed between its two renames
    (tmp_path / f".dist.staging-{dead}").mkdir()
    (tmp_path / f".dist.staging-{dead}" / "half.tflite").write_bytes(b"x")
    _fake_bundle(tmp_path, out, "new")
    _assert_complete(out, [{"old-a", "old-b", "new-a", "new-b"}])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_exchange_swaps_two_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b" / "x").write_text("b")
    if bundle._exchange(tmp_path / "a", tmp_path / "b"):
        assert (tmp_path / "a" / "x").read_text() == "b" and (tmp_path / "b" / "x").read_text() == "a"
    else:
        assert (tmp_path / "a" / "x").read_text() == "a" and sys.platform != "linux"
