"""Assemble dist/: .tflite files, vocab.txt, manifest.json — staged, then swapped in whole.

A failed or killed run leaves the previous bundle exactly as it was; a manifest never names a missing file."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import sys
from pathlib import Path

from converter.config import BundleConfig, ModelConfig
from converter.export.choice import choose_default
from converter.files import write_bytes_atomic, write_json_atomic
from device_runtime.bundle import extra_files, sha256_of
from device_runtime.card import render_card
from device_runtime.format import (
    DEVICE_DIR,
    FORMAT_VERSION,
    INPUT_DTYPE,
    INPUT_NAMES,
    MANIFEST,
    MODEL_CARD,
    OUTPUT_NAME,
    VOCAB_FILE,
    Key,
)
from device_runtime.pack import pack


def arch_of(cfg: ModelConfig) -> dict:
    arch = {"layers": cfg.num_layers, "hidden": cfg.hidden_size, "heads": cfg.num_heads,
            "head_size": cfg.hidden_size // cfg.num_heads, "intermediate": cfg.intermediate_size,
            "vocab_size": cfg.vocab_size}
    if cfg.heads_per_layer or cfg.intermediate_per_layer:  # structured pruning: widths per layer
        arch.update(heads=[cfg.heads(i) for i in range(cfg.num_layers)],
                    intermediate=[cfg.intermediate(i) for i in range(cfg.num_layers)])
    if cfg.embedding_rank:
        arch["embedding_rank"] = cfg.embedding_rank
    if cfg.pooling != "cls":
        arch["pooling"] = cfg.pooling
    return arch


def model_entry(name: str, tflite: Path, quantization: str, cfg: ModelConfig, metrics: dict, **extra) -> dict:
    """A manifest `models` item; `file`, `sha256` and `bytes` are filled in when the bundle is written."""
    return {Key.NAME: name, Key.FILE: f"{name}.tflite", "source": str(tflite), Key.QUANTIZATION: quantization,
            Key.SEQ_LEN: cfg.max_seq_len, "arch": arch_of(cfg), "metrics": metrics, **extra}


def read_manifest(out_dir: Path) -> dict | None:
    path = Path(out_dir) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


# renameat2(2): AT_FDCWD resolves both paths against the working directory; RENAME_EXCHANGE swaps them.
AT_FDCWD = -100
RENAME_EXCHANGE = 2
NO_EXCHANGE = (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP)  # old kernel, or a filesystem without it


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux renameat2); False where the OS cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without the wrapper (glibc < 2.28, musl)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Put the complete staging folder at out_dir; at no moment is out_dir missing or half-written.

    Linux: one renameat2(RENAME_EXCHANGE), after which the old bundle sits at the staging path and
    is removed. Elsewhere the old bundle is renamed to .<name>.old-<pid> and stays until the new one
    is in place; a run killed between the two renames leaves no out_dir, and recover_bundle (called
    by every write_bundle first) renames the .old folder back."""
    if not out_dir.exists():
        staging.rename(out_dir)  # the first bundle: a plain rename is atomic
        return
    if _exchange(staging, out_dir):
        shutil.rmtree(staging, ignore_errors=True)  # now the old bundle
        return
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    out_dir.rename(old)
    try:
        staging.rename(out_dir)
    except BaseException:
        old.rename(out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _pid_of(path: Path) -> int | None:
    tail = path.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _is_running(pid: int | None) -> bool:
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def recover_bundle(out_dir: Path) -> None:
    """Undo what a killed earlier run left beside out_dir.

    Without out_dir, the newest .<name>.old-<pid> folder is the last complete bundle (the fallback
    swap was killed between its two renames): it is renamed back. Then the .staging-* and .old-*
    folders of runs that are no longer running are removed."""
    out_dir = Path(out_dir)
    if not out_dir.parent.is_dir():
        return
    left = [p for p in out_dir.parent.glob(f".{out_dir.name}.*-*") if p.is_dir() and not _is_running(_pid_of(p))]
    olds = sorted((p for p in left if p.name.startswith(f".{out_dir.name}.old-")), key=lambda p: p.stat().st_mtime)
    if not out_dir.exists() and olds and (olds[-1] / MANIFEST).is_file():
        olds.pop().rename(out_dir)
    for path in left:
        if path.exists() and path.name.startswith((f".{out_dir.name}.staging-", f".{out_dir.name}.old-")):
            shutil.rmtree(path, ignore_errors=True)


def write_manifest(folder: Path, manifest: dict) -> None:
    """Rewrite a bundle's manifest.json and its MODEL_CARD.md, each atomically (the manifest first: a
    kill between the two leaves a stale card, which verify reports, never a lost manifest)."""
    write_json_atomic(Path(folder) / MANIFEST, manifest)
    write_bytes_atomic(Path(folder) / MODEL_CARD, render_card(manifest).encode("utf-8"))


def _device_bytes(staging: Path, entry: dict) -> int:
    """What a device needs for one model: its file, its extra files and the vocab."""
    files = {entry[Key.FILE], VOCAB_FILE, *extra_files(entry).values()}
    return sum((staging / name).stat().st_size for name in files)


def _ship(staging: Path, manifest: dict, rule: BundleConfig, tokens: int) -> None:
    """Choose the default model, write the model card, pack the default model into device/."""
    sizes = {m[Key.NAME]: _device_bytes(staging, m) for m in manifest[Key.MODELS]}
    if manifest[Key.MODELS]:
        manifest[Key.DEFAULT_MODEL] = choose_default(manifest[Key.MODELS], sizes, manifest[Key.SEQ_LEN], tokens,
                                                     rule.tolerance_points, rule.budget_mb, rule.default_model)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (staging / MODEL_CARD).write_text(render_card(manifest), encoding="utf-8")
    if rule.pack_device and manifest[Key.MODELS]:
        pack(staging, None, staging / DEVICE_DIR)


def write_bundle(out_dir: Path, entries: list[dict], vocab: Path, labels, seq_len: int,
                 do_lower_case: bool, keep_existing: bool = True, provenance: dict | None = None,
                 rule: BundleConfig | None = None, tokens: int | None = None) -> dict:
    """Write the bundle into a staging folder beside out_dir, then swap it in.

    With keep_existing, models of a previous bundle built on the same vocab and seq_len stay
    (their files are copied over) unless an entry of the same name replaces them, and so does
    its provenance unless one is given. Every bundle gets a default model (`rule` on dev figures,
    sentences of `tokens` tokens; default: the previous choice's length, else seq_len) and a
    MODEL_CARD.md; with a `rule` whose pack_device is on, the default model is packed into device/.
    """
    out_dir = Path(out_dir)
    recover_bundle(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        shutil.copyfile(vocab, staging / VOCAB_FILE)
        vocab_sha = sha256_of(staging / VOCAB_FILE)
        previous = read_manifest(out_dir) if keep_existing else None
        kept = []
        if previous and previous.get(Key.VOCAB_SHA256) == vocab_sha and previous.get(Key.SEQ_LEN) == seq_len:
            names = {e[Key.NAME] for e in entries}
            kept = [dict(e, source=str(out_dir / e[Key.FILE]),
                         extra_sources={f: str(out_dir / f) for f in extra_files(e).values()})
                    for e in previous[Key.MODELS] if e[Key.NAME] not in names]
        provenance = provenance or (previous or {}).get(Key.PROVENANCE) or {}
        tokens = tokens or ((previous or {}).get(Key.DEFAULT_MODEL) or {}).get("median_dev_tokens") or seq_len
        models = []
        for entry in kept + entries:
            entry = dict(entry)
            for name, extra in entry.pop("extra_sources", {}).items():  # id maps, bucket files
                shutil.copyfile(extra, staging / name)
            source = Path(entry.pop("source"))
            target = staging / entry[Key.FILE]
            shutil.copyfile(source, target)
            entry.update({Key.SHA256: sha256_of(target), Key.BYTES: target.stat().st_size})
            models.append(entry)
        manifest = {Key.FORMAT_VERSION: FORMAT_VERSION, Key.LABELS: list(labels), Key.SEQ_LEN: seq_len,
                    Key.VOCAB: VOCAB_FILE, Key.VOCAB_SHA256: vocab_sha, Key.DO_LOWER_CASE: do_lower_case,
                    Key.INPUT_NAMES: list(INPUT_NAMES), Key.INPUT_DTYPE: INPUT_DTYPE, Key.OUTPUT_NAME: OUTPUT_NAME,
                    Key.PROVENANCE: provenance, Key.MODELS: models}
        _ship(staging, manifest, rule or BundleConfig(pack_device=False), tokens)
        _swap_in(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
