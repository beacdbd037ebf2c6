"""Financial PhraseBank loaders: the original release (`sentence@label`) and text,label tables.

Every error names the file (and line); malformed release lines are skipped and counted."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converter.config import LABELS, DataConfig
from device_runtime.tables import DataError, read_table, read_text

log = logging.getLogger(__name__)

# Release files, strongest agreement first: a sentence's agreement is the best file it is in.
RELEASE_FILES = (("Sentences_AllAgree.txt", 100), ("Sentences_75Agree.txt", 75),
                 ("Sentences_66Agree.txt", 66), ("Sentences_50Agree.txt", 50))
SPLITS = ("train", "dev", "test")


@dataclass
class Dataset:
    texts: list[str]
    labels: np.ndarray  # int32 indices into LABELS
    agreement: np.ndarray | None = None  # 100 = AllAgree; None when the source has no column
    source: str = ""
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, keep: np.ndarray) -> Dataset:
        idx = np.flatnonzero(keep)
        agreement = None if self.agreement is None else self.agreement[idx]
        return Dataset([self.texts[i] for i in idx], self.labels[idx], agreement, self.source)

    def allagree(self) -> Dataset | None:
        return None if self.agreement is None else self.subset(self.agreement == 100)


def load_release(folder: Path, strict: bool = False) -> Dataset:
    """Read the four release files (latin-1). Bad lines: warn with file:line and skip, or raise if strict."""
    sentences: dict[str, tuple[int, int]] = {}
    conflicts: set[str] = set()
    stats = Counter()
    for name, agreement in RELEASE_FILES:
        path = Path(folder) / name
        for number, line in enumerate(read_text(path, "latin-1").splitlines(), start=1):
            text, sep, raw_label = line.rpartition("@")
            if not line.strip():
                continue
            if not sep or not text.strip() or raw_label.strip().lower() not in LABELS:
                message = f"{path}:{number}: malformed line (expected 'sentence@label'): {line[:60]!r}"
                if strict:
                    raise DataError(message)
                log.warning(message)
                stats["malformed"] += 1
                continue
            text, label = text.strip(), LABELS.index(raw_label.strip().lower())
            if text in sentences and sentences[text][0] != label:
                conflicts.add(text)
            elif text not in sentences:
                sentences[text] = (label, agreement)
    for text in conflicts:
        del sentences[text]
    stats["conflicting_duplicates"] = len(conflicts)
    if stats["malformed"] or conflicts:
        log.warning("%s: skipped %d malformed lines, dropped %d sentences with conflicting labels",
                    folder, stats["malformed"], len(conflicts))
    texts = list(sentences)
    return Dataset(texts, np.array([sentences[t][0] for t in texts], np.int32),
                   np.array([sentences[t][1] for t in texts], np.int32), str(folder), dict(stats))


def load_table(path: Path) -> Dataset:
    """A .tsv or .csv with a header holding `text` and `label` (and optionally `agreement`)."""
    texts, labels, agreement = read_table(path, LABELS)
    return Dataset(texts, labels, agreement, str(path))


def split_stratified(data: Dataset, cfg: DataConfig) -> dict[str, Dataset]:
    """Per label: shuffle with cfg.split_seed, then take test, dev, and the rest as train."""
    rng = np.random.default_rng(cfg.split_seed)
    parts = {name: np.zeros(len(data), bool) for name in SPLITS}
    for label in range(len(LABELS)):
        idx = rng.permutation(np.flatnonzero(data.labels == label))
        n_test, n_dev = round(len(idx) * cfg.test_fraction), round(len(idx) * cfg.dev_fraction)
        parts["test"][idx[:n_test]] = True
        parts["dev"][idx[n_test:n_test + n_dev]] = True
        parts["train"][idx[n_test + n_dev:]] = True
    return {name: data.subset(mask) for name, mask in parts.items()}


def _table_file(folder: Path, split: str) -> Path | None:
    return next((folder / f"{split}{ext}" for ext in (".tsv", ".csv") if (folder / f"{split}{ext}").is_file()), None)


def load_splits(cfg: DataConfig) -> dict[str, Dataset]:
    """train/dev/test from a split folder ({train,dev,test}.tsv|csv) or a release folder."""
    folder = Path(cfg.data_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder not found (set DATA=... or --data)")
    files = {split: _table_file(folder, split) for split in SPLITS}
    if all(files.values()):
        return {split: load_table(path) for split, path in files.items()}
    if (folder / RELEASE_FILES[0][0]).is_file():
        return split_stratified(load_release(folder, cfg.strict), cfg)
    raise DataError(f"{folder}: neither train/dev/test .tsv|.csv files nor a Financial PhraseBank release")
