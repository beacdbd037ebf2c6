"""text,label[,agreement] tables (.tsv / .csv) with errors that name the file and line."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from device_runtime.errors import BundleInputError


class DataError(BundleInputError, ValueError):
    """Unreadable or invalid data; the message names the file (and line)."""


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """Whole file as text; missing, empty or wrongly encoded files raise DataError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid {encoding} ({err.reason}); convert the file to {encoding}") from None
    if not text.strip():
        raise DataError(f"{path}: empty file")
    return text


def read_table(path: Path, labels) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """-> (texts, label indices into `labels` (int32), agreement (int32) or None)."""
    path = Path(path)
    is_csv = path.suffix.lower() == ".csv"
    rows = csv.reader(read_text(path).splitlines(), delimiter="," if is_csv else "\t",
                      quoting=csv.QUOTE_MINIMAL if is_csv else csv.QUOTE_NONE)
    header = [h.strip().lower() for h in next(rows)]
    if "text" not in header or "label" not in header:
        raise DataError(f"{path}:1: header must name 'text' and 'label' columns, got {header}")
    col = {name: header.index(name) for name in ("text", "label", "agreement") if name in header}
    names = [str(label).lower() for label in labels]
    texts, label_ids, agreement = [], [], []
    for number, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{number}: expected {len(header)} columns, got {len(row)}")
        label = row[col["label"]].strip().lower()
        if label not in names:
            raise DataError(f"{path}:{number}: unknown label {label!r} (expected one of {', '.join(names)})")
        texts.append(row[col["text"]])
        label_ids.append(names.index(label))
        if "agreement" in col:
            try:
                agreement.append(int(row[col["agreement"]]))
            except ValueError:
                raise DataError(f"{path}:{number}: agreement {row[col['agreement']]!r} is not a number") from None
    if not texts:
        raise DataError(f"{path}: no data rows")
    return texts, np.array(label_ids, np.int32), (np.array(agreement, np.int32) if agreement else None)
