"""Atomic file writes shared by every package: a temporary file in the same folder, fsync, rename.

Standard library + numpy only, so train/, compress/, export/ and jobs/ can all import it. A reader
(or a run killed with kill -9) sees the previous file or the new one, never a truncated file."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def write_bytes_atomic(path: Path, data: bytes, check: Callable[[Path], object] | None = None) -> None:
    """`data` into `path` through write_file_atomic; check: called with the temporary file before the
    rename, and if it raises, `path` is untouched."""
    write_file_atomic(path, lambda tmp: tmp.write_bytes(data), check)


def write_json_atomic(path: Path, obj, indent: int | None = 2) -> None:
    """json.dumps(obj) plus a final newline, written atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=indent) + "\n").encode())


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """np.save to `path` atomically (the name is kept as given: no .npy is appended)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    write_bytes_atomic(path, buffer.getvalue())


def _mode_for(path: Path) -> int:
    """The mode `path` keeps: its current one, else what open() gives a new file (mkstemp's is 0600)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0o022)  # reading the umask means setting it; put it straight back
        os.umask(umask)
        return 0o666 & ~umask


def write_file_atomic(path: Path, write: Callable[[Path], object],
                      check: Callable[[Path], object] | None = None) -> None:
    """write(tmp) to a temporary file beside `path` (same suffixes, so a writer that picks the
    format by name still does, e.g. Keras .weights.h5), fsync, check(tmp), then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem, dot, suffixes = path.name.partition(".")
    fd, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".partial{dot}{suffixes}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, _mode_for(path))
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
