"""Bring your own classifier: a fine-tuned checkpoint as the teacher as it is (convert --teacher-as-is)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from converter.cli import app
from converter.config import LABELS
from converter.jobs.context import prepare
from converter.jobs.convert import teacher_labels
from converter.modeling import hf_weights as ck
from device_runtime.interpreter import TFLiteModel
from tests.helpers import FIXTURES, relabelled_checkpoint, tiny_config, write_split

runner = CliRunner()
FINBERT_ORDER = ("positive", "negative", "neutral")  # ProsusAI/finbert's id2label


def _fixture_logits(order):
    """transformers' logits of the tiny classifier (tiny_reference.npz, our order), as the
    relabelled fixture gives them: column j is label order[j]."""
    reference = np.load(FIXTURES / "tiny_reference.npz")
    return reference, reference["logits"][:, [LABELS.index(label) for label in order]]


def test_teacher_as_is_end_to_end(tmp_path):
    checkpoint = relabelled_checkpoint(tmp_path / "finbert", FINBERT_ORDER)
    data = write_split(tmp_path / "data")
    result = runner.invoke(app, ["convert", "--checkpoint", str(checkpoint), "--data", str(data), "--out",
                                 str(tmp_path / "dist"), "--work-dir", str(tmp_path / "work"), "--seq-len", "7",
                                 "--batch-size", "4", "--student-layers", "1", "--compress-epochs", "1", "--teacher-as-is",
                                 "--no-lowbit"])  # test_cli covers the int4w stage
    assert result.exit_code == 0, result.output
    assert "used as given (labels positive, negative, neutral mapped to negative, neutral, positive" in result.output
    manifest = json.loads((tmp_path / "dist" / "manifest.json").read_text())
    assert tuple(manifest["labels"]) == LABELS and manifest["provenance"]["teacher_as_is"] is True
    assert "used as given" in manifest["provenance"]["teacher"]
    # the students were trained here on the split: its license passes to them
    assert manifest["provenance"]["training_data_license"] == "CC BY-NC-SA 3.0"
    assert not list((tmp_path / "work" / "teacher").glob("last-*")), "the teacher was fine-tuned"

    # Every teacher file: the fixture's own logits, mapped to our order by label name.
    reference, own = _fixture_logits(FINBERT_ORDER)
    by_name = own[:, [FINBERT_ORDER.index(label) for label in LABELS]]
    by_entry = {m["name"]: m for m in manifest["models"]}
    float_file = TFLiteModel(tmp_path / "dist" / by_entry["teacher-float32"]["file"])
    for row in range(len(reference["input_ids"])):
        logits = float_file.predict({"input_ids": reference["input_ids"][row:row + 1],
                                 "attention_mask": reference["attention_mask"][row:row + 1]})
        np.testing.assert_allclose(logits[0], by_name[row], atol=2e-5)
    for quantization in ("dynamic", "float16", "int8"):
        assert f"teacher-{quantization}" in by_entry

    # The student learned from those mapped logits: the distillation cache holds the mapped
    # teacher's logits on the training rows, computed here from the original (our-order) checkpoint.
    cfg = tiny_config(tmp_path / "check")
    ctx = prepare(cfg, ck.resolve_checkpoint(cfg.checkpoint))
    original, *_ = ck.build_from_checkpoint(cfg.checkpoint, 7)
    expected = original.predict(list(ctx.splits["train"].inputs.values()), verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "work" / "teacher_train_logits.npy"), expected, atol=1e-5)
    student_state = json.loads((tmp_path / "work" / "student" / "state.json").read_text())
    assert student_state["epoch"] == 1 and {"student-int8", "student-structured-int8"} <= set(by_entry)


@pytest.mark.parametrize("as_is, order, head, expected", [
    (None, FINBERT_ORDER, True, FINBERT_ORDER),  # auto: a head naming our labels is used as given
    (None, ("label_0", "label_1", "label_2"), True, None),  # placeholders name nothing: fine-tune
    (None, FINBERT_ORDER, False, None),  # no head: fine-tune
    (False, FINBERT_ORDER, True, None),  # --fine-tune-teacher
    (True, ("Positive", "NEGATIVE", "neutral"), True, ("positive", "negative", "neutral")),  # names in any case
])
def test_when_the_teacher_is_used_as_given(tmp_path, as_is, order, head, expected):
    folder = relabelled_checkpoint(tmp_path / "ckpt", order, head=head)
    cfg = tiny_config(tmp_path)
    from dataclasses import replace

    assert teacher_labels(replace(cfg, teacher_as_is=as_is), folder) == expected


@pytest.mark.parametrize("order, head, message", [
    (("bullish", "bearish", "neutral"), True, "names bullish, bearish, neutral; not ours: bullish, bearish; "
                                              "missing: negative, positive"),
    (("label_0", "label_1", "label_2"), True, "not ours: label_0, label_1, label_2"),
    (FINBERT_ORDER, False, "has no classifier"),
])
def test_teacher_as_is_refuses_one_line(tmp_path, order, head, message):
    checkpoint = relabelled_checkpoint(tmp_path / "ckpt", order, head=head)
    result = runner.invoke(app, ["convert", "--checkpoint", str(checkpoint), "--data", str(write_split(tmp_path / "d")),
                                 "--out", str(tmp_path / "dist"), "--work-dir", str(tmp_path / "w"), "--seq-len", "7",
                                 "--teacher-as-is"])
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "dist").exists()


def test_fine_tune_starts_from_the_head_mapped_by_name(tmp_path):
    """--fine-tune-teacher on a head in another order starts from that head, mapped by name."""
    checkpoint = relabelled_checkpoint(tmp_path / "finbert", FINBERT_ORDER)
    model, _, labels, _ = ck.build_from_checkpoint(str(checkpoint), 7)
    ck.to_kit_order(model, labels)
    reference, _ = _fixture_logits(FINBERT_ORDER)
    logits = model.predict([reference["input_ids"], reference["attention_mask"]], verbose=0)
    np.testing.assert_allclose(logits, reference["logits"], atol=2e-5)
