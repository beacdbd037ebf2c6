"""The MediaPipe file (`python -m converter mobile`): the edited graph through LiteRT and through MediaPipe's
own TextClassifier, its metadata, the pinned metadata writer, and verify's checks of `mobile` entries."""

import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils
from typer.testing import CliRunner

from benchmarks.mobile_check import mediapipe_scores, mediapipe_style
from converter.cli import app
from converter.export import mobile as mobile_module
from converter.export.mobile import add_metadata, export_mobile, metadata_writers, mobile_graph, tensor_name
from device_runtime import cli
from device_runtime.bundle import Bundle, softmax
from device_runtime.classifier import Classifier
from device_runtime.format import ATTENTION_MASK, INPUT_IDS, MOBILE_INPUT_NAMES
from device_runtime.interpreter import TFLiteModel
from device_runtime.tokenizer import WordPieceTokenizer
from tests.test_untrusted_bundle import edit_manifest, run_failing

FLOAT32, INT8 = "model-float32", "model-int8"
TEXTS = ["The profit rose by 10 %", "Net sales fell", "EUR 1 mn to the company", "operating loss increased in the quarter",
         "shares up", ""]
# sha256 of the TFLITE_METADATA buffer mediapipe 1.2.2's writer makes for GOLDEN_INFO and the tiny bundle's labels
# (the model only adds its output type). A new writer or mediapipe version must reproduce it or be looked at.
GOLDEN_INFO = {"name": "tiny", "version": "1", "description": "a tiny model", "licenses": "CC0"}
GOLDEN_METADATA_SHA256 = "60b795bda7c568f861983e2f8144ed652d8f69d51abad074a948fda488ab61d3"
runner = CliRunner()


def _copy(bundle_dir: Path, folder: Path) -> Path:
    return Path(shutil.copytree(bundle_dir, folder))


@pytest.fixture(scope="module")
def mobile_bundle(bundle_dir, tmp_path_factory):
    """A copy of the tiny bundle holding the MediaPipe files of both its models."""
    folder = _copy(bundle_dir, tmp_path_factory.mktemp("mobile") / "dist")
    for name in (FLOAT32, INT8):
        export_mobile(folder, name)
    return folder


def litert(path: Path, texts, tokenizer: WordPieceTokenizer, seq_len: int, segment: int = 0) -> np.ndarray:
    """The mobile file through LiteRT, fed by name: our ids and mask, segment ids all `segment`."""
    model = TFLiteModel(path, seq_len=seq_len)
    rows = []
    for text in texts:
        enc = tokenizer.encode(text, seq_len)
        ids = enc[INPUT_IDS]
        rows.append(model.predict(dict(zip(MOBILE_INPUT_NAMES, (ids, enc[ATTENTION_MASK], np.full_like(ids, segment))))))
    return np.concatenate(rows)


def source_probabilities(bundle: Path, name: str, texts, temperature: float | None = None) -> np.ndarray:
    """softmax(logits / T) of the source file, run through device_runtime (its id map applied); T: the entry's."""
    b = Bundle(bundle)
    entry, model = b.load(name)
    temperature = entry.get("temperature", 1.0) if temperature is None else temperature
    return np.stack([softmax(model.predict(b.tokenizer.encode(t, b.seq_len))[0] / temperature) for t in texts])


def metadata_of(data: bytes) -> tuple[bytes, dict[str, bytes]]:
    """(the TFLITE_METADATA buffer, {associated file name: bytes}) of a populated .tflite."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    buffer = next(m.buffer for m in model.metadata if m.name == b"TFLITE_METADATA")
    with zipfile.ZipFile(io.BytesIO(data)) as packed:
        files = {name: packed.read(name) for name in packed.namelist()}
    return bytes(model.buffers[buffer].data), files


def metadata_json(data: bytes) -> dict:
    metadata_writers()  # the import path the writer needs
    from mediapipe.tasks.python.metadata import metadata

    return json.loads(metadata.MetadataDisplayer.with_model_buffer(data).get_metadata_json())


def test_three_inputs_wired_by_name_through_litert_and_mediapipe(mobile_bundle):
    b = Bundle(mobile_bundle)
    for name in (FLOAT32, INT8):
        path = mobile_bundle / f"{name}.mediapipe.tflite"
        model = TFLiteModel(path, seq_len=7)
        assert {k: (v["shape"].tolist(), v["dtype"]) for k, v in model.inputs.items()} == {
            n: ([1, 7], np.int32) for n in MOBILE_INPUT_NAMES}
        subgraph = flatbuffer_utils.read_model_from_bytearray(path.read_bytes()).subgraphs[0]
        assert [subgraph.tensors[i].name.decode() for i in subgraph.inputs] == [tensor_name(n) for n in MOBILE_INPUT_NAMES]
        ours = litert(path, TEXTS, b.tokenizer, 7)
        np.testing.assert_array_equal(litert(path, TEXTS, b.tokenizer, 7, segment=1), ours)  # read by no operator
        np.testing.assert_allclose(mediapipe_scores(path, TEXTS)[0], ours, atol=1e-6)  # MediaPipe feeds the same tensors
        np.testing.assert_allclose(ours, source_probabilities(mobile_bundle, name, TEXTS), atol=1e-6)
        assert (ours.argmax(1) == source_probabilities(mobile_bundle, name, TEXTS).argmax(1)).all()


def test_metadata_names_the_inputs_in_the_models_order(mobile_bundle):
    described = metadata_json((mobile_bundle / f"{INT8}.mediapipe.tflite").read_bytes())["subgraph_metadata"][0]
    assert [t["name"] for t in described["input_tensor_metadata"]] == ["ids", "mask", "segment_ids"]
    assert described["output_tensor_metadata"][0]["associated_files"][0]["name"] == "labels.txt"


def test_swapped_mask_and_segment_names_change_mediapipes_scores(mobile_bundle, tmp_path):
    """The writer accepts swapped names silently; the wiring test above is what catches them."""
    path = mobile_bundle / f"{FLOAT32}.mediapipe.tflite"
    graph = mobile_graph((mobile_bundle / f"{FLOAT32}.tflite").read_bytes())
    _, metadata_writer, text_classifier = metadata_writers()
    ids, mask, segment = (tensor_name(n) for n in MOBILE_INPUT_NAMES)
    writer = text_classifier.MetadataWriter.create_for_bert_model(
        bytearray(graph), tokenizer=metadata_writer.BertTokenizer(str(mobile_bundle / "vocab.txt")),
        labels=metadata_writer.Labels().add(Bundle(mobile_bundle).labels), ids_name=ids, mask_name=segment,
        segment_name=mask)
    swapped = tmp_path / "swapped.tflite"
    swapped.write_bytes(bytes(writer.populate()[0]))
    good, bad = mediapipe_scores(path, TEXTS)[0], mediapipe_scores(swapped, TEXTS)[0]
    assert np.abs(good - bad).max() > 1e-3  # MediaPipe now feeds the all-zero segment ids as the mask


def test_mediapipe_keeps_accents_as_mobile_check_assumes(mobile_bundle):
    path, b = mobile_bundle / f"{FLOAT32}.mediapipe.tflite", Bundle(mobile_bundle)
    texts, styled = ["The profit rosé", "PROFIT ROSE"], WordPieceTokenizer(b.tokenizer.vocab, lowercase=False)
    scores = mediapipe_scores(path, texts)[0]
    np.testing.assert_allclose(scores, litert(path, [mediapipe_style(t) for t in texts], styled, 7), atol=1e-6)
    assert styled.encode(mediapipe_style(texts[0]))[INPUT_IDS] != b.tokenizer.encode(texts[0])[INPUT_IDS]  # rosé: [UNK]
    np.testing.assert_allclose(scores[1], litert(path, texts[1:], b.tokenizer, 7)[0], atol=1e-6)  # ASCII case: as ours


def test_probabilities_are_the_softmax_of_the_logits_over_the_entrys_temperature(bundle_dir, tmp_path):
    folder = _copy(bundle_dir, tmp_path / "dist")
    edit_manifest(folder, lambda m: next(e for e in m["models"] if e["name"] == INT8).update(temperature=2.5))
    export_mobile(folder, INT8)
    got = litert(folder / f"{INT8}.mediapipe.tflite", TEXTS, Bundle(folder).tokenizer, 7)
    np.testing.assert_allclose(got, source_probabilities(folder, INT8, TEXTS, 2.5), atol=1e-6)
    assert np.abs(got - source_probabilities(folder, INT8, TEXTS, 1.0)).max() > 1e-4  # T = 1 gives other numbers


def _constants(data: bytes) -> dict[str, tuple]:
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    out = {}
    for tensor in model.subgraphs[0].tensors:
        data = model.buffers[tensor.buffer].data
        q = tensor.quantization
        scales = None if q is None or q.scale is None else (q.scale.tolist(), q.zeroPoint.tolist())
        if data is not None and len(data):
            out[tensor.name.decode()] = (bytes(data), tensor.type, scales)
    return out


@pytest.mark.parametrize("name", [FLOAT32, INT8])
def test_every_weight_and_quantization_of_the_source_is_kept_byte_for_byte(mobile_bundle, name):
    source = _constants((mobile_bundle / f"{name}.tflite").read_bytes())
    mobile = _constants((mobile_bundle / f"{name}.mediapipe.tflite").read_bytes())
    assert len(source) > 20 and {k: mobile[k] for k in source} == source
    assert set(mobile) - set(source) <= {"mobile/id_map"}


def test_metadata_holds_the_vocab_labels_name_version_and_license(mobile_bundle):
    manifest = json.loads((mobile_bundle / "manifest.json").read_text())
    data = (mobile_bundle / f"{INT8}.mediapipe.tflite").read_bytes()
    _, files = metadata_of(data)
    assert sorted(files) == ["labels.txt", "vocab.txt"]
    assert hashlib.sha256(files["vocab.txt"]).hexdigest() == manifest["vocab_sha256"]
    assert files["labels.txt"].decode().split("\n") == manifest["labels"] == ["negative", "neutral", "positive"]
    described = metadata_json(data)
    source = next(e for e in manifest["models"] if e["name"] == INT8)
    assert described["name"] == INT8 and source["sha256"][:12] in described["version"]
    assert "negative, neutral, positive" in described["description"]
    assert manifest["provenance"]["training_data_license"] in described["license"]
    assert described["min_parser_version"] == "1.1.0"
    entry = next(m for m in manifest["mobile"] if m["source_model"] == INT8)
    assert entry == {"name": f"{INT8}.mediapipe", "file": f"{INT8}.mediapipe.tflite", "sha256": hashlib.sha256(data).hexdigest(),
                     "bytes": len(data), "format": "mediapipe", "source_model": INT8, "source_sha256": source["sha256"]}


def test_the_pinned_writer_still_writes_the_golden_metadata(bundle_dir):
    b = Bundle(bundle_dir)
    graph = mobile_graph((bundle_dir / f"{FLOAT32}.tflite").read_bytes())
    metadata, files = metadata_of(add_metadata(graph, b.vocab_path, b.labels, GOLDEN_INFO))
    assert hashlib.sha256(metadata).hexdigest() == GOLDEN_METADATA_SHA256
    assert sorted(files) == ["labels.txt", "vocab.txt"]


def test_an_id_map_becomes_a_gather_in_the_graph(bundle_dir, tmp_path):
    folder = _copy(bundle_dir, tmp_path / "dist")
    mapping = np.arange(40, dtype=np.int16)
    mapping[5:] = mapping[5:][::-1]  # every word to another row: the map must change what the model sees
    np.save(folder / "m.idmap.npy", mapping)
    sha = hashlib.sha256((folder / "m.idmap.npy").read_bytes()).hexdigest()
    edit_manifest(folder, lambda m: next(e for e in m["models"] if e["name"] == FLOAT32).update(
        id_map_file="m.idmap.npy", id_map_sha256=sha))
    export_mobile(folder, FLOAT32)
    path = folder / f"{FLOAT32}.mediapipe.tflite"
    got = litert(path, TEXTS, Bundle(folder).tokenizer, 7)
    device = np.array([list(p.probabilities.values()) for p in Classifier.from_bundle(folder, FLOAT32).predict(TEXTS)])
    np.testing.assert_allclose(got, device, atol=1e-6)
    np.testing.assert_allclose(mediapipe_scores(path, TEXTS)[0], got, atol=1e-6)
    unmapped = source_probabilities(bundle_dir, FLOAT32, TEXTS)
    assert np.abs(got - unmapped).max() > 1e-4  # without the GATHER the file would give these


def test_an_int8_output_is_dequantized_before_the_softmax(mobile_bundle, tmp_path):
    source = (mobile_bundle / f"{INT8}.tflite").read_bytes()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(source))
    graph, signature = model.subgraphs[0], model.signatureDefs[0]
    last = graph.operators.pop()  # the converter's DEQUANTIZE of the logits
    assert flatbuffer_utils.opcode_to_name(model, last.opcodeIndex) == "DEQUANTIZE"
    graph.outputs = np.array(last.inputs, np.int32)
    signature.outputs[0].tensorIndex = int(last.inputs[0])
    int8_out = tmp_path / "int8_out.tflite"
    int8_out.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    assert graph.tensors[last.inputs[0]].type == schema.TensorType.INT8
    mobile = tmp_path / "mobile.tflite"
    mobile.write_bytes(mobile_graph(int8_out.read_bytes()))
    b = Bundle(mobile_bundle)
    expected = [softmax(TFLiteModel(int8_out).predict(b.tokenizer.encode(t, 7))[0]) for t in TEXTS]  # dequantized
    np.testing.assert_allclose(litert(mobile, TEXTS, b.tokenizer, 7), np.stack(expected), atol=1e-6)


def test_cli_writes_replaces_and_refuses_with_one_line(bundle_dir, tmp_path):
    folder = _copy(bundle_dir, tmp_path / "dist")
    for _ in range(2):  # the second run replaces the entry
        result = runner.invoke(app, ["mobile", "--bundle", str(folder)])
        assert result.exit_code == 0, result.output
        assert f"{INT8} -> {folder / INT8}.mediapipe.tflite" in result.output  # the default: classify's model
    assert [m["source_model"] for m in json.loads((folder / "manifest.json").read_text())["mobile"]] == [INT8]
    result = runner.invoke(app, ["mobile", "--bundle", str(folder), "--model", "nope"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and result.output.startswith("error: no model 'nope'")


def test_a_failing_check_leaves_the_bundle_as_it_was(mobile_bundle, tmp_path, monkeypatch):
    folder = _copy(mobile_bundle, tmp_path / "dist")
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    monkeypatch.setattr(mobile_module, "PARITY_ATOL", -1.0)  # no file can pass
    result = runner.invoke(app, ["mobile", "--bundle", str(folder), "--model", INT8])
    assert result.exit_code == 1 and "probabilities" in result.output and result.output.count("\n") == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


def test_verify_checks_mobile_files(mobile_bundle, tmp_path, capsys):
    folder = _copy(mobile_bundle, tmp_path / "dist")
    assert cli.main(["verify", "--bundle", str(folder)]) == 0
    assert "2/2 mobile files verified" in capsys.readouterr().out
    path = folder / f"{INT8}.mediapipe.tflite"
    data = bytearray(path.read_bytes())
    data[-10] ^= 1
    path.write_bytes(bytes(data))
    (folder / f"{FLOAT32}.mediapipe.tflite").write_bytes((folder / f"{FLOAT32}.tflite").read_bytes())
    def make_consistent(manifest):  # the float32 entry now names a plain model file with matching size and hash
        entry = next(m for m in manifest["mobile"] if m["source_model"] == FLOAT32)
        entry.update(sha256=hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest(),
                     bytes=(folder / entry["file"]).stat().st_size)
    edit_manifest(folder, make_consistent)
    assert cli.main(["verify", "--bundle", str(folder)]) == 1
    out = capsys.readouterr().out
    assert f"BAD {INT8}.mediapipe: {path} sha256 differs from the manifest" in out
    assert f"BAD {FLOAT32}.mediapipe: " in out and "inputs ['attention_mask', 'input_ids'], expected" in out
    assert "0/2 mobile files verified" in out and "2/2 models verified" in out


def test_a_stale_mobile_file_is_reported(mobile_bundle, tmp_path):
    folder = _copy(mobile_bundle, tmp_path / "dist")
    edit_manifest(folder, lambda m: m["mobile"][0].update(source_sha256="0" * 64))
    assert any("built from another" in p for p in Bundle(folder).verify())


@pytest.mark.parametrize("name, names", [  # a path out, an absolute path, a symlink out
    ("../outside.tflite", r"manifest\.json: mobile\[0\]\.file: expected a plain file name"),
    ("/etc/passwd", r"manifest\.json: mobile\[0\]\.file: expected a file name inside the bundle folder"),
    ("link.tflite", r"link\.tflite: manifest\.json mobile\[0\]\.file resolves to .*, outside the bundle folder"),
])
def test_a_hostile_mobile_file_name_is_one_error_line(mobile_bundle, tmp_path, capsys, name, names):
    folder = _copy(mobile_bundle, tmp_path / "copy")
    (tmp_path / "outside.tflite").write_bytes((folder / f"{INT8}.mediapipe.tflite").read_bytes())
    (folder / "link.tflite").symlink_to(tmp_path / "outside.tflite")
    edit_manifest(folder, lambda m: m["mobile"][0].update(file=name))
    run_failing(capsys, "classify", folder, tmp_path, mobile_bundle, names)


@pytest.mark.parametrize("key, value", [("format", "tflite"), ("bytes", -1), ("sha256", "abc"), ("source_model", ""),
                                        ("source_sha256", None), ("name", FLOAT32)])
def test_a_bad_mobile_field_is_one_error_line(mobile_bundle, tmp_path, capsys, key, value):
    folder = _copy(mobile_bundle, tmp_path / "copy")
    edit_manifest(folder, lambda m: m["mobile"][0].update({key: value}) if value is not None else m["mobile"][0].pop(key))
    line = run_failing(capsys, "verify", folder, tmp_path, mobile_bundle, r"manifest\.json: ")
    assert ("mobile[0]." + key if key != "name" else "mobile: name") in line


def test_pack_leaves_the_mobile_files_out(mobile_bundle, tmp_path, capsys):
    assert cli.main(["pack", "--bundle", str(mobile_bundle), "--model", INT8, "--out", str(tmp_path / "packed")]) == 0
    assert "mobile" not in json.loads((tmp_path / "packed" / "manifest.json").read_text())
