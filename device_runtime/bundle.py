"""Read and check a bundle: manifest.json, vocab.txt and the .tflite files it names.

A bundle is input from outside: the manifest's fields, file names and files are checked before use."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from device_runtime.card import card_problem
from device_runtime.format import FILE_KEY_SUFFIX, INPUT_NAMES, MANIFEST, MODEL_CARD, Key, Quantization, bucket_key
from device_runtime.interpreter import ModelLoadError, TFLiteModel
from device_runtime.mobile import mobile_entries, mobile_problems
from device_runtime.tokenizer import WordPieceTokenizer
from device_runtime.validate import BundleError, check_manifest, check_vocab, file_names, inside
from device_runtime.variants import BucketedModel, MappedModel

__all__ = ["Bundle", "BundleError", "extra_files", "sha256_of", "softmax"]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def extra_files(entry: dict) -> dict[str, str]:
    """{key: file name} of every extra file a model entry names (keys ending in `_file`)."""
    return {key: value for key, value in entry.items() if key.endswith(FILE_KEY_SUFFIX)}


def _read_bytes(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise BundleError(f"{path}: {what} not found")
    try:
        return path.read_bytes()
    except OSError as err:
        raise BundleError(f"{path}: cannot read {what} ({err.strerror})") from None


class Bundle:
    """A bundle folder. Loading checks the manifest's fields and file names, and the vocab's sha256 and tokens."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = inside(self.folder, MANIFEST, "the manifest")
        try:
            self.manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BundleError(f"{path}: not found (is {self.folder} a bundle folder?)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BundleError(f"{path}: not valid JSON ({err})") from None
        except RecursionError:
            raise BundleError(f"{path}: not valid JSON (nested too deeply)") from None
        except OSError as err:
            raise BundleError(f"{path}: cannot read ({err.strerror})") from None
        check_manifest(self.manifest, path)
        for where, name in file_names(self.manifest).items():  # every name, before any of them is read
            inside(self.folder, name, f"{MANIFEST} {where}")
        self.labels = list(self.manifest[Key.LABELS])
        self.seq_len = self.manifest[Key.SEQ_LEN]
        self.vocab_path = self.file(self.manifest[Key.VOCAB])
        raw = _read_bytes(self.vocab_path, "vocab file")
        if hashlib.sha256(raw).hexdigest() != self.manifest[Key.VOCAB_SHA256]:
            raise BundleError(f"{self.vocab_path}: sha256 differs from the manifest (wrong or modified vocab)")
        check_vocab(self.vocab_path, raw)
        self._tokenizer = None

    def file(self, name: str) -> Path:
        """The path of a file the manifest names, checked to stay inside the bundle folder."""
        return inside(self.folder, name, "file")

    @property
    def tokenizer(self) -> WordPieceTokenizer:
        if self._tokenizer is None:
            self._tokenizer = WordPieceTokenizer(self.vocab_path, lowercase=self.manifest[Key.DO_LOWER_CASE])
        return self._tokenizer

    @property
    def models(self) -> list[dict]:
        return self.manifest[Key.MODELS]

    @property
    def default_name(self) -> str | None:
        """The manifest's default model (chosen on dev by the converter), if it records one."""
        return self.manifest.get(Key.DEFAULT_MODEL, {}).get("name")

    def entry(self, name: str | None = None) -> dict:
        """A model entry by name; default: the manifest's default_model, else the smallest int8 model."""
        if not self.models:
            raise BundleError(f"{self.folder / MANIFEST}: lists no models")
        name = self.default_name if name is None else name
        if name is None:
            int8 = [m for m in self.models if m[Key.QUANTIZATION] == Quantization.INT8]
            return min(int8 or self.models, key=lambda m: m[Key.BYTES])
        for entry in self.models:
            if entry[Key.NAME] == name:
                return entry
        raise BundleError(f"no model {name!r} in {self.folder}; available: {', '.join(m[Key.NAME] for m in self.models)}")

    def seq_len_of(self, entry: dict) -> int:
        """The length texts are encoded at: the longest bucket, else the entry's seq_len."""
        return max(entry[Key.BUCKETS]) if entry.get(Key.BUCKETS) else int(entry.get(Key.SEQ_LEN, self.seq_len))

    def load(self, name: str | None = None, num_threads: int | None = None):
        """-> (entry, model): a TFLiteModel, wrapped for length buckets and an id map when present."""
        entry = self.entry(name)
        if entry.get(Key.BUCKETS):
            files = {length: entry[bucket_key(length)] for length in entry[Key.BUCKETS]}
            model = BucketedModel({length: self._model(f, length, num_threads) for length, f in files.items()})
        else:
            model = self._model(entry[Key.FILE], self.seq_len_of(entry), num_threads)
        if entry.get(Key.ID_MAP_FILE):
            model = MappedModel(model, self._id_map(entry))
        return entry, model

    def _model(self, name: str, seq_len: int, num_threads: int | None) -> TFLiteModel:
        """One .tflite file, checked against the manifest: input names and shapes, one logit per label."""
        path = self.file(name)
        if path.is_file() and path.stat().st_size == 0:
            raise ModelLoadError(f"{path}: empty file (not a TFLite model)")
        model = TFLiteModel(path, seq_len=seq_len, num_threads=num_threads)
        unknown = sorted(set(model.inputs) - set(INPUT_NAMES))
        if unknown:
            raise ModelLoadError(f"{path}: inputs {unknown} are not among {list(INPUT_NAMES)}")
        shape = [int(d) for d in model.outputs[model.output_name]["shape"]]
        if shape != [1, len(self.labels)]:
            raise BundleError(f"{path}: output {model.output_name!r} has shape {shape}, but {MANIFEST} lists "
                              f"{len(self.labels)} labels (expected [1, {len(self.labels)}])")
        return model

    def _id_map(self, entry: dict) -> np.ndarray:
        path = self.file(entry[Key.ID_MAP_FILE])
        if not path.is_file():
            raise BundleError(f"{path}: id map not found")
        if sha256_of(path) != entry.get(Key.ID_MAP_SHA256):
            raise BundleError(f"{path}: sha256 differs from the manifest")
        try:
            mapping = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise BundleError(f"{path}: not a readable .npy id map ({str(err).splitlines()[0]})") from None
        if not isinstance(mapping, np.ndarray) or mapping.dtype.kind not in "iu":
            raise BundleError(f"{path}: id map must be an integer array")
        if mapping.shape != (len(self.tokenizer.vocab),):
            raise BundleError(f"{path}: id map has shape {mapping.shape}, vocab has {len(self.tokenizer.vocab)} ids")
        if mapping.size and mapping.min() < 0:
            raise BundleError(f"{path}: id map holds negative ids")
        return mapping

    def verify(self, names: list[str] | None = None) -> list[str]:
        """Every problem found in the named entries (default: all, and the mobile files) and the model card;
        empty: the bundle is sound."""
        problems = []
        for entry in self.models if names is None else [self.entry(n) for n in names]:
            path = self.file(entry[Key.FILE])
            if not path.is_file():
                problems.append(f"{entry[Key.NAME]}: {path} missing")
                continue
            if path.stat().st_size != entry[Key.BYTES]:
                problems.append(f"{entry[Key.NAME]}: {path} has {path.stat().st_size} bytes, manifest says {entry[Key.BYTES]}")
            elif sha256_of(path) != entry[Key.SHA256]:
                problems.append(f"{entry[Key.NAME]}: {path} sha256 differs from the manifest")
            for key, file in extra_files(entry).items():
                if not self.file(file).is_file():
                    problems.append(f"{entry[Key.NAME]}: {key} {self.file(file)} missing")
            try:
                self.load(entry[Key.NAME])
            except (ModelLoadError, BundleError) as err:
                problems.append(f"{entry[Key.NAME]}: {err}")
        if names is None:  # the MediaPipe files (manifest key `mobile`)
            problems += [p for entry in mobile_entries(self.manifest) for p in mobile_problems(self, entry)]
        card = card_problem(self.folder, self.manifest)
        return problems + ([f"{MODEL_CARD}: {card.split(': ', 1)[-1]}"] if card else [])
