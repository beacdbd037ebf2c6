"""The whole convert pipeline on bert-base geometry (12 layers, width 768, 12 heads, FFN 3072):
random weights, a 1,000-row vocabulary, a few dozen synthetic sentences, one step per stage.
Slow tier: every export and compression stage of a 110M-parameter teacher."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from converter.cli import app
from converter.export.choice import encoder_macs
from tests.fixtures.random_checkpoint import BASE, write_checkpoint

pytestmark = pytest.mark.slow
SEQ_LEN = 16
SUBJECTS = ["profit", "sales", "revenue", "margin", "order", "loss"]
MOVES = {"rose": "positive", "grew": "positive", "improved": "positive", "fell": "negative",
         "dropped": "negative", "weakened": "negative", "was": "neutral", "stayed": "neutral"}


def _split(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    sentences = [(f"the {s} {m} in the quarter", label, 100) for s in SUBJECTS for m, label in MOVES.items()]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(sentences))
    for split, (start, stop) in {"train": (0, rows), "dev": (rows, rows + 8), "test": (rows + 8, rows + 16)}.items():
        body = "".join(f"{t}\t{lab}\t{a}\n" for t, lab, a in (sentences[i] for i in order[start:stop]))
        (folder / f"{split}.tsv").write_text("text\tlabel\tagreement\n" + body)
    return folder


def _weights(entry: dict) -> tuple[int, int]:
    """(encoder matrix weights, every other parameter) of a manifest entry's architecture."""
    arch = entry["arch"]
    matrices = encoder_macs(arch, 1) - 2 * (sum(arch["heads"]) if isinstance(arch["heads"], list)
                                            else arch["heads"] * arch["layers"]) * arch["head_size"]
    table = arch["vocab_size"] * arch.get("embedding_rank", arch["hidden"]) + arch.get("embedding_rank", 0) * arch["hidden"]
    return matrices, table + (BASE["max_position_embeddings"] + 2) * arch["hidden"] + arch["hidden"] ** 2


def test_convert_on_bert_base_geometry(tmp_path, monkeypatch):
    from converter.export.lowbit import WeightBits

    # Two of the eight int4w combinations (all 4-bit, all 8-bit) per model: each one is a conversion of a
    # bert-base-sized file; the choice among all eight is covered on the tiny model by test_cli.
    monkeypatch.setattr(WeightBits, "every", classmethod(lambda cls: [cls(4, 4, 4), cls(8, 8, 8)]))
    words = sorted({w for s in SUBJECTS for w in ("the", s, "in", "quarter")} | set(MOVES))
    checkpoint = tmp_path / "bert-base-random"
    write_checkpoint(checkpoint, BASE, seed=3, words=words)
    data = _split(tmp_path / "data", rows=16)  # 16 training rows: one step of every stage (batch 16 / 32)
    result = CliRunner().invoke(app, ["convert", "--checkpoint", str(checkpoint), "--data", str(data),
                                      "--out", str(tmp_path / "dist"), "--work-dir", str(tmp_path / "work"),
                                      "--seq-len", str(SEQ_LEN), "--epochs", "1", "--batch-size", "16",
                                      "--compress-epochs", "1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "dist" / "manifest.json").read_text())
    by_name = {m["name"]: m for m in manifest["models"]}
    assert len(by_name) >= 19 and manifest["default_model"]["name"] in by_name
    report = json.loads((tmp_path / "work" / "report.json").read_text())

    # The 12-layer teacher's 3-layer student starts from every 4th layer, ending at the last one.
    assert report["distillation"]["teacher_layers"] == [3, 7, 11]
    teacher, student = by_name["teacher-float32"]["arch"], by_name["student-float32"]["arch"]
    assert (teacher["layers"], teacher["hidden"], teacher["heads"], teacher["intermediate"]) == (12, 768, 12, 3072)
    assert (student["layers"], student["hidden"], student["heads"], student["intermediate"]) == (3, 768, 12, 3072)
    structured, slim = by_name["student-structured-int8"]["arch"], by_name["student-slim-int8"]["arch"]
    assert structured["heads"] == [6] * 3 and structured["intermediate"] == [2304] * 3  # 50 % heads, 75 % FFN of 768-wide
    assert slim["heads"] == [6] * 3 and slim["intermediate"] == [1536] * 3 and slim["hidden"] == 768

    # Every file: a [1, 16] signature and a size that its architecture and precision explain.
    from device_runtime.interpreter import TFLiteModel

    bytes_per_weight = {"float32": 4, "float16": 2}
    for name, entry in by_name.items():
        files = {SEQ_LEN: entry["file"]} | {int(k.split("_")[1]): entry[k] for k in entry if k.startswith("bucket_")}
        for length, file in files.items():
            shapes = TFLiteModel(tmp_path / "dist" / file).input_shapes()
            assert all(shape == [1, length] for shape in shapes.values()), (file, shapes)
        matrices, others = _weights(entry)
        bits = entry.get("weight_bits")  # int4w: 4 or 8 bits per group
        per_low = min(bits.values()) / 8 if bits else bytes_per_weight.get(entry["quantization"], 1)
        per_high = max(bits.values()) / 8 if bits else per_low
        low, high = matrices * per_low, (matrices * per_high + others * 4) * 1.05 + 400_000
        assert low <= entry["bytes"] <= high, f"{name}: {entry['bytes']:,} bytes outside [{low:,}, {high:,.0f}]"
    assert by_name["teacher-float32"]["bytes"] > 340e6 and by_name["student-int8"]["bytes"] < 30e6
    assert [m["source_model"] for m in manifest["mobile"]] == [manifest["default_model"]["name"]]
