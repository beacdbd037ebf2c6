"""A one-model bundle: exactly the files a device needs for one manifest entry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from device_runtime.bundle import Bundle, BundleError, extra_files
from device_runtime.format import MANIFEST, Key


def pack(bundle_dir: Path, name: str, out: Path) -> Path:
    """Copy the entry's .tflite, every `*_file` it names, the vocab and a manifest listing only it.

    Written to a staging folder renamed into place, so `out` is complete or absent."""
    bundle = Bundle(bundle_dir)
    entry = bundle.entry(name)
    if out.exists():
        raise BundleError(f"{out}: already exists; pack writes a new folder")
    files = [entry[Key.FILE], bundle.manifest[Key.VOCAB], *extra_files(entry).values()]
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for file in dict.fromkeys(files):
            source = bundle.folder / file
            if not source.is_file():
                raise BundleError(f"{source}: named by {name} but missing")
            shutil.copy2(source, staging / file)
        manifest = {**bundle.manifest, Key.MODELS: [entry]}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
