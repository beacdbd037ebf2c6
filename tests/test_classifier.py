"""The Python API on the tiny bundle: batches, threads, agreement with the CLI, and streaming stdin."""

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from device_runtime import Classifier, Prediction, cli

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["the profit rose", "sales fell by 10 %", "", "net sales of the company", "profit " * 20, "Profit ROSE"]


@pytest.fixture(scope="module")
def classifier(bundle_dir):
    return Classifier.from_bundle(bundle_dir)


def test_prediction_is_a_frozen_record(classifier):
    result = classifier.predict("the profit rose")
    assert isinstance(result, Prediction) and classifier.name == "model-int8"
    assert list(result.probabilities) == classifier.labels == ["negative", "neutral", "positive"]
    assert result.label == max(result.probabilities, key=result.probabilities.get)
    assert abs(sum(result.probabilities.values()) - 1) < 1e-5
    assert classifier.predict("profit " * 20).truncated and not result.truncated
    with pytest.raises(AttributeError):
        result.label = "positive"


def test_batch_equals_single_calls(classifier):
    assert classifier.predict(TEXTS) == [classifier.predict(text) for text in TEXTS]
    assert classifier.predict([]) == []
    with pytest.raises(TypeError, match="str or a list of str"):
        classifier.predict([b"bytes"])


def test_threads_share_one_classifier(bundle_dir):
    shared = Classifier.from_bundle(bundle_dir, model="model-float32")
    expected = shared.predict(TEXTS)
    names = set()

    def work(start: int) -> list:
        names.add(threading.get_ident())
        return [shared.predict(TEXTS[(start + i) % len(TEXTS)]) for i in range(50)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(4)))
    for start, got in enumerate(results):
        assert got == [expected[(start + i) % len(TEXTS)] for i in range(50)]
    assert len(names) > 1  # the calls really came from several threads


def test_cli_classify_json_equals_the_api(bundle_dir, classifier, capsys):
    assert cli.main(["classify", "--bundle", str(bundle_dir), "--json", *TEXTS]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["text"], r["model"]) for r in rows] == [(t, "model-int8") for t in TEXTS]
    assert [Prediction(r["label"], r["probabilities"], r["truncated"]) for r in rows] == classifier.predict(TEXTS)


def test_classify_answers_each_stdin_line_as_it_arrives(bundle_dir, classifier):
    process = subprocess.Popen([sys.executable, "-m", "device_runtime", "classify", "--bundle", str(bundle_dir), "--json"],
                               cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    try:
        process.stdin.write(b"the profit rose\n")
        process.stdin.flush()
        reader.start()
        reader.join(timeout=60)  # stdin is still open: an answer now means it was not held back until EOF
        assert lines and lines[0], "no answer before stdin was closed"
        assert json.loads(lines[0])["probabilities"] == classifier.predict("the profit rose").probabilities
    finally:
        process.kill()
        process.wait()


def test_importing_the_package_stays_light():
    code = "import sys, device_runtime; print(sorted(m for m in ('numpy', 'device_runtime.bundle') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # Classifier is imported on first use
