"""What a user ships: the default model chosen on dev, calibrated probabilities, the model card,
the device/ pack, and figures that name their platform."""

import json
import shutil

import numpy as np
import pytest

from converter.errors import ConfigError
from converter.export.choice import choose_default, encoder_macs, run_length
from device_runtime import cli
from device_runtime.bundle import Bundle
from device_runtime.calibration import expected_calibration_error, fit_temperature, nll, reliability, softmax
from device_runtime.card import render_card
from device_runtime.classifier import Classifier
from device_runtime.format import MODEL_CARD
from device_runtime.platforms import describe, int8_features

ARCH3 = {"layers": 3, "hidden": 12, "heads": 3, "head_size": 4, "intermediate": 20}


def _entry(name, dev, test, quantization="int8", arch=ARCH3, **extra):
    return {"name": name, "quantization": quantization, "arch": arch, "seq_len": 16,
            "metrics": {"dev": {"accuracy": dev}, "test": {"accuracy": test}}, **extra}


def test_encoder_macs_by_hand():
    # one layer, hidden 12, 2 heads of 4 (width 8), FFN 20, length 5:
    # 5 * (4 * 12 * 8 + 2 * 12 * 20) + 2 * 25 * 8 = 5 * 864 + 400 = 4720
    assert encoder_macs({"layers": 1, "hidden": 12, "heads": [2], "head_size": 4, "intermediate": [20]}, 5) == 4720
    assert run_length({"buckets": [8, 16, 32]}, 64, 9) == 16 and run_length({"seq_len": 64}, 64, 9) == 64


def test_default_is_the_cheapest_model_near_the_best_dev_accuracy():
    small = dict(ARCH3, layers=1)
    models = [_entry("teacher-float32", 0.90, 0.80, "float32"), _entry("teacher-int8", 0.898, 0.70),
              _entry("student-int8", 0.897, 0.95, arch=small), _entry("student-float32", 0.896, 0.95, "float32", small),
              _entry("tiny-int8", 0.85, 0.99, arch=dict(small, intermediate=4))]
    sizes = {m["name"]: 1_000_000 for m in models}
    record = choose_default(models, sizes, 16, 9, tolerance_points=0.5, budget_mb=25)
    # within 0.5 points of 0.90: all but tiny-int8; fewest MACs: the 1-layer students; int8 before float32
    assert record["name"] == "student-int8" and record["chosen_by"] == "rule"
    assert record["candidates"] == ["student-float32", "student-int8", "teacher-float32", "teacher-int8"]
    assert record["best_dev_accuracy"] == 0.90
    # test figures never enter the rule: reversing them changes nothing
    flipped = [dict(m, metrics={**m["metrics"], "test": {"accuracy": 1 - m["metrics"]["test"]["accuracy"]}}) for m in models]
    assert choose_default(flipped, sizes, 16, 9, 0.5, 25)["name"] == "student-int8"
    # a size budget the students miss
    sizes.update({"student-int8": 30_000_000, "student-float32": 30_000_000})
    assert choose_default(models, sizes, 16, 9, 0.5, 25)["name"] == "teacher-int8"
    assert choose_default(models, sizes, 16, 9, 0.5, 0)["name"] == "student-int8"  # 0: no budget
    assert choose_default(models, sizes, 16, 9, 5.0, 25)["name"] == "tiny-int8"  # a wider tolerance


def test_default_tolerance_is_one_standard_error_of_the_best_dev_accuracy():
    models = [_entry("teacher-float32", 0.9, 0.9, "float32"), _entry("student-int8", 0.88, 0.9, arch=dict(ARCH3, layers=1)),
              _entry("tiny-int8", 0.87, 0.9, arch=dict(ARCH3, layers=1, intermediate=4))]
    for m in models:
        m["metrics"]["dev"]["n"] = 400
    sizes = {m["name"]: 1 for m in models}
    # sqrt(0.9 * 0.1 / 400) = 0.015: 1.5 points, so 0.885 and above; 0.88 is out
    record = choose_default(models, sizes, 16, 9, None, 25)
    assert record["tolerance_points"] == 1.5 and "one standard error (1.5 points)" in record["rule"]
    assert record["name"] == "teacher-float32"
    for m in models:
        m["metrics"]["dev"]["n"] = 100  # 3 points: both students in, the cheaper one wins
    assert choose_default(models, sizes, 16, 9, None, 25)["name"] == "tiny-int8"


def test_default_model_override_is_checked():
    models = [_entry("a-int8", 0.9, 0.9), _entry("b-int8", 0.8, 0.8)]
    sizes = {"a-int8": 1, "b-int8": 1}
    assert choose_default(models, sizes, 16, 9, 0.5, 25, name="b-int8")["chosen_by"] == "--default-model"
    with pytest.raises(ConfigError, match="'c-int8' is not in the bundle"):
        choose_default(models, sizes, 16, 9, 0.5, 25, name="c-int8")


def test_temperature_minimizes_the_nll_and_keeps_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3))
    logits[np.arange(400), labels] += 1.0
    overconfident = 5 * logits
    temperature = fit_temperature(overconfident, labels)
    grid = np.exp(np.linspace(-3, 3, 6001))
    best = grid[np.argmin([nll(overconfident, labels, t) for t in grid])]
    assert temperature == pytest.approx(best, rel=2e-3) and temperature > 1
    assert (softmax(overconfident, temperature).argmax(-1) == overconfident.argmax(-1)).all()
    assert expected_calibration_error(softmax(overconfident, temperature), labels) < expected_calibration_error(
        softmax(overconfident), labels)


def test_ece_by_hand():
    probabilities = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, 1, 0])
    # bins (13/15, 14/15]: two rows at 0.9, one right -> |0.5 - 0.9|; (7/15, 8/15]: 0.5, right -> |1 - 0.5|;
    # (11/15, 12/15]: 0.8, wrong -> |0 - 0.8|.  ECE = 2/4 * 0.4 + 1/4 * 0.5 + 1/4 * 0.8 = 0.525
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.525)
    assert [row["count"] for row in reliability(probabilities, labels)] == [1, 1, 2]


def test_int8_features_read_from_cpuinfo():
    x86 = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nCPU part\t: 0xd0b\n"
    assert int8_features(x86) == ["avx2", "avx512f", "avx512_vnni"]
    assert int8_features(arm) == ["asimddp", "i8mm"]
    assert describe({"machine": "aarch64", "cpu": "Cortex-A72", "int8_features": [], "emulated": True}) == (
        "aarch64 under emulation, Cortex-A72 (no int8 dot-product features listed)")


@pytest.fixture()
def shipped(bundle_dir, tmp_path):
    return shutil.copytree(bundle_dir, tmp_path / "copy")


def test_the_exported_bundle_records_dev_figures_platform_and_temperature(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    for entry in manifest["models"]:
        metrics = entry["metrics"]
        assert {"dev", "test", "platform", "calibration"} <= set(metrics)
        assert metrics["platform"]["int8_features"] == int8_features()
        assert entry["temperature"] == metrics["calibration"]["temperature"] > 0
    record = manifest["default_model"]
    assert record["name"] in {m["name"] for m in manifest["models"]} and record["chosen_by"] == "rule"
    assert (bundle_dir / MODEL_CARD).read_text() == render_card(manifest)
    device = json.loads((bundle_dir / "device" / "manifest.json").read_text())
    assert [m["name"] for m in device["models"]] == [record["name"]]
    assert sorted(p.name for p in (bundle_dir / "device").iterdir()) == sorted(
        [MODEL_CARD, "manifest.json", "vocab.txt", device["models"][0]["file"]])


def test_classifier_applies_the_temperature(shipped):
    manifest = json.loads((shipped / "manifest.json").read_text())
    name = manifest["models"][0]["name"]
    manifest["models"][0]["temperature"] = 3.0
    (shipped / "manifest.json").write_text(json.dumps(manifest))
    bundle = Bundle(shipped)
    _, model = bundle.load(name)
    enc = bundle.tokenizer.encode("the profit rose", bundle.seq_len)
    logits = model.predict(enc)[0]
    result = Classifier.from_bundle(shipped, name).predict("the profit rose")
    assert list(result.probabilities.values()) == pytest.approx(list(softmax(logits, 3.0)), abs=1e-6)
    assert result.label == manifest["labels"][int(logits.argmax())]


def test_commands_use_the_default_model(shipped, capsys):
    manifest = json.loads((shipped / "manifest.json").read_text())
    other = next(m["name"] for m in manifest["models"] if m["name"] != manifest["default_model"]["name"])
    manifest["default_model"] = {"name": other}
    (shipped / "manifest.json").write_text(json.dumps(manifest))
    (shipped / MODEL_CARD).write_text(render_card(manifest))
    assert cli.main(["classify", "--bundle", str(shipped), "--json", "the profit rose"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == other
    assert cli.main(["pack", "--bundle", str(shipped), "--out", str(shipped.parent / "packed")]) == 0
    assert json.loads((shipped.parent / "packed" / "manifest.json").read_text())["models"][0]["name"] == other


def test_verify_checks_the_model_card(shipped, capsys):
    assert cli.main(["verify", "--bundle", str(shipped)]) == 0
    assert f"ok  {MODEL_CARD} matches the manifest" in capsys.readouterr().out
    card = shipped / MODEL_CARD
    card.write_text(card.read_text().replace("0.", "0.9", 1))
    assert cli.main(["verify", "--bundle", str(shipped)]) == 1
    assert f"BAD {MODEL_CARD}: does not match" in capsys.readouterr().out
    card.unlink()
    assert cli.main(["verify", "--bundle", str(shipped)]) == 1
    assert "model card missing" in capsys.readouterr().err


def test_the_card_states_licenses_and_limits(bundle_dir):
    card = (bundle_dir / MODEL_CARD).read_text()
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["provenance"]["teacher"] == "the checkpoint as given (not trained by the kit)"
    assert "non-commercial" not in card  # an exported checkpoint's data license is unknown to the kit
    trained = dict(manifest, provenance=dict(manifest["provenance"], training_data_license="CC BY-NC-SA 3.0"))
    text = render_card(trained)
    assert "license CC BY-NC-SA 3.0" in text and "non-commercial purposes only" in text
    assert f"cut to {manifest['seq_len']} tokens" in text and "social media" in text
    for entry in manifest["models"]:
        assert f"{entry['file']}: sha256 {entry['sha256']}" in card


@pytest.mark.parametrize("field, value", [("temperature", 0), ("temperature", -1.0), ("temperature", "2"),
                                          ("temperature", float("inf")), ("default_model", "x"),
                                          ("default_model", {"name": "no-such-model"})])
def test_bad_calibration_and_default_fields_are_one_error_line(shipped, capsys, field, value):
    manifest = json.loads((shipped / "manifest.json").read_text())
    if field == "temperature":
        manifest["models"][0][field] = value
    else:
        manifest[field] = value
    (shipped / "manifest.json").write_text(json.dumps(manifest))
    assert cli.main(["classify", "--bundle", str(shipped), "profit"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and field in err


def test_arm_check_rule_and_record(shipped):
    from benchmarks.arm_check import agreement_holds, record

    assert agreement_holds("float32", 483, 483, 0.98)[0] and not agreement_holds("float32", 482, 483, 0.98)[0]
    assert agreement_holds("int8", 482, 483, 0.98)[0] and not agreement_holds("int8", 470, 483, 0.98)[0]
    assert agreement_holds("dynamic", 474, 483, 0.98)[0]  # integer weights: arithmetic may differ by CPU
    manifest = json.loads((shipped / "manifest.json").read_text())
    name = manifest["default_model"]["name"]
    result = {"platform": {"machine": "aarch64", "cpu": "Cortex-A72", "int8_features": [], "emulated": True},
              "test": {"accuracy": 0.5, "macro_f1": 0.4, "n": 8},
              "label_agreement": {"same": 7, "n": 8, "max_probability_difference": 0.37}}
    changed = record(shipped, name, result)
    assert changed == [shipped / "manifest.json", shipped / "device" / "manifest.json"]
    record(shipped, name, result)  # the same platform again replaces, never duplicates
    for folder in (shipped, shipped / "device"):
        written = json.loads((folder / "manifest.json").read_text())
        entry = next(m for m in written["models"] if m["name"] == name)
        assert entry["platform_metrics"] == [result]
        card = (folder / MODEL_CARD).read_text()
        assert "aarch64 under emulation, Cortex-A72" in card and "on 7/8 sentences" in card
        assert cli.main(["verify", "--bundle", str(folder)]) == 0
