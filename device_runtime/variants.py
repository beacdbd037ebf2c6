"""Model wrappers for bundle entries with extra files: an id map (compact embeddings) and
length buckets (one .tflite per fixed length; the smallest that holds the sentence runs)."""

from __future__ import annotations

import numpy as np

from device_runtime.format import ATTENTION_MASK, INPUT_IDS


class MappedModel:
    """Sends full-vocab input_ids through the entry's id map before the model sees them."""

    def __init__(self, model, id_map: np.ndarray):
        self.model, self.id_map = model, id_map

    def predict(self, inputs: dict) -> np.ndarray:
        return self.model.predict({**inputs, INPUT_IDS: self.id_map[np.asarray(inputs[INPUT_IDS])]})


class BucketedModel:
    """models: {seq_len: model}. Inputs come at the longest length and are cut to the bucket."""

    def __init__(self, models: dict[int, object]):
        self.models = dict(sorted(models.items()))
        self.max_len = max(self.models)
        self.last_bucket = None

    def bucket_for(self, num_tokens: int) -> int:
        return next(length for length in self.models if length >= num_tokens)

    def predict(self, inputs: dict) -> np.ndarray:
        num_tokens = int(np.asarray(inputs[ATTENTION_MASK]).sum())
        self.last_bucket = self.bucket_for(num_tokens)
        cut = {k: np.asarray(v)[:, : self.last_bucket] for k, v in inputs.items() if np.ndim(v) == 2}
        return self.models[self.last_bucket].predict(cut)
