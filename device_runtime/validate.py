"""Checks for bundles from outside (copied, downloaded, edited): every manifest field the device side
reads, by type and range, and file names that must stay plain names inside the bundle folder."""

from __future__ import annotations

import math
import re
from pathlib import Path, PureWindowsPath

from device_runtime.errors import BundleInputError
from device_runtime.format import (
    FILE_KEY_SUFFIX,
    MEDIAPIPE_FORMAT,
    QUANTIZATIONS,
    REQUIRED_KEYS,
    REQUIRED_MOBILE_KEYS,
    REQUIRED_MODEL_KEYS,
    Key,
    bucket_key,
)
from device_runtime.tokenizer import SPECIAL_TOKENS

MIN_SEQ_LEN, MAX_SEQ_LEN = 2, 4096  # [CLS] + [SEP] at least; far above any BERT position table
_SHA256 = re.compile("[0-9a-f]{64}")  # hashlib's hexdigest(), which every comparison uses


class BundleError(BundleInputError, RuntimeError):
    """The bundle is incomplete or inconsistent; the message names the file or key."""


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _labels(value) -> str | None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        return "a non-empty list of non-empty strings"
    return None if len(set(value)) == len(value) else "distinct labels"


def _seq_len(value) -> str | None:
    return None if _is_int(value) and MIN_SEQ_LEN <= value <= MAX_SEQ_LEN else f"an int in [{MIN_SEQ_LEN}, {MAX_SEQ_LEN}]"


def _buckets(value) -> str | None:
    ok = isinstance(value, list) and all(_seq_len(v) is None for v in value)
    return None if ok else f"a list of ints in [{MIN_SEQ_LEN}, {MAX_SEQ_LEN}]"


def _file_name(value) -> str | None:
    """A plain name: no directory part, not absolute, not `.` or `..`."""
    if not isinstance(value, str) or not value:
        return "a non-empty file name"
    if value.startswith("/") or PureWindowsPath(value).anchor:
        return "a file name inside the bundle folder, not an absolute path"
    if "/" in value or "\\" in value or value in (".", "..") or "\x00" in value:
        return "a plain file name inside the bundle folder (no '..' or path separators)"
    return None


def _checker(test, expected: str):
    return lambda value: None if test(value) else expected


TOP_FIELDS = {
    Key.LABELS: _labels,
    Key.SEQ_LEN: _seq_len,
    Key.VOCAB: _file_name,
    Key.VOCAB_SHA256: _checker(lambda v: isinstance(v, str) and _SHA256.fullmatch(v), "64 lowercase hex characters"),
    Key.DO_LOWER_CASE: _checker(lambda v: isinstance(v, bool), "true or false"),
    Key.MODELS: _checker(lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v), "a list of objects"),
    Key.DEFAULT_MODEL: _checker(lambda v: isinstance(v, dict) and isinstance(v.get("name"), str), "an object with a name"),
    Key.PROVENANCE: _checker(lambda v: isinstance(v, dict), "an object"),
}
MAX_TEMPERATURE = 100.0
ENTRY_FIELDS = {  # optional keys are checked when present; every other `*_file` key is a _file_name
    Key.NAME: _checker(lambda v: isinstance(v, str) and v, "a non-empty string"),
    Key.FILE: _file_name,
    Key.SHA256: TOP_FIELDS[Key.VOCAB_SHA256],
    Key.BYTES: _checker(lambda v: _is_int(v) and v >= 0, "a non-negative int"),
    Key.QUANTIZATION: _checker(lambda v: v in QUANTIZATIONS, f"one of {', '.join(QUANTIZATIONS)}"),
    Key.SEQ_LEN: _seq_len,
    Key.BUCKETS: _buckets,
    Key.ID_MAP_SHA256: TOP_FIELDS[Key.VOCAB_SHA256],
    Key.TEMPERATURE: _checker(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                              and 0 < v <= MAX_TEMPERATURE, f"a number in (0, {MAX_TEMPERATURE:g}]"),
    Key.METRICS: _checker(lambda v: isinstance(v, dict), "an object"),
    Key.PLATFORM_METRICS: _checker(lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v),
                                   "a list of objects"),
}

TOP_FIELDS[Key.MOBILE] = TOP_FIELDS[Key.MODELS]
MOBILE_FIELDS = {  # a `mobile` entry; device_runtime.mobile checks its file's contents
    **{key: ENTRY_FIELDS[key] for key in (Key.NAME, Key.FILE, Key.SHA256, Key.BYTES)},
    Key.FORMAT: _checker(lambda v: v == MEDIAPIPE_FORMAT, repr(MEDIAPIPE_FORMAT)),
    Key.SOURCE_MODEL: ENTRY_FIELDS[Key.NAME],
    Key.SOURCE_SHA256: TOP_FIELDS[Key.VOCAB_SHA256],
}


def _field_problems(obj: dict, fields: dict, prefix: str) -> list[str]:
    problems = []
    for key, value in obj.items():
        check = fields.get(key, _file_name if key.endswith(FILE_KEY_SUFFIX) else None)
        expected = check(value) if check else None
        if expected:
            problems.append(f"{prefix}{key}: expected {expected}, got {_short(value)}")
    return problems


def _entry_problems(entry: dict, prefix: str) -> list[str]:
    problems = _field_problems(entry, ENTRY_FIELDS, prefix)
    if isinstance(entry.get(Key.BUCKETS), list) and not problems:
        problems += [f"{prefix}{bucket_key(n)}: missing (listed in {Key.BUCKETS})"
                     for n in entry[Key.BUCKETS] if bucket_key(n) not in entry]
    if Key.ID_MAP_FILE in entry and Key.ID_MAP_SHA256 not in entry:
        problems.append(f"{prefix}{Key.ID_MAP_SHA256}: missing (the entry has an {Key.ID_MAP_FILE})")
    return problems


def check_manifest(manifest, path: Path) -> None:
    """Raise BundleError naming `path` and every bad field unless `manifest` is a usable manifest."""
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    problems = _field_problems({k: v for k, v in manifest.items() if k in TOP_FIELDS}, TOP_FIELDS, "")
    if problems:
        raise BundleError(f"{path}: " + "; ".join(problems))
    for i, entry in enumerate(manifest.get(Key.MODELS, [])):
        missing += [f"models[{i}].{k}" for k in REQUIRED_MODEL_KEYS if k not in entry]
    for i, entry in enumerate(manifest.get(Key.MOBILE, [])):
        missing += [f"mobile[{i}].{k}" for k in REQUIRED_MOBILE_KEYS if k not in entry]
    if missing:
        raise BundleError(f"{path}: missing keys: {', '.join(missing)}")
    for i, entry in enumerate(manifest[Key.MODELS]):
        problems += _entry_problems(entry, f"models[{i}].")
    for i, entry in enumerate(manifest.get(Key.MOBILE, [])):
        problems += _field_problems(entry, MOBILE_FIELDS, f"mobile[{i}].")
    names = [entry[Key.NAME] for entry in manifest[Key.MODELS]]
    problems += [f"models: name {name!r} appears {names.count(name)} times" for name in dict.fromkeys(names)
                 if names.count(name) > 1]
    mobile = [entry[Key.NAME] for entry in manifest.get(Key.MOBILE, [])]
    problems += [f"mobile: name {name!r} is also another model's or mobile file's" for name in dict.fromkeys(mobile)
                 if (names + mobile).count(name) > 1]
    default = manifest.get(Key.DEFAULT_MODEL, {}).get("name")
    if default is not None and default not in names:
        problems.append(f"{Key.DEFAULT_MODEL}.name: {_short(default)} is not a model of this bundle")
    if problems:
        raise BundleError(f"{path}: " + "; ".join(problems))


def file_names(manifest: dict) -> dict[str, str]:
    """{where: file name} of every file a checked manifest names (the vocab, each entry's `*_file`s, the mobile files)."""
    names = {Key.VOCAB: manifest[Key.VOCAB]}
    for i, entry in enumerate(manifest[Key.MODELS]):
        names.update({f"models[{i}].{k}": v for k, v in entry.items() if k.endswith(FILE_KEY_SUFFIX) or k == Key.FILE})
    for i, entry in enumerate(manifest.get(Key.MOBILE, [])):
        names[f"mobile[{i}].{Key.FILE}"] = entry[Key.FILE]
    return names


def inside(folder: Path, name: str, where: str) -> Path:
    """folder / name, after checking its real path (symlinks followed) stays inside the real folder."""
    path = folder / name
    try:
        real, real_folder = path.resolve(), folder.resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop
        raise BundleError(f"{path}: cannot resolve {where} ({err})") from None
    if real != real_folder and real_folder in real.parents:
        return path
    raise BundleError(f"{path}: {where} resolves to {real}, outside the bundle folder {real_folder}")


def check_vocab(path: Path, raw: bytes) -> None:
    """Raise BundleError naming `path` unless `raw` is a UTF-8 vocab holding every special token."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise BundleError(f"{path}:{line}: vocab is not valid UTF-8 ({err.reason})") from None
    if not text.strip():
        raise BundleError(f"{path}: vocab is empty")
    tokens = {line.rstrip("\r") for line in text.split("\n")}
    missing = [t for t in SPECIAL_TOKENS if t not in tokens]
    if missing:
        raise BundleError(f"{path}: vocab lacks the special tokens {', '.join(missing)}")
