"""The device tokenizer against hand-checked ids and against transformers' BertTokenizerFast."""

import glob
import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_runtime.tokenizer import (
    UnicodeTableError,
    VocabError,
    WordPieceTokenizer,
    ascii_words,
    load_vocab,
    normalize,
    pre_tokenize,
    unicode_overrides,
)
from device_runtime.unicode_overrides import UNIDATA_VERSION
from tools import make_unicode_overrides as make_overrides

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT.parent / "shared" / "data" / "FinancialPhraseBank-v1.0"
GOLDEN = Path(__file__).parent / "fixtures" / "tokenizer_golden.jsonl"
TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "profit", "rose", "##s", "eur", ".", "cafe", "中",
          "un", "##know", ",", "$"]
SMALL = {token: i for i, token in enumerate(TOKENS)}


@pytest.fixture(scope="module")
def minilm_vocab():
    from converter.modeling.hf_weights import resolve_checkpoint

    return resolve_checkpoint("minilm") / "vocab.txt"


@pytest.fixture(scope="module")
def reference(minilm_vocab):
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast(vocab=str(minilm_vocab), do_lower_case=True)
    assert tok("Operating profit rose")["input_ids"] == [101, 4082, 5618, 3123, 102], "reference vocab not loaded"
    return tok


@pytest.fixture(scope="module")
def device(minilm_vocab):
    return WordPieceTokenizer(minilm_vocab)


@pytest.mark.parametrize("text, ids", [
    ("", []),
    ("   \t\n ", []),
    ("Profit rose.", [5, 6, 9]),
    ("profits", [5, 7]),
    ("PROFIT  EUR", [5, 8]),
    ("Café", [10]),  # accent stripped after NFD
    ("unknow", [12, 13]),
    ("unknown", [1]),  # cannot be fully matched -> one [UNK]
    ("中中", [11, 11]),  # CJK characters become words of their own
    ("pro\x00fit\ufffd\x07", [5]),  # NUL, U+FFFD and control characters dropped
    ("profit,$eur", [5, 14, 15, 8]),  # ASCII symbols split like punctuation
    ("profit [MASK] rose", [5, 4, 6]),  # special tokens stay whole
    ("p" * 101, [1]),  # longer than 100 characters
])
def test_small_vocab_exact_ids(text, ids):
    assert WordPieceTokenizer(SMALL).tokenize_ids(text) == ids


def test_encode_pads_truncates_and_flags():
    tok = WordPieceTokenizer(SMALL)
    enc = tok.encode("profit rose profit rose", seq_len=4)
    assert enc["input_ids"].tolist() == [[2, 5, 6, 3]] and enc["truncated"]
    enc = tok.encode("", seq_len=4)
    assert enc["input_ids"].tolist() == [[2, 3, 0, 0]] and enc["attention_mask"].tolist() == [[1, 1, 0, 0]]
    assert enc["input_ids"].dtype == np.int32 and not enc["truncated"]
    assert tok.encode("profit")["input_ids"] == [2, 5, 3]


def test_vocab_errors_name_the_file(tmp_path):
    with pytest.raises(VocabError, match="not found"):
        load_vocab(tmp_path / "vocab.txt")
    (tmp_path / "vocab.txt").write_text("[PAD]\nhello\n")
    with pytest.raises(VocabError, match=r"vocab\.txt: missing special tokens"):
        load_vocab(tmp_path / "vocab.txt")


def test_unicode_table_file_is_the_generators_rendering():
    # The stored runs expand to the lookup and compress back to exactly the checked-in file.
    table = unicode_overrides()
    assert len(table) == 503 and set(table.values()) == {"drop", "letter", "punct"}
    assert make_overrides.render(make_overrides.to_runs(table), UNIDATA_VERSION) == make_overrides.OUT.read_text()


@pytest.mark.slow
def test_unicode_table_matches_generator_on_every_code_point(minilm_vocab):
    classes = make_overrides.classify(minilm_vocab)
    table = unicode_overrides()
    assert [c for c in range(0x110000) if table.get(c) != classes.get(c)] == []


def test_unicode_version_mismatch_names_both_versions_and_the_command(monkeypatch):
    monkeypatch.setattr(unicodedata, "unidata_version", "99.0.0")
    with pytest.raises(UnicodeTableError) as err:
        WordPieceTokenizer(SMALL)
    message = str(err.value)
    assert f"Unicode {UNIDATA_VERSION}" in message and "Unicode 99.0.0" in message
    assert "python -m tools.make_unicode_overrides" in message and "\n" not in message
    assert WordPieceTokenizer(SMALL, overrides={}).tokenize_ids("Profit rose.") == [5, 6, 9]  # the generator's path


def test_every_phrasebank_sentence_matches_reference(reference, device):
    files = sorted(glob.glob(str(RELEASE / "Sentences_*.txt")))
    assert len(files) == 4, f"Financial PhraseBank release not found at {RELEASE}"
    texts = [line.rsplit("@", 1)[0] for f in files for line in open(f, encoding="latin-1")]
    expected = reference(texts, add_special_tokens=False)["input_ids"]
    mismatches = [t for t, ids in zip(texts, expected) if device.tokenize_ids(t) != ids]
    assert len(texts) > 14000 and mismatches == []


def test_golden_file(device):
    rows = [json.loads(line) for line in GOLDEN.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 10
    for row in rows:
        assert device.encode(row["text"], seq_len=16)["input_ids"][0].tolist() == row["input_ids"], row["text"]


ALPHABET = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(list("aeiouAEIOU éÉüñçß中文字日本한국😀👍🏽.,;$%€-'\"()[]")
                    + list("\u200b\u200c\u200d\ufeff\x00\x07\x1b\ufffd\t\n\r\u00a0\u3000")),
)
WORDS = st.lists(st.one_of(st.text(ALPHABET, max_size=12), st.sampled_from(["[MASK]", "[SEP]", "x" * 101, "é" * 120])),
                 max_size=8).map(" ".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(WORDS)
def test_hypothesis_unicode_matches_reference(reference, device, text):
    expected = reference(text, padding="max_length", truncation=True, max_length=24, return_tensors="np")
    got = device.encode(text, seq_len=24)
    assert got["input_ids"].tolist() == expected["input_ids"].tolist()
    assert got["attention_mask"].tolist() == expected["attention_mask"].tolist()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60))
def test_ascii_fast_path_is_the_general_path(text):
    """Every ASCII character (controls, tabs, all punctuation) splits as normalize + pre_tokenize does."""
    for lowercase in (True, False):
        assert ascii_words(text, lowercase) == pre_tokenize(normalize(text, lowercase))
