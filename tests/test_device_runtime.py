"""The device runtime against a tiny bundle: CLI commands, bad inputs, and its import footprint."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from device_runtime import cli
from device_runtime.bundle import Bundle
from device_runtime.interpreter import ModelLoadError, resolve_backend

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def bundle_copy(bundle_dir, tmp_path):
    return Path(shutil.copytree(bundle_dir, tmp_path / "copy"))


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_importing_the_runtime_loads_no_heavy_framework():
    code = ("import sys, device_runtime.cli, device_runtime.bundle, device_runtime.interpreter, device_runtime.tokenizer;"
            "heavy = [m for m in ('tensorflow', 'tf_keras', 'keras', 'torch', 'transformers') if m in sys.modules];"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_interpreter_says_what_to_install(monkeypatch):
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter", "tensorflow"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ModelLoadError, match="pip install ai-edge-litert"):
        resolve_backend()


def test_classify_default_model_and_edge_texts(bundle_dir, capsys):
    code, out, _ = run(capsys, "classify", "--bundle", bundle_dir, "--json", "the profit rose", "", "   ", "profit " * 20)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["model"] for r in rows] == ["model-int8"] * 4  # smallest int8 by default
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in rows)
    assert rows[1]["probabilities"] == rows[2]["probabilities"]  # both are just [CLS] [SEP]
    assert [r["truncated"] for r in rows] == [False, False, False, True]
    code, out, _ = run(capsys, "classify", "--bundle", bundle_dir, "--model", "model-float32", "profit " * 20)
    assert code == 0 and "[truncated to 7 tokens]" in out and "model model-float32" in out


def test_eval_reproduces_manifest_metrics(bundle_dir, capsys):
    data = bundle_dir.parent / "data" / "test.tsv"
    for entry in Bundle(bundle_dir).models:
        code, out, _ = run(capsys, "eval", "--bundle", bundle_dir, "--model", entry["name"], "--data", data, "--json")
        result = json.loads(out)
        assert code == 0
        assert result["test"]["accuracy"] == entry["metrics"]["test"]["accuracy"]
        assert result["test_allagree"]["macro_f1"] == entry["metrics"]["test_allagree"]["macro_f1"]
    code, out, _ = run(capsys, "eval", "--bundle", bundle_dir, "--model", "model-int8", "--data", data)
    assert "confusion (rows: true, columns: predicted)" in out and "AllAgree subset: n=5" in out


def test_tokenize_command(bundle_dir, capsys):
    code, out, _ = run(capsys, "tokenize", "--vocab", bundle_dir / "vocab.txt", "--seq-len", "7", "profits rose")
    assert code == 0 and json.loads(out) == {"input_ids": [2, 6, 23, 7, 3, 0, 0], "attention_mask": [1, 1, 1, 1, 1, 0, 0]}
    code, out, _ = run(capsys, "tokenize", "--vocab", bundle_dir / "vocab.txt", "profits rose")
    assert json.loads(out)["input_ids"] == [2, 6, 23, 7, 3]


def test_undecodable_stdin_is_replaced_and_reported(bundle_dir):
    out = subprocess.run([sys.executable, "-m", "device_runtime", "classify", "--bundle", str(bundle_dir), "--json"],
                         cwd=ROOT, input=b"the profit \xff rose\nsales fell\n", capture_output=True)
    assert out.returncode == 0, out.stderr
    assert b"stdin line 1: undecodable bytes replaced" in out.stderr
    assert [json.loads(line)["text"] for line in out.stdout.splitlines()] == ["the profit \ufffd rose", "sales fell"]


def test_verify_passes_then_names_each_problem(bundle_copy, capsys):
    code, out, _ = run(capsys, "verify", "--bundle", bundle_copy)
    assert code == 0 and "2/2 models verified" in out
    (bundle_copy / "model-int8.tflite").unlink()
    with open(bundle_copy / "model-float32.tflite", "ab") as handle:
        handle.write(b"x")
    code, out, _ = run(capsys, "verify", "--bundle", bundle_copy)
    assert code == 1 and "0/2 models verified" in out
    assert "BAD model-int8:" in out and "missing" in out and "BAD model-float32:" in out and "bytes, manifest says" in out


def test_corrupt_model_is_one_error_line(bundle_copy, capsys):
    path = bundle_copy / "model-float32.tflite"
    path.write_bytes(b"\x00garbage" * 100)
    code, _, err = run(capsys, "classify", "--bundle", bundle_copy, "--model", "model-float32", "profit")
    assert code == 1 and err.startswith("error: ") and "model-float32.tflite" in err and len(err.splitlines()) == 1
    path.unlink()
    code, _, err = run(capsys, "classify", "--bundle", bundle_copy, "--model", "model-float32", "profit")
    assert code == 1 and "file not found" in err


def test_broken_manifest_and_vocab(bundle_copy, capsys):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    (bundle_copy / "vocab.txt").write_text((bundle_copy / "vocab.txt").read_text() + "extra\n")
    code, _, err = run(capsys, "classify", "--bundle", bundle_copy, "profit")
    assert code == 1 and "vocab.txt: sha256 differs from the manifest" in err
    del manifest["seq_len"], manifest["models"][0]["sha256"]
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run(capsys, "verify", "--bundle", bundle_copy)
    assert code == 1 and "missing keys: seq_len, models[0].sha256" in err
    code, _, err = run(capsys, "classify", "--bundle", bundle_copy.parent / "nowhere", "x")
    assert code == 1 and "manifest.json: not found" in err


def test_unknown_model_lists_available(bundle_dir, capsys):
    code, _, err = run(capsys, "classify", "--bundle", bundle_dir, "--model", "nope", "x")
    assert code == 1 and "available: model-float32, model-int8" in err
