"""A bundle model as a MediaPipe-ready .tflite: the source file's graph edited in place (its buffers, so its
weights and quantization, stay byte for byte), MediaPipe's three BERT inputs, softmax probabilities, and
TFLite metadata (vocab, labels, name, version, description, license) written by mediapipe's own writer."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from converter.errors import KitError
from converter.export.bundle import write_manifest
from converter.files import write_bytes_atomic
from converter.quiet import native_output_parked
from device_runtime.bundle import Bundle, softmax
from device_runtime.card import NON_COMMERCIAL
from device_runtime.format import (
    ATTENTION_MASK,
    INPUT_IDS,
    MANIFEST,
    MEDIAPIPE_FORMAT,
    MEDIAPIPE_SUFFIX,
    MOBILE_INPUT_NAMES,
    MOBILE_OUTPUT_NAME,
    OUTPUT_NAME,
    Key,
)
from device_runtime.interpreter import TFLiteModel
from device_runtime.mobile import check_mobile_file
from device_runtime.variants import MappedModel

# The compiled module mediapipe's metadata.py imports; the 1.2.x wheels do not ship it.
METADATA_VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"
# What its GetMinimumMetadataParserVersion returns for our metadata (mediapipe/tasks/cc/metadata/
# metadata_version.cc): BertTokenizerOptions in input_process_units need 1.1.0; a VOCABULARY file 1.0.1.
MIN_PARSER_VERSION = "1.1.0"
PARITY_TEXT = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn ."
PARITY_ATOL = 1e-5


class MobileError(KitError):
    """The mobile file cannot be built or fails its check; the message says why."""


def tensor_name(signature_name: str) -> str:
    """The tensor name TensorFlow gives a serving signature's input (what MediaPipe's metadata refers to)."""
    return f"serving_default_{signature_name}:0"


def metadata_writers():
    """mediapipe's metadata_writers package, importable without the compiled version module it lacks.

    The only place the stand-in lives: it is installed only when the real module is missing, and returns
    MIN_PARSER_VERSION (test_mobile's golden metadata fails if the writer's output changes)."""
    if importlib.util.find_spec("mediapipe") is None:
        raise MobileError("mediapipe is not installed; install the mobile extra: pip install -e '.[mobile]'")
    audio = importlib.import_module("mediapipe.tasks.python.audio.core.audio_record")
    if getattr(audio, "sd_error", None) is not None:  # sounddevice without PortAudio: mediapipe keeps that error,
        audio.sd_error.__traceback__ = None  # and its traceback kept our callers' frames (a writer's __del__ at exit)
    parts = METADATA_VERSION_MODULE.split(".")
    if METADATA_VERSION_MODULE not in sys.modules and importlib.util.find_spec(".".join(parts[:3])) is None:
        for depth in range(3, len(parts) + 1):  # mediapipe.tasks exists; .cc ... ._pywrap_metadata_version do not
            name = ".".join(parts[:depth])
            module = sys.modules.setdefault(name, types.ModuleType(name))
            setattr(sys.modules[".".join(parts[: depth - 1])], parts[depth - 1], module)
        sys.modules[METADATA_VERSION_MODULE].GetMinimumMetadataParserVersion = lambda buffer: MIN_PARSER_VERSION
    try:
        from mediapipe.tasks.python.metadata.metadata_writers import metadata_info, metadata_writer, text_classifier
    except ImportError as err:
        raise MobileError(f"cannot import mediapipe's metadata writer ({err}); install the mobile extra: "
                          "pip install -e '.[mobile]'") from None
    return metadata_info, metadata_writer, text_classifier


def add_metadata(model: bytes, vocab: Path, labels: list[str], info: dict) -> bytes:
    """model + TFLite metadata: BertTokenizer(vocab) on the three MOBILE_INPUT_NAMES, `labels` on the output,
    and info {name, version, description, licenses} as the general metadata."""
    metadata_info, metadata_writer, text_classifier = metadata_writers()
    ids, mask, segment = (tensor_name(name) for name in MOBILE_INPUT_NAMES)
    writer = text_classifier.MetadataWriter.create_for_bert_model(
        bytearray(model), tokenizer=metadata_writer.BertTokenizer(str(vocab)),
        labels=metadata_writer.Labels().add(list(labels)), ids_name=ids, mask_name=mask, segment_name=segment)
    writer.writer._general_md = metadata_info.GeneralMd(**info)  # add_general_info takes no version or license
    populated, _ = writer.populate()
    return bytes(populated)


def _opcode(model, builtin: int) -> int:
    """Index of the model's operator code for `builtin`, appended (version 1) when missing."""
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = builtin  # codes below 127 are stored in both fields
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _tensor(model, graph, like: int, name: str, data: np.ndarray | None = None) -> int:
    """A new tensor shaped and typed like tensor `like` (or holding the constant `data`), with its own buffer."""
    tensor = copy.deepcopy(graph.tensors[like])
    tensor.name = name.encode()
    buffer = schema.BufferT()
    if data is not None:
        buffer.data = np.frombuffer(data.astype(data.dtype.newbyteorder("<")).tobytes(), np.uint8)
        tensor.shape = tensor.shapeSignature = np.array(data.shape, np.int32)
    model.buffers.append(buffer)
    tensor.buffer = len(model.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _operator(model, graph, builtin: int, inputs: list[int], outputs: list[int], options=None, options_type=0, at=None):
    op = schema.OperatorT()
    op.opcodeIndex = _opcode(model, builtin)
    op.inputs, op.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
    op.builtinOptionsType, op.builtinOptions = options_type, options
    graph.operators.insert(len(graph.operators) if at is None else at, op)


def _tensor_map(name: str, index: int):
    item = schema.TensorMapT()
    item.name, item.tensorIndex = name.encode(), index
    return item


def mobile_graph(source: bytes, id_map: np.ndarray | None = None, temperature: float = 1.0) -> bytes:
    """The source .tflite with MediaPipe's signature; every existing buffer and operator is kept as is.

    Inputs become MOBILE_INPUT_NAMES (int32 [1, seq_len]): token ids, the mask, and segment ids that no
    operator reads (a single sentence is segment 0, already folded into the embeddings). With an id map
    (compact embeddings), a GATHER from a constant copy of it turns full-vocab ids into the ids the graph
    reads, since MediaPipe feeds vocab ids. The output becomes SOFTMAX(logits, beta = 1 / temperature), float32."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(source))
    if len(model.subgraphs) != 1 or len(model.signatureDefs or []) != 1:
        raise MobileError("expected one subgraph and one signature (a file exported by the kit)")
    if any(buffer.offset > 1 for buffer in model.buffers):
        raise MobileError("buffers stored outside the flatbuffer (a model over 2 GB) are not supported")
    graph, signature = model.subgraphs[0], model.signatureDefs[0]
    inputs = {item.name.decode(): item.tensorIndex for item in signature.inputs}
    logits = {item.name.decode(): item.tensorIndex for item in signature.outputs}[OUTPUT_NAME]
    ids, mask = inputs[INPUT_IDS], inputs[ATTENTION_MASK]
    ids_name, mask_name, segment_name = MOBILE_INPUT_NAMES
    graph.tensors[mask].name = tensor_name(mask_name).encode()
    segment = _tensor(model, graph, ids, tensor_name(segment_name))
    if id_map is None:
        word_ids = ids
        graph.tensors[ids].name = tensor_name(ids_name).encode()
    else:
        word_ids = _tensor(model, graph, ids, tensor_name(ids_name))
        table = _tensor(model, graph, ids, "mobile/id_map", np.asarray(id_map, np.int32))
        graph.tensors[ids].name = b"mobile/compact_ids"
        options = schema.GatherOptionsT()
        options.axis, options.batchDims = 0, 0
        _operator(model, graph, schema.BuiltinOperator.GATHER, [table, word_ids], [ids], options,
                  schema.BuiltinOptions.GatherOptions, at=0)  # first: every reader of the compact ids follows it
    if graph.tensors[logits].type != schema.TensorType.FLOAT32:  # an int8 output: dequantize first
        floats = _tensor(model, graph, logits, "mobile/logits")
        graph.tensors[floats].type, graph.tensors[floats].quantization = schema.TensorType.FLOAT32, None
        _operator(model, graph, schema.BuiltinOperator.DEQUANTIZE, [logits], [floats])
        logits = floats
    probabilities = _tensor(model, graph, logits, MOBILE_OUTPUT_NAME)
    options = schema.SoftmaxOptionsT()
    options.beta = 1.0 / temperature
    _operator(model, graph, schema.BuiltinOperator.SOFTMAX, [logits], [probabilities], options,
              schema.BuiltinOptions.SoftmaxOptions)
    graph.inputs = np.array([word_ids, mask, segment], np.int32)
    graph.outputs = np.array([probabilities], np.int32)
    signature.inputs = [_tensor_map(name, index) for name, index in zip(MOBILE_INPUT_NAMES, graph.inputs)]
    signature.outputs = [_tensor_map(MOBILE_OUTPUT_NAME, probabilities)]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def general_info(manifest: dict, entry: dict, temperature: float) -> dict:
    """The metadata's name, version, description and licenses, from the manifest's provenance and the entry."""
    prov = manifest.get(Key.PROVENANCE) or {}
    data_license = str(prov.get("training_data_license", "unknown"))
    licenses = (f"Training data: {prov.get('training_data', 'unknown')}, {data_license}. Base checkpoint: "
                f"{prov.get('base_checkpoint', 'unknown')}, {prov.get('base_checkpoint_license', 'unknown')}.")
    if "NC" in data_license.replace("-", " ").split():
        licenses += f" {NON_COMMERCIAL}"
    return {"name": entry[Key.NAME],
            "version": f"{prov.get('kit', 'finsent-edge')}; {entry[Key.FILE]} sha256 {entry[Key.SHA256][:12]}",
            "description": (f"Sentiment of one English financial-news sentence: the probabilities of "
                            f"{', '.join(manifest[Key.LABELS])}, softmax(logits / {temperature:g}). Uncased BERT "
                            f"WordPiece, {entry.get(Key.SEQ_LEN, manifest[Key.SEQ_LEN])} tokens, "
                            f"{entry[Key.QUANTIZATION]} weights."),
            "licenses": licenses}


def _check(path: Path, source, seq_len: int, bundle: Bundle, temperature: float) -> None:
    """The new file's signature, and its probabilities on PARITY_TEXT against softmax(source logits / T)."""
    enc = bundle.tokenizer.encode(PARITY_TEXT, seq_len)
    feed = dict(zip(MOBILE_INPUT_NAMES, (enc[INPUT_IDS], enc[ATTENTION_MASK], np.zeros_like(enc[INPUT_IDS]))))
    with native_output_parked():  # LiteRT's "Created ... XNNPACK delegate" line
        mobile = check_mobile_file(path, seq_len, len(bundle.labels))
        got, want = mobile.predict(feed)[0], softmax(source.predict(enc)[0].astype(np.float64) / temperature)
    if not np.allclose(got, want, atol=PARITY_ATOL):
        raise MobileError(f"{path}: probabilities {np.round(got, 6).tolist()} differ from the source model's "
                          f"softmax {np.round(want, 6).tolist()} on {PARITY_TEXT!r}")


def _set_entry(folder: Path, file: str, entry: dict | None) -> None:
    """Rewrite manifest.json (read again now) with the mobile entry of `file` replaced by `entry` (None: removed)."""
    path = folder / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    mobile = [e for e in manifest.get(Key.MOBILE, []) if e.get(Key.FILE) != file] + ([entry] if entry else [])
    manifest.pop(Key.MOBILE, None)
    manifest = {**manifest, **({Key.MOBILE: mobile} if mobile else {})}
    write_manifest(folder, manifest)


def _source(bundle: Bundle, entry: dict) -> tuple[bytes, np.ndarray | None]:
    """The entry's .tflite bytes, checked against the manifest's sha256, and its id map (None without one)."""
    with native_output_parked():
        _, loaded = bundle.load(entry[Key.NAME], num_threads=1)  # checks the model, its buckets and its id map
    path = bundle.file(entry[Key.FILE])
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry[Key.SHA256]:
        raise MobileError(f"{path}: sha256 differs from the manifest")
    return data, (loaded.id_map if isinstance(loaded, MappedModel) else None)


def export_mobile(bundle_dir: Path, model: str | None = None) -> dict:
    """Write <model>.mediapipe.tflite into the bundle and its `mobile` manifest entry, replacing an earlier one.

    model: a bundle model name (default: the one `classify` uses). Both writes are atomic, and the old entry
    leaves the manifest only once the new file has passed its check, just before it replaces the old file.
    Returns the new entry."""
    folder = Path(bundle_dir)
    bundle = Bundle(folder)
    entry = bundle.entry(model)
    if not bundle.manifest[Key.DO_LOWER_CASE]:
        raise MobileError(f"{folder / MANIFEST}: the vocab is cased, but MediaPipe lower-cases every text")
    if bundle.tokenizer.pad_id != 0:
        raise MobileError(f"{bundle.vocab_path}: [PAD] has id {bundle.tokenizer.pad_id}; MediaPipe pads with id 0")
    data, id_map = _source(bundle, entry)
    temperature, seq_len = float(entry.get(Key.TEMPERATURE, 1.0)), int(entry.get(Key.SEQ_LEN, bundle.seq_len))
    tflite = add_metadata(mobile_graph(data, id_map, temperature), bundle.vocab_path, bundle.labels,
                          general_info(bundle.manifest, entry, temperature))
    with native_output_parked():
        source = TFLiteModel(bundle.file(entry[Key.FILE]), seq_len=seq_len, num_threads=1)  # never a bucket file
    source = source if id_map is None else MappedModel(source, id_map)
    file = f"{entry[Key.NAME]}{MEDIAPIPE_SUFFIX}"
    new = {Key.NAME: file.removesuffix(".tflite"), Key.FILE: file, Key.SHA256: hashlib.sha256(tflite).hexdigest(),
           Key.BYTES: len(tflite), Key.FORMAT: MEDIAPIPE_FORMAT, Key.SOURCE_MODEL: entry[Key.NAME],
           Key.SOURCE_SHA256: entry[Key.SHA256]}

    def check_then_unlist(tmp: Path) -> None:
        _check(tmp, source, seq_len, bundle, temperature)
        _set_entry(folder, file, None)  # no entry may name the file while its bytes change

    write_bytes_atomic(bundle.file(file), tflite, check_then_unlist)
    _set_entry(folder, file, new)
    return new
