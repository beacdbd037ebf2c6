"""Read and check a bundle: manifest.json, vocab.txt and the .tflite files it names."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from device_runtime.errors import BundleInputError
from device_runtime.format import FILE_KEY_SUFFIX, MANIFEST, REQUIRED_KEYS, REQUIRED_MODEL_KEYS, Key, Quantization, bucket_key
from device_runtime.interpreter import ModelLoadError, TFLiteModel
from device_runtime.tokenizer import WordPieceTokenizer
from device_runtime.variants import BucketedModel, MappedModel


class BundleError(BundleInputError, RuntimeError):
    """The bundle is incomplete or inconsistent; the message names the file or key."""


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


class Bundle:
    """A bundle folder. Loading checks the manifest's keys and the vocab's sha256."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        try:
            self.manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BundleError(f"{path}: not found (is {self.folder} a bundle folder?)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BundleError(f"{path}: not valid JSON ({err})") from None
        missing = [k for k in REQUIRED_KEYS if k not in self.manifest]
        for i, entry in enumerate(self.manifest.get(Key.MODELS, [])):
            missing += [f"models[{i}].{k}" for k in REQUIRED_MODEL_KEYS if k not in entry]
        if missing:
            raise BundleError(f"{path}: missing keys: {', '.join(missing)}")
        self.labels = list(self.manifest[Key.LABELS])
        self.seq_len = int(self.manifest[Key.SEQ_LEN])
        self.vocab_path = self.folder / self.manifest[Key.VOCAB]
        if not self.vocab_path.is_file():
            raise BundleError(f"{self.vocab_path}: vocab file not found")
        if sha256_of(self.vocab_path) != self.manifest[Key.VOCAB_SHA256]:
            raise BundleError(f"{self.vocab_path}: sha256 differs from the manifest (wrong or modified vocab)")
        self._tokenizer = None

    @property
    def tokenizer(self) -> WordPieceTokenizer:
        if self._tokenizer is None:
            self._tokenizer = WordPieceTokenizer(self.vocab_path, lowercase=bool(self.manifest[Key.DO_LOWER_CASE]))
        return self._tokenizer

    @property
    def models(self) -> list[dict]:
        return self.manifest[Key.MODELS]

    def entry(self, name: str | None = None) -> dict:
        """A model entry by name; default: the smallest int8 model (else the smallest model)."""
        if not self.models:
            raise BundleError(f"{self.folder / MANIFEST}: lists no models")
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
            files = {int(length): entry[bucket_key(length)] for length in entry[Key.BUCKETS]}
            model = BucketedModel({length: TFLiteModel(self.folder / f, seq_len=length, num_threads=num_threads)
                                   for length, f in files.items()})
        else:
            model = TFLiteModel(self.folder / entry[Key.FILE], seq_len=self.seq_len_of(entry), num_threads=num_threads)
        if entry.get(Key.ID_MAP_FILE):
            model = MappedModel(model, self._id_map(entry))
        return entry, model

    def _id_map(self, entry: dict) -> np.ndarray:
        path = self.folder / entry[Key.ID_MAP_FILE]
        if not path.is_file():
            raise BundleError(f"{path}: id map not found")
        if sha256_of(path) != entry.get(Key.ID_MAP_SHA256):
            raise BundleError(f"{path}: sha256 differs from the manifest")
        mapping = np.load(path, allow_pickle=False)
        if mapping.shape != (len(self.tokenizer.vocab),):
            raise BundleError(f"{path}: id map has shape {mapping.shape}, vocab has {len(self.tokenizer.vocab)} ids")
        return mapping

    def verify(self) -> list[str]:
        """Every problem found (empty list: the bundle is sound)."""
        problems = []
        for entry in self.models:
            path = self.folder / entry[Key.FILE]
            if not path.is_file():
                problems.append(f"{entry[Key.NAME]}: {path} missing")
                continue
            if path.stat().st_size != entry[Key.BYTES]:
                problems.append(f"{entry[Key.NAME]}: {path} has {path.stat().st_size} bytes, manifest says {entry[Key.BYTES]}")
            elif sha256_of(path) != entry[Key.SHA256]:
                problems.append(f"{entry[Key.NAME]}: {path} sha256 differs from the manifest")
            for key, file in extra_files(entry).items():
                if not (self.folder / file).is_file():
                    problems.append(f"{entry[Key.NAME]}: {key} {self.folder / file} missing")
            try:
                self.load(entry[Key.NAME])
            except (ModelLoadError, BundleError) as err:
                problems.append(f"{entry[Key.NAME]}: {err}")
        return problems
