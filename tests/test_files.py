"""converter.files: every write is a temporary file, fsync, rename; a failure leaves the previous file."""

import json
import os

import numpy as np
import pytest

from converter import files


def _boom(*args):
    raise OSError("disk full")


@pytest.mark.parametrize("write, value", [
    (files.write_json_atomic, {"pooling": "mean"}),
    (files.save_npy_atomic, np.arange(6, dtype=np.float32).reshape(2, 3)),
    (files.write_bytes_atomic, b"new bytes"),
])
def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch, write, value):
    path = tmp_path / "out.bin"
    path.write_bytes(b"previous")
    monkeypatch.setattr(os, "fsync", _boom)
    with pytest.raises(OSError, match="disk full"):
        write(path, value)
    assert path.read_bytes() == b"previous" and os.listdir(tmp_path) == ["out.bin"]


def test_written_files_read_back(tmp_path):
    files.write_json_atomic(tmp_path / "a" / "state.json", {"epoch": 2, "history": [0.5]})
    assert json.loads((tmp_path / "a" / "state.json").read_text()) == {"epoch": 2, "history": [0.5]}
    array = np.array([[1, -2], [3, 4]], np.int16)
    files.save_npy_atomic(tmp_path / "map.npy", array)
    loaded = np.load(tmp_path / "map.npy")
    assert loaded.dtype == np.int16 and np.array_equal(loaded, array)
    assert sorted(os.listdir(tmp_path)) == ["a", "map.npy"]


def test_a_failed_check_keeps_the_previous_file(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"good")
    seen = []

    def check(tmp):
        seen.append(tmp.read_bytes())
        raise ValueError("not a model")

    with pytest.raises(ValueError, match="not a model"):
        files.write_bytes_atomic(path, b"bad", check)
    assert seen == [b"bad"] and path.read_bytes() == b"good" and os.listdir(tmp_path) == ["model.tflite"]


def test_write_file_atomic_keeps_the_suffix_and_the_previous_file(tmp_path):
    path = tmp_path / "best.weights.h5"
    path.write_bytes(b"previous")
    names = []

    def failing(tmp):
        names.append(tmp.name)
        tmp.write_bytes(b"half")
        raise OSError("killed mid-write")

    with pytest.raises(OSError, match="killed mid-write"):
        files.write_file_atomic(path, failing)
    assert names[0].endswith(".weights.h5") and path.read_bytes() == b"previous" and os.listdir(tmp_path) == [path.name]
    files.write_file_atomic(path, lambda tmp: tmp.write_bytes(b"new"))
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == [path.name]


def test_a_rewrite_keeps_the_mode_and_a_new_file_gets_the_umask_default(tmp_path):
    existing, new = tmp_path / "manifest.json", tmp_path / "model.tflite"
    existing.write_text("{}")
    existing.chmod(0o640)
    files.write_json_atomic(existing, {"a": 1})
    files.write_bytes_atomic(new, b"model")
    umask = os.umask(0o022)
    os.umask(umask)
    assert existing.stat().st_mode & 0o777 == 0o640 and new.stat().st_mode & 0o777 == 0o666 & ~umask
