"""The converter's output is the kit's own lines: native and framework start-up noise parked."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from converter import quiet
from tests.helpers import TINY_BERT

ROOT = Path(__file__).resolve().parents[1]
NOISE = re.compile(r"cuInit|cuda|absl|oneDNN|^[IWE]\d{4} |fully_quantize|XNNPACK|rebuild TensorFlow", re.I | re.M)


@pytest.fixture
def parking(monkeypatch):
    monkeypatch.setitem(quiet.PARKING, "on", True)


def test_native_output_is_parked(parking, capfd):
    with quiet.native_output_parked():
        os.write(1, b"native stdout\n")
        os.write(2, b"native stderr\n")
    os.write(2, b"after\n")
    out, err = capfd.readouterr()
    assert "native" not in out + err
    assert err == "after\n"


def test_native_output_of_a_failing_block_is_replayed_on_stderr(parking, capfd):
    with pytest.raises(RuntimeError, match="boom"), quiet.native_output_parked():
        os.write(2, b"the converter's own error text\n")
        raise RuntimeError("boom")
    assert "the converter's own error text" in capfd.readouterr().err


def test_without_parking_native_output_passes(monkeypatch, capfd):
    monkeypatch.setitem(quiet.PARKING, "on", False)  # a CLI test in this process may have turned it on
    with quiet.native_output_parked():
        os.write(1, b"seen\n")
    assert capfd.readouterr().out == "seen\n"


def _cli(*args, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TRANSFORMERS_VERBOSITY")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "converter", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def test_an_export_prints_only_the_kits_lines(tmp_path):
    calibration = tmp_path / "calibration.txt"
    calibration.write_text("the profit rose\nsales fell by 10 %\nnet sales of the company\n")
    run = _cli("export", "--checkpoint", str(TINY_BERT), "--seq-len", "7", "--quantization", "float32,int8",
               "--calibration-data", str(calibration),
               "--out", str(tmp_path / "dist"), tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "model-float32" in run.stdout
    assert not NOISE.search(run.stdout + run.stderr), run.stdout + run.stderr


def test_help_prints_nothing_on_stderr(tmp_path):
    run = _cli("convert", "--help", tmp_path=tmp_path)
    assert run.returncode == 0
    assert "--checkpoint" in run.stdout
    assert run.stderr == ""
