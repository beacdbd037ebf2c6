"""The converter CLI: --help, and one tiny end-to-end convert into tmp_path."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from converter.cli import app
from converter.errors import ConfigError
from converter.export.bundle import read_manifest, write_bundle
from device_runtime.interpreter import TFLiteModel
from device_runtime.tokenizer import WordPieceTokenizer
from tests.helpers import ROWS, TINY_BERT, write_split

runner = CliRunner()


def _encoder_zero_fraction(path) -> float:
    """Exact zeros over the weights of the tiny teacher's 12 encoder FULLY_CONNECTED ops, read here
    with the interpreter rather than through converter.export.stats, which made the manifest value."""
    interpreter = TFLiteModel(path).interpreter
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    weights = [interpreter.get_tensor(op["inputs"][1]) for op in interpreter._get_ops_details()
               if op["op_name"] == "FULLY_CONNECTED" and "/layer_" in tensors[op["inputs"][1]]["name"]]
    # 2 layers x (Q, K, V, attention output: 12 x 12; ffn in and out: 12 x 20), float in a file this small
    assert sorted(w.size for w in weights) == [144] * 8 + [240] * 4 and all(w.dtype == np.float32 for w in weights)
    return sum(int(np.count_nonzero(w == 0)) for w in weights) / sum(w.size for w in weights)


def test_help_lists_every_step():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("convert", "export", "distill", "ablation", "prune", "qat"):
        assert command in result.output


def test_tiny_convert_end_to_end(tmp_path):
    data = write_split(tmp_path / "data")
    result = runner.invoke(app, ["convert", "--checkpoint", str(TINY_BERT), "--data", str(data), "--out",
                                 str(tmp_path / "dist"), "--work-dir", str(tmp_path / "work"), "--seq-len", "7",
                                 "--epochs", "1", "--batch-size", "4", "--student-layers", "1", "--compress-epochs", "1",
                                 "--fine-tune-teacher"])  # the tiny checkpoint's head names our labels: as is by default
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "dist" / "manifest.json").read_text())
    names = [m["name"] for m in manifest["models"]]
    for name in ("teacher-float32", "teacher-dynamic", "teacher-float16", "teacher-int8", "student-float32",
                 "student-dynamic", "student-float16", "student-int8", "student-int16x8", "student-qat-int8", "teacher-qat-int8",
                 "teacher-pruned50-dynamic", "teacher-pruned50-int8", "student-pruned50-int8",
                 "student-pruned50-pqat-int8", "student-compact-int8", "student-structured-int8",
                 "student-slim-int8", "student-slim-dynamic", "student-int4w", "student-structured-int4w",
                 "student-structured-compact-int4w", "student-slim-int4w", "student-structured-dynamic",
                 "student-slim-structured-dynamic", "student-slim-structured-compact-int4w",
                 "student-structured-buckets-int8"):
        assert name in names and name in result.output
    by_name = {m["name"]: m for m in manifest["models"]}
    default = manifest["default_model"]
    assert f"default model: {default['name']} (" in result.output and default["chosen_by"] == "rule"
    tokenizer = WordPieceTokenizer(TINY_BERT / "vocab.txt", lowercase=True)
    lengths = [int(tokenizer.encode(text, 7)["attention_mask"].sum()) for text, _, _ in ROWS]
    assert default["median_dev_tokens"] == int(np.median(lengths))
    assert all(m["metrics"]["dev"]["n"] == 8 and m["temperature"] > 0 for m in manifest["models"])
    assert json.loads((tmp_path / "dist" / "device" / "manifest.json").read_text())["models"][0]["name"] == default["name"]
    assert by_name["student-int8"]["arch"]["layers"] == 1 and by_name["teacher-int8"]["arch"]["layers"] == 2
    pruned = by_name["teacher-pruned50-dynamic"]  # one step is too few to prune: test_compress covers sparsity
    assert pruned["sparsity"] == round(_encoder_zero_fraction(tmp_path / "dist" / pruned["file"]), 4)
    assert all({"sparsity", "gzip_bytes", "sha256", "metrics"} <= set(m) for m in manifest["models"])
    report = json.loads((tmp_path / "work" / "report.json").read_text())
    assert "hard_labels" not in report["distillation"]  # the ablation is its own command (below)
    structured = by_name["student-structured-int8"]  # 50% of 3 heads rounds to 2; 75% of 20 neurons = 15
    assert structured["arch"]["heads"] == [2] and structured["arch"]["intermediate"] == [15]
    assert (report["slim"]["structured"]["keep_ffn"], report["slim"]["slim_structured"]["keep_ffn"]) == (0.75, 0.5)
    assert report["slim"]["structured"]["importance"] == "taylor"
    slim = by_name["student-slim-int8"]
    assert slim["arch"]["heads"] == [2] and slim["arch"]["intermediate"] == [10] and slim["arch"]["embedding_rank"] <= 12
    assert (tmp_path / "dist" / slim["id_map_file"]).is_file()
    bucketed = by_name["student-slim-dynamic"]
    assert bucketed["buckets"] == [7, 16] and bucketed["quantization"] == "dynamic"
    assert report["slim"]["buckets"]["identical_labels"] == 1.0
    lowbit = report["slim"]["lowbit"]["student-structured-compact"]  # every combination tried, one chosen on dev
    assert len(lowbit["combinations"]) == 8 and lowbit["chosen"] in {c["tag"] for c in lowbit["combinations"]}
    compact4 = by_name["student-structured-compact-int4w"]
    assert compact4["weight_bits"]["head"] == 8 and compact4["id_map_file"] == slim["id_map_file"]
    assert compact4["bytes"] < by_name["student-structured-int8"]["bytes"]
    assert (tmp_path / "dist" / bucketed["bucket_16_file"]).is_file()
    assert bucketed["bucket_7_file"] == bucketed["file"]  # the seq_len bucket is not stored twice
    structured_bucketed = by_name["student-structured-dynamic"]  # the whole table: no id map
    assert structured_bucketed["buckets"] == [7, 16] and "id_map_file" not in structured_bucketed
    assert structured_bucketed["arch"] == structured["arch"] and report["slim"]["structured_buckets"]["identical_labels"] == 1.0
    narrow = by_name["student-slim-structured-dynamic"]  # the slim cut with the whole table, bucketed
    assert narrow["arch"]["intermediate"] == [10] and narrow["buckets"] == [7, 16] and "id_map_file" not in narrow
    assert report["slim"]["slim_structured_buckets"]["identical_labels"] == 1.0
    assert by_name["student-slim-structured-compact-int4w"]["id_map_file"] == slim["id_map_file"]
    int8_buckets = by_name["student-structured-buckets-int8"]  # full int8, each bucket calibrated at its length
    assert int8_buckets["quantization"] == "int8" and int8_buckets["buckets"] == [7, 16]
    assert int8_buckets["arch"] == structured["arch"] and (tmp_path / "dist" / int8_buckets["bucket_16_file"]).is_file()
    ablation = runner.invoke(app, ["ablation", "--checkpoint", str(TINY_BERT), "--data", str(data), "--work-dir",
                                   str(tmp_path / "work"), "--seq-len", "7", "--layers", "1", "--epochs", "1"])
    assert ablation.exit_code == 0, ablation.output
    both = json.loads((tmp_path / "work" / "report_ablation.json").read_text())
    assert both["distilled"] == report["distillation"]["distilled"]  # the convert's student, reloaded, not retrained
    assert both["hard_labels"]["test"]["n"] == both["distilled"]["test"]["n"] and "hard labels only" in ablation.output


def test_missing_checkpoint_is_one_line_error(tmp_path):
    result = runner.invoke(app, ["convert", "--checkpoint", str(tmp_path / "none"), "--data", str(write_split(tmp_path / "d"))])
    assert result.exit_code == 1 and "checkpoint folder not found" in result.output


def test_convert_starts_a_fresh_bundle(tmp_path):
    """Models of an earlier bundle in --out do not survive a new convert (they belong to another teacher)."""
    data = write_split(tmp_path / "data")
    args = ["convert", "--checkpoint", str(TINY_BERT), "--data", str(data), "--out", str(tmp_path / "dist"),
            "--work-dir", str(tmp_path / "work"), "--seq-len", "7", "--epochs", "1", "--batch-size", "4", "--teacher-only"]
    assert runner.invoke(app, args).exit_code == 0
    manifest = read_manifest(tmp_path / "dist")
    stale = dict(manifest["models"][0], name="student-stale", source=str(tmp_path / "dist" / manifest["models"][0]["file"]))
    write_bundle(tmp_path / "dist", [stale], tmp_path / "dist" / "vocab.txt", manifest["labels"], 7, True)
    assert "student-stale" in {m["name"] for m in read_manifest(tmp_path / "dist")["models"]}
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    names = {m["name"] for m in read_manifest(tmp_path / "dist")["models"]}
    assert names == {"teacher-float32", "teacher-dynamic", "teacher-float16", "teacher-int8"}


def _export_args(tmp_path):
    return ["export", "--checkpoint", str(TINY_BERT), "--out", str(tmp_path / "dist"), "--work-dir", str(tmp_path / "w")]


@pytest.mark.parametrize("bug", [ValueError("a bug, not a user error"), KeyError("missing_key")])
def test_a_bug_in_a_job_keeps_its_traceback(tmp_path, monkeypatch, bug):
    from converter.jobs import convert as jobs

    def broken(*args):
        raise bug

    monkeypatch.setattr(jobs, "run_export", broken)
    result = runner.invoke(app, _export_args(tmp_path))
    assert result.exception is bug and "error:" not in result.output


def test_a_kit_error_is_one_line_and_exit_1(tmp_path, monkeypatch):
    from converter.jobs import convert as jobs

    def refused(*args):
        raise ConfigError("qat.target: 'bogus'; expected 'teacher' or 'self'")

    monkeypatch.setattr(jobs, "run_export", refused)
    result = runner.invoke(app, _export_args(tmp_path))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == ["error: qat.target: 'bogus'; expected 'teacher' or 'self'"]


def test_device_cli_prints_its_errors_and_lets_bugs_through(tmp_path, monkeypatch, capsys):
    from device_runtime import cli as device_cli

    assert device_cli.main(["verify", "--bundle", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "manifest.json: not found" in err and len(err.splitlines()) == 1
    def broken(args):
        raise FileNotFoundError("a bug: a path the code built wrong")

    monkeypatch.setattr(device_cli, "cmd_verify", broken)
    with pytest.raises(FileNotFoundError, match="a bug"):
        device_cli.main(["verify", "--bundle", str(tmp_path / "none")])
