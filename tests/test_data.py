"""Financial PhraseBank loaders: malformed lines, conflicting duplicates, bad tables."""

import logging
from pathlib import Path

import numpy as np
import pytest

from converter.config import DataConfig
from converter.data.splits import DataError, load_release, load_splits, load_table, split_stratified

RELEASE_NAMES = ("Sentences_AllAgree.txt", "Sentences_75Agree.txt", "Sentences_66Agree.txt", "Sentences_50Agree.txt")


def _release(folder, lines_by_file):
    folder.mkdir()
    for name in RELEASE_NAMES:
        (folder / name).write_bytes("\n".join(lines_by_file.get(name, ["Filler sentence .@neutral"])).encode("latin-1"))
    return folder


def test_release_skips_and_counts_bad_lines(tmp_path, caplog):
    folder = _release(tmp_path / "rel", {
        "Sentences_AllAgree.txt": ["Profit rose .@positive", "1", "Caf\u00e9 sales fell .@negative"],
        "Sentences_50Agree.txt": ["Profit rose .@positive", "Shares flat .@neutral", "Shares flat .@positive",
                                  "No label here", "Odd label .@bullish"],
    })
    with caplog.at_level(logging.WARNING):
        data = load_release(folder)
    assert data.stats == {"malformed": 3, "conflicting_duplicates": 1}
    assert "Sentences_AllAgree.txt:2: malformed line" in caplog.text
    assert "Sentences_50Agree.txt:5: malformed line" in caplog.text
    by_text = dict(zip(data.texts, zip(data.labels.tolist(), data.agreement.tolist())))
    assert by_text["Profit rose ."] == (2, 100) and by_text["Café sales fell ."] == (0, 100)
    assert "Shares flat ." not in by_text  # conflicting labels: dropped


def test_release_strict_fails_on_first_bad_line(tmp_path):
    folder = _release(tmp_path / "rel", {"Sentences_AllAgree.txt": ["Profit rose .@positive", "1"]})
    with pytest.raises(DataError, match=r"Sentences_AllAgree\.txt:2: malformed"):
        load_release(folder, strict=True)


def test_real_release_counts():
    data = load_release(Path(__file__).resolve().parents[2] / "shared/data/FinancialPhraseBank-v1.0")
    assert len(data) == 4836 and data.stats == {"malformed": 1, "conflicting_duplicates": 2}


def test_split_is_stratified_seeded_and_disjoint(tmp_path):
    texts = [f"s{i}" for i in range(100)]
    from converter.data.splits import Dataset

    data = Dataset(texts, np.array([0] * 20 + [1] * 50 + [2] * 30, np.int32), np.full(100, 100, np.int32))
    parts = split_stratified(data, DataConfig(split_seed=3))
    assert [len(parts[s]) for s in ("train", "dev", "test")] == [80, 10, 10]
    assert np.bincount(parts["test"].labels).tolist() == [2, 5, 3]
    assert not set(parts["test"].texts) & set(parts["train"].texts)
    assert split_stratified(data, DataConfig(split_seed=3))["test"].texts == parts["test"].texts


def test_canonical_split_and_allagree():
    splits = load_splits(DataConfig())
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [3870, 483, 483]
    assert len(splits["test"].allagree()) == 241


@pytest.mark.parametrize("body, message", [
    ("text\tlabel\nProfit rose\tbullish\n", r"bad\.tsv:2: unknown label 'bullish'"),
    ("", r"bad\.tsv: empty file"),
    ("text\tlabel\n", r"bad\.tsv: no data rows"),
    ("sentence\tsentiment\nx\tpositive\n", r"bad\.tsv:1: header must name"),
    ("text\tlabel\nonly one column\n", r"bad\.tsv:2: expected 2 columns"),
])
def test_table_errors_name_file_and_line(tmp_path, body, message):
    (tmp_path / "bad.tsv").write_text(body)
    with pytest.raises(DataError, match=message):
        load_table(tmp_path / "bad.tsv")


def test_table_wrong_encoding(tmp_path):
    (tmp_path / "bad.tsv").write_bytes("text\tlabel\nok\tneutral\nCaf\u00e9\tneutral\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"bad\.tsv:3: not valid utf-8"):
        load_table(tmp_path / "bad.tsv")


def test_csv_tables(tmp_path):
    (tmp_path / "a.csv").write_text('label,text\npositive,"Profit rose, a lot"\nNEGATIVE,Fell\n')
    data = load_table(tmp_path / "a.csv")
    assert data.texts == ["Profit rose, a lot", "Fell"] and data.labels.tolist() == [2, 0] and data.agreement is None
