"""A one-model bundle: exactly the files a device needs for one manifest entry."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from device_runtime.bundle import Bundle, BundleError, extra_files
from device_runtime.card import render_card
from device_runtime.format import MANIFEST, MODEL_CARD, Key
from device_runtime.validate import inside


def _check_out(out: Path) -> None:
    if out.name in ("", ".", ".."):
        raise BundleError(f"{out}: name a new folder for pack to write (not {str(out)!r})")
    if out.exists() or out.is_symlink():
        raise BundleError(f"{out}: already exists; pack writes a new folder")


def pack(bundle_dir: Path, name: str | None, out: Path) -> Path:
    """Copy the entry (default: the bundle's default_model): its .tflite, every `*_file` it names, the vocab,
    a manifest listing only it, and that manifest's model card.

    The source entry is verified first. Files go to a fresh staging folder beside `out` (plain
    names only, so nothing lands elsewhere), renamed into place: `out` is complete or absent."""
    bundle = Bundle(bundle_dir)
    entry = bundle.entry(name)
    _check_out(out)
    problems = bundle.verify([entry[Key.NAME]])
    if problems:
        raise BundleError(f"{bundle.folder}: not packed, {problems[0]}")
    files = [entry[Key.FILE], bundle.manifest[Key.VOCAB], *extra_files(entry).values()]
    out.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    staging = holder / out.name  # made by mkdir, so it gets the usual permissions (mkdtemp's are 0700)
    try:
        staging.mkdir()
        for file in dict.fromkeys(files):
            source = bundle.file(file)
            if not source.is_file():
                raise BundleError(f"{source}: named by {name} but missing")
            shutil.copy2(source, inside(staging, file, "pack output"))
        manifest = {key: value for key, value in bundle.manifest.items() if key != Key.MOBILE}  # a Pi runs no MediaPipe
        manifest[Key.MODELS] = [entry]
        if Key.DEFAULT_MODEL in manifest:  # the record's figures compare models this pack leaves out
            manifest[Key.DEFAULT_MODEL] = {"name": entry[Key.NAME], "chosen_by": f"pack of {bundle.folder.name}/"}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        (staging / MODEL_CARD).write_text(render_card(manifest), encoding="utf-8")
        staging.rename(out)
    finally:
        shutil.rmtree(holder, ignore_errors=True)
    return out

