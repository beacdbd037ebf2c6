"""Host-side tokenization with transformers' BertTokenizerFast (the reference the device matches)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from converter.errors import MissingFileError
from device_runtime.format import INPUT_NAMES


def tokenizer_settings(folder: Path) -> dict:
    """vocab path and do_lower_case of a checkpoint folder (uncased unless it says otherwise)."""
    folder = Path(folder)
    vocab = folder / "vocab.txt"
    if not vocab.is_file():
        raise MissingFileError(f"{vocab}: missing (the checkpoint folder must ship its WordPiece vocab.txt)")
    config_path = folder / "tokenizer_config.json"
    settings = json.loads(config_path.read_text()) if config_path.is_file() else {}
    return {"vocab": vocab, "do_lower_case": bool(settings.get("do_lower_case", True))}


def load_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    settings = tokenizer_settings(folder)
    # transformers 5 takes `vocab=`; the old `vocab_file=` is silently ignored (all [UNK]).
    return BertTokenizerFast(vocab=str(settings["vocab"]), do_lower_case=settings["do_lower_case"])


def encode(tokenizer, texts: list[str], seq_len: int) -> dict[str, np.ndarray]:
    """-> {input_ids, attention_mask}: int32 (len(texts), seq_len), [CLS] ... [SEP] then zero padding."""
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    return {name: enc[name].astype(np.int32) for name in INPUT_NAMES}
