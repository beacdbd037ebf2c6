"""The Python API: `Classifier.from_bundle(path).predict(texts)` -> labelled probabilities per text."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from device_runtime.bundle import Bundle, softmax
from device_runtime.format import Key


@dataclass(frozen=True)
class Prediction:
    """One text's result: the top label, every label's probability (manifest order), and whether the
    text was cut to the model's length."""

    label: str
    probabilities: dict[str, float]
    truncated: bool


class Classifier:
    """One bundle model. Safe to call from several threads.

    A LiteRT interpreter is not thread-safe, so each thread gets its own interpreter (a
    threading.local, created on that thread's first call) rather than sharing one behind a lock:
    calls on different threads then run side by side instead of queueing (LiteRT releases the GIL
    while it invokes), and no model wrapper state is shared (a bucketed model records its last
    bucket). The cost is one tensor arena per calling thread; the model file is memory-mapped, so its
    pages are shared. The tokenizer is shared: its word cache only ever gains equal values.

    Build it with `Classifier.from_bundle`."""

    def __init__(self, bundle: Bundle, entry: dict, model, num_threads: int | None):
        self.bundle, self.entry, self.num_threads = bundle, entry, num_threads
        self.labels = list(bundle.labels)
        self.seq_len = bundle.seq_len_of(entry)
        self.temperature = float(entry.get(Key.TEMPERATURE, 1.0))  # fitted on dev; labels do not depend on it
        self.tokenizer = bundle.tokenizer
        self._local = threading.local()
        self._local.model = model

    @classmethod
    def from_bundle(cls, path: str | Path, model: str | None = None, num_threads: int | None = 1) -> Classifier:
        """Load and check a bundle and one of its models (default: the manifest's default_model).

        Raises a BundleInputError (one line naming the file) for a missing or malformed bundle."""
        bundle = Bundle(path)
        entry, loaded = bundle.load(model, num_threads)
        return cls(bundle, entry, loaded, num_threads)

    @property
    def name(self) -> str:
        return self.entry[Key.NAME]

    @property
    def quantization(self) -> str:
        return self.entry[Key.QUANTIZATION]

    def _model(self):
        model = getattr(self._local, "model", None)
        if model is None:
            model = self._local.model = self.bundle.load(self.name, self.num_threads)[1]
        return model

    def _predict_one(self, text: str) -> Prediction:
        if not isinstance(text, str):
            raise TypeError(f"predict takes a str or a list of str, got an item of type {type(text).__name__}")
        enc = self.tokenizer.encode(text, self.seq_len)
        probs = softmax(self._model().predict(enc)[0] / self.temperature)
        return Prediction(self.labels[int(probs.argmax())], dict(zip(self.labels, map(float, probs))),
                          bool(enc["truncated"]))

    def predict(self, texts: str | list[str]) -> Prediction | list[Prediction]:
        """A str gives one Prediction; a list gives one per text, each equal to that text's single call."""
        if isinstance(texts, str):
            return self._predict_one(texts)
        return [self._predict_one(text) for text in texts]
