"""BERT WordPiece tokenization in pure Python (stdlib + numpy), id-for-id equal to BertTokenizerFast.

Stages, as in the Hugging Face `tokenizers` BertNormalizer / BertPreTokenizer / WordPiece:
clean text -> space out CJK -> strip accents and lowercase -> split on whitespace and
punctuation -> greedy longest-match WordPiece with `##` continuations."""

from __future__ import annotations

import functools
import re
import unicodedata
from pathlib import Path

import numpy as np

from device_runtime.errors import BundleInputError
from device_runtime.format import ATTENTION_MASK, INPUT_IDS
from device_runtime.unicode_overrides import RUNS, UNIDATA_VERSION

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_CHARS_PER_WORD = 100  # the reference tokenizer's max_input_chars_per_word
# CJK ideograph blocks the reference tokenizer puts spaces around.
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
_SPECIAL_SPLIT = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")


class VocabError(BundleInputError, ValueError):
    """vocab.txt is missing, empty or lacks a special token; the message names the file."""


class UnicodeTableError(BundleInputError, RuntimeError):
    """unicode_overrides.py was made for another Unicode version than this Python's unicodedata."""


REGENERATE = "python -m tools.make_unicode_overrides"


@functools.cache
def _expand_runs() -> dict[int, str]:
    return {code: kind for kind, spans in RUNS.items() for first, last in spans for code in range(first, last + 1)}


def unicode_overrides() -> dict[int, str]:
    """{code point: space | drop | punct | letter} where the reference's older Unicode tables differ from ours.

    Raises UnicodeTableError unless this Python's Unicode version is the one the table was made for."""
    if unicodedata.unidata_version != UNIDATA_VERSION:
        raise UnicodeTableError(f"device_runtime/unicode_overrides.py was made for Unicode {UNIDATA_VERSION}, but this "
                                f"Python has Unicode {unicodedata.unidata_version}; regenerate it on the host with this "
                                f"Python version (needs transformers): {REGENERATE}")
    return _expand_runs()


def _is_control(ch: str) -> bool:
    # Tab, newline and carriage return count as whitespace; unassigned (Cn) characters are kept.
    return ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs")


def _is_whitespace(ch: str) -> bool:
    return ch in "\t\n\r " or ch.isspace() and not unicodedata.category(ch).startswith("C")


def _is_cjk(code: int) -> bool:
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


def _is_punctuation(ch: str) -> bool:
    # All non-alphanumeric printable ASCII counts ("$", "+", "^", "`" ...), plus Unicode P*.
    code = ord(ch)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _strip_and_lower(run: str) -> str:
    run = "".join(ch for ch in unicodedata.normalize("NFD", run) if unicodedata.category(ch) != "Mn")
    return "".join(ch.lower() for ch in run)  # per character, as the reference does (no final sigma)


def normalize(text: str, lowercase: bool = True, overrides: dict[int, str] | None = None) -> str:
    """Clean, space out CJK, then (uncased models) strip accents and lowercase.

    `overrides` holds code points whose class the reference takes from older Unicode tables;
    override letters and punctuation pass through unchanged (no NFD, no lowercasing). Default: unicode_overrides().
    """
    overrides = unicode_overrides() if overrides is None else overrides
    out, run = [], []
    for ch in text:
        kind = overrides.get(ord(ch))
        if kind is not None:
            out.append(_strip_and_lower("".join(run)) if lowercase else "".join(run))
            run = []
            out.append({"space": " ", "drop": "", "punct": ch, "letter": ch}[kind])
        elif ch == "\x00" or ch == "\ufffd" or _is_control(ch):
            continue
        elif _is_whitespace(ch):
            run.append(" ")
        elif _is_cjk(ord(ch)):
            run.append(f" {ch} ")
        else:
            run.append(ch)
    out.append(_strip_and_lower("".join(run)) if lowercase else "".join(run))
    return "".join(out)


def pre_tokenize(text: str, overrides: dict[int, str] | None = None) -> list[str]:
    """Split on whitespace, then make every punctuation character its own word."""
    overrides = unicode_overrides() if overrides is None else overrides
    words = []
    for chunk in text.split():
        start = 0
        for i, ch in enumerate(chunk):
            kind = overrides.get(ord(ch))
            if kind == "punct" or (kind is None and _is_punctuation(ch)):
                if i > start:
                    words.append(chunk[start:i])
                words.append(ch)
                start = i + 1
        if start < len(chunk):
            words.append(chunk[start:])
    return words


# ASCII text (most financial news) takes a table-driven path to the same words: control characters
# dropped, tab / newline / return as spaces, every non-alphanumeric printable character its own word.
_ASCII_CLEAN = {code: None for code in (*range(32), 127)} | {ord(ch): " " for ch in "\t\n\r"}
_ASCII_PUNCT = re.escape("".join(chr(code) for code in range(33, 127) if _is_punctuation(chr(code))))
_ASCII_WORDS = re.compile(f"[{_ASCII_PUNCT}]|[^ {_ASCII_PUNCT}]+")


def ascii_words(text: str, lowercase: bool = True) -> list[str]:
    """pre_tokenize(normalize(text)) for ASCII text without an override in the ASCII range."""
    text = text.translate(_ASCII_CLEAN)
    return _ASCII_WORDS.findall(text.lower() if lowercase else text)


def load_vocab(path: str | Path) -> dict[str, int]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise VocabError(f"{path}: vocab file not found") from None
    if lines and lines[-1] == "":
        lines.pop()
    vocab = {}
    for index, token in enumerate(lines):
        vocab.setdefault(token.rstrip("\r"), index)
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise VocabError(f"{path}: missing special tokens {missing}")
    return vocab


class WordPieceTokenizer:
    """Args: vocab: path to vocab.txt or a token->id dict; lowercase: uncased model (strip accents too)."""

    def __init__(self, vocab, lowercase: bool = True, overrides: dict[int, str] | None = None):
        self.vocab = vocab if isinstance(vocab, dict) else load_vocab(vocab)
        self.lowercase = lowercase
        self.overrides = unicode_overrides() if overrides is None else overrides
        self.unk_id, self.cls_id = self.vocab["[UNK]"], self.vocab["[CLS]"]
        self.sep_id, self.pad_id = self.vocab["[SEP]"], self.vocab["[PAD]"]
        self._cache: dict[str, list[int]] = {}
        self._ascii_fast = not any(code < 128 for code in self.overrides)

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > MAX_CHARS_PER_WORD:
            return [self.unk_id]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [self.unk_id]  # a word that cannot be fully matched is one [UNK]
            start = end
        return ids

    def tokenize_ids(self, text: str) -> list[int]:
        """Token ids without [CLS]/[SEP]; special tokens written in the text are kept whole."""
        ids = []
        for part in _SPECIAL_SPLIT.split(text):
            if part in self.vocab and part in SPECIAL_TOKENS:
                ids.append(self.vocab[part])
                continue
            if self._ascii_fast and part.isascii():
                words = ascii_words(part, self.lowercase)
            else:
                words = pre_tokenize(normalize(part, self.lowercase, self.overrides), self.overrides)
            for word in words:
                if word not in self._cache:
                    self._cache[word] = self._wordpiece(word)
                ids.extend(self._cache[word])
        return ids

    def encode(self, text: str, seq_len: int | None = None) -> dict:
        """-> {input_ids, attention_mask, truncated}. With seq_len: int32 arrays (1, seq_len), zero-padded."""
        ids = self.tokenize_ids(text)
        truncated = seq_len is not None and len(ids) > seq_len - 2
        if truncated:
            ids = ids[: seq_len - 2]
        ids = [self.cls_id] + ids + [self.sep_id]
        if seq_len is None:
            return {INPUT_IDS: ids, ATTENTION_MASK: [1] * len(ids), "truncated": False}
        input_ids = np.full((1, seq_len), self.pad_id, np.int32)
        input_ids[0, : len(ids)] = ids
        mask = np.zeros((1, seq_len), np.int32)
        mask[0, : len(ids)] = 1
        return {INPUT_IDS: input_ids, ATTENTION_MASK: mask, "truncated": truncated}
