"""The bundle contract: the names the converter writes and the device runtime reads (file names,
model input/output names, quantizations, manifest keys). Standard library only."""

from __future__ import annotations

from enum import Enum

MANIFEST = "manifest.json"
VOCAB_FILE = "vocab.txt"
MODEL_CARD = "MODEL_CARD.md"
DEVICE_DIR = "device"  # inside dist/: the default model packed alone, the folder a Pi gets
FORMAT_VERSION = 1

INPUT_IDS, ATTENTION_MASK = INPUT_NAMES = ("input_ids", "attention_mask")
INPUT_DTYPE = "int32"
OUTPUT_NAME = "logits"
# <model>.mediapipe.tflite (manifest key `mobile`): the model as MediaPipe Tasks' TextClassifier reads it, with
# MediaPipe's three BERT inputs (token ids, mask, segment ids) and softmax probabilities as its one output.
MEDIAPIPE_SUFFIX = ".mediapipe.tflite"
MEDIAPIPE_FORMAT = "mediapipe"
MOBILE_INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")
MOBILE_OUTPUT_NAME = "probabilities"


class Quantization(str, Enum):
    """How a .tflite file is quantized; the value is what the manifest and the file names say."""

    FLOAT32 = "float32"
    DYNAMIC = "dynamic"
    FLOAT16 = "float16"
    INT8 = "int8"
    INT16X8 = "int16x8"
    INT4W = "int4w"  # 4-bit (or mixed 4/8-bit) per-channel weights, float activations (converter.export.lowbit)

    def __str__(self) -> str:  # f-strings and file names give the value, not "Quantization.INT8"
        return self.value

    __format__ = str.__format__

    @property
    def needs_calibration(self) -> bool:
        """Full-integer files need real calibration inputs for their activation ranges."""
        return self in CALIBRATED


QUANTIZATIONS = tuple(q.value for q in Quantization)
CALIBRATED = (Quantization.INT8, Quantization.INT16X8)


def needs_calibration(quantization: str) -> bool:
    """For a quantization name or member: int8 and int16x8 need calibration inputs (unknown names: False)."""
    return quantization in CALIBRATED


class Key:
    """Manifest keys: the top level, then those of one `models` entry (which may carry its own seq_len)."""

    FORMAT_VERSION = "format_version"
    LABELS = "labels"
    SEQ_LEN = "seq_len"
    VOCAB = "vocab"
    VOCAB_SHA256 = "vocab_sha256"
    DO_LOWER_CASE = "do_lower_case"
    INPUT_NAMES = "input_names"
    INPUT_DTYPE = "input_dtype"
    OUTPUT_NAME = "output_name"
    MODELS = "models"
    NAME = "name"
    FILE = "file"
    SHA256 = "sha256"
    BYTES = "bytes"
    QUANTIZATION = "quantization"
    BUCKETS = "buckets"
    ID_MAP_FILE = "id_map_file"
    ID_MAP_SHA256 = "id_map_sha256"
    DEFAULT_MODEL = "default_model"  # top level: {name, rule, figures} of the model used when none is named
    PROVENANCE = "provenance"  # top level: base checkpoint, data, licenses, kit version (the model card's source)
    TEMPERATURE = "temperature"  # entry: divides the logits before the softmax (fitted on dev)
    METRICS = "metrics"  # entry: {platform, dev, test, test_allagree, calibration}
    PLATFORM_METRICS = "platform_metrics"  # entry: the same model measured elsewhere (e.g. emulated aarch64)
    MOBILE = "mobile"  # top level: [{name, file, sha256, bytes, format, source_model, source_sha256}], not in models
    FORMAT = "format"
    SOURCE_MODEL = "source_model"
    SOURCE_SHA256 = "source_sha256"


FILE_KEY_SUFFIX = "_file"  # every entry key ending in it names an extra file the entry needs
REQUIRED_KEYS = (Key.LABELS, Key.SEQ_LEN, Key.VOCAB, Key.VOCAB_SHA256, Key.DO_LOWER_CASE, Key.MODELS)
REQUIRED_MODEL_KEYS = (Key.NAME, Key.FILE, Key.SHA256, Key.BYTES, Key.QUANTIZATION)
REQUIRED_MOBILE_KEYS = (Key.NAME, Key.FILE, Key.SHA256, Key.BYTES, Key.FORMAT, Key.SOURCE_MODEL, Key.SOURCE_SHA256)


def bucket_key(seq_len: int) -> str:
    """The entry key naming the .tflite file of one length bucket: bucket_{seq_len}_file."""
    return f"bucket_{seq_len}{FILE_KEY_SUFFIX}"
