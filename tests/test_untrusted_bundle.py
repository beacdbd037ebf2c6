"""Bundles from outside: every malformed manifest, vocab or model file, and every file name that
would leave the bundle folder, gives one `error:` line naming the file, never a traceback."""

import builtins
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from device_runtime import bundle as bundle_module
from device_runtime import cli
from device_runtime.card import render_card
from device_runtime.format import MODEL_CARD

COMMANDS = ("verify", "classify", "eval", "pack")
INT8 = "model-int8"


@pytest.fixture()
def bundle_copy(bundle_dir, tmp_path):
    return Path(shutil.copytree(bundle_dir, tmp_path / "copy"))


def argv(command: str, folder: Path, tmp_path: Path, bundle_dir: Path) -> list[str]:
    extra = {"verify": [], "classify": ["--model", INT8, "profit"],
             "eval": ["--model", INT8, "--data", str(bundle_dir.parent / "data" / "test.tsv")],
             "pack": ["--model", INT8, "--out", str(tmp_path / "packed")]}[command]
    return [command, "--bundle", str(folder), *extra]


def run_failing(capsys, command, folder, tmp_path, bundle_dir, names: str) -> str:
    """Run one command in-process; assert a non-zero exit and one error line matching `names`."""
    code = cli.main(argv(command, folder, tmp_path, bundle_dir))
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(names, lines[0]), lines[0]
    assert not (tmp_path / "packed").exists()
    return lines[0]


def edit_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def int8_entry(manifest: dict) -> dict:
    return next(m for m in manifest["models"] if m["name"] == INT8)


def write_matching(folder: Path, name: str, data: bytes, sha_key: str = "sha256", bytes_key: str | None = "bytes",
                   entry_fields: dict | None = None) -> None:
    """Write a file and make the manifest agree with it (a crafted bundle, not a damaged one)."""
    (folder / name).write_bytes(data)

    def change(manifest):
        if name == "vocab.txt":
            manifest["vocab_sha256"] = hashlib.sha256(data).hexdigest()
            return
        entry = int8_entry(manifest)
        entry.update(entry_fields or {})
        entry[sha_key] = hashlib.sha256(data).hexdigest()
        if bytes_key:
            entry[bytes_key] = len(data)
    edit_manifest(folder, change)
    (folder / MODEL_CARD).write_text(render_card(json.loads((folder / "manifest.json").read_text())), encoding="utf-8")


def model_bytes(folder: Path) -> bytes:
    return (folder / f"{INT8}.tflite").read_bytes()


VOCAB_TOKENS = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nprofit\n"
BAD_INPUTS = {  # class of bad input -> (make it, what the error line must name)
    "manifest-not-json": (lambda f: (f / "manifest.json").write_text("{\"labels\": "), r"manifest\.json: not valid JSON"),
    "manifest-empty": (lambda f: (f / "manifest.json").write_text(""), r"manifest\.json: not valid JSON"),
    "manifest-not-utf8": (lambda f: (f / "manifest.json").write_bytes(b"{\"\xff\": 1}"), r"manifest\.json: not valid JSON"),
    "manifest-not-object": (lambda f: (f / "manifest.json").write_text("[1, 2]"), r"manifest\.json: expected a JSON object"),
    "manifest-too-deep": (lambda f: (f / "manifest.json").write_text("[" * 100_000), r"manifest\.json: not valid JSON"),
    "vocab-empty": (lambda f: write_matching(f, "vocab.txt", b""), r"vocab\.txt: vocab is empty"),
    "vocab-not-utf8": (lambda f: write_matching(f, "vocab.txt", b"[PAD]\n\xff\xfe\n"), r"vocab\.txt:2: vocab is not valid UTF-8"),
    "vocab-no-unk": (lambda f: write_matching(f, "vocab.txt", VOCAB_TOKENS.replace("[UNK]\n", "").encode()),
                     r"vocab\.txt: vocab lacks the special tokens \[UNK\]"),
    "vocab-no-cls-sep-pad": (lambda f: write_matching(f, "vocab.txt", b"[UNK]\n[MASK]\nprofit\n"),
                             r"vocab\.txt: vocab lacks the special tokens \[PAD\], \[CLS\], \[SEP\]"),
    "vocab-missing": (lambda f: (f / "vocab.txt").unlink(), r"vocab\.txt: vocab file not found"),
    "model-empty": (lambda f: write_matching(f, f"{INT8}.tflite", b""), rf"{INT8}\.tflite: empty file"),
    "model-truncated": (lambda f: write_matching(f, f"{INT8}.tflite", model_bytes(f)[:1000]),
                        rf"{INT8}\.tflite: not a loadable TFLite model"),
    "model-not-flatbuffer": (lambda f: write_matching(f, f"{INT8}.tflite", b"\x00garbage" * 100),
                             rf"{INT8}\.tflite: not a loadable TFLite model"),
    "labels-wider-than-output": (lambda f: edit_manifest(f, lambda m: m["labels"].append("mixed")),
                                 r"model-\w+\.tflite: output 'logits' has shape \[1, 3\], but manifest\.json lists 4"),
    "id-map-not-npy": (lambda f: write_matching(f, f"{INT8}.idmap.npy", b"garbage", "id_map_sha256", None,
                                                {"id_map_file": f"{INT8}.idmap.npy"}),
                       rf"{INT8}\.idmap\.npy: not a readable \.npy id map"),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_error_line(case, command, bundle_copy, bundle_dir, tmp_path, capsys):
    make, names = BAD_INPUTS[case]
    make(bundle_copy)
    run_failing(capsys, command, bundle_copy, tmp_path, bundle_dir, names)


BAD_FIELDS = [  # (entry name or None for the top level, key, value)
    (None, "labels", "negative"), (None, "labels", []), (None, "labels", ["a", "a", "b"]), (None, "labels", ["a", "", "b"]),
    (None, "labels", [1, 2, 3]), (None, "seq_len", "7"), (None, "seq_len", 1), (None, "seq_len", 4097),
    (None, "seq_len", True), (None, "seq_len", 7.0), (None, "do_lower_case", "true"), (None, "do_lower_case", 1),
    (None, "vocab", 7), (None, "vocab", None), (None, "vocab_sha256", "abc"), (None, "vocab_sha256", "G" * 64),
    (None, "models", {}), (None, "models", [1]), (None, "models", "model-int8"),
    (INT8, "bytes", -1), (INT8, "bytes", "37656"), (INT8, "bytes", True), (INT8, "sha256", 123), (INT8, "name", 5),
    (INT8, "name", ""), (INT8, "name", "model-float32"), (INT8, "file", 5), (INT8, "quantization", "int4"),
    (INT8, "seq_len", 0), (INT8, "buckets", "7"), (INT8, "buckets", [7.5]), (INT8, "buckets", [5, 7]),
    (INT8, "id_map_file", ["x.npy"]), (INT8, "id_map_file", "x.npy"),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("owner, key, value", BAD_FIELDS, ids=lambda v: repr(v)[:20])
def test_bad_manifest_field_is_one_error_line(owner, key, value, command, bundle_copy, bundle_dir, tmp_path, capsys):
    def change(manifest):
        (int8_entry(manifest) if owner else manifest)[key] = value
    edit_manifest(bundle_copy, change)
    line = run_failing(capsys, command, bundle_copy, tmp_path, bundle_dir, r"manifest\.json: ")
    field = {"name": "models"}.get(key, key) if owner else key  # a duplicate name is reported under models
    assert field in line


def escape(kind: str, folder: Path, outside: Path) -> None:
    """Point the int8 entry (or the vocab) at `outside`, a real model/vocab sitting outside the bundle."""
    name = {"absolute": str(outside), "dotdot": f"../{outside.name}", "separator": f"../{folder.name}/{INT8}.tflite",
            "symlink": "link.tflite", "vocab-dotdot": "../vocab.txt", "vocab-symlink": "vocab-link.txt"}[kind]
    if kind.endswith("symlink"):
        os.symlink(outside, folder / name)
    key = "vocab" if kind.startswith("vocab") else "file"
    edit_manifest(folder, lambda m: (m if key == "vocab" else int8_entry(m)).update({key: name}))


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", ["absolute", "dotdot", "separator", "symlink", "vocab-dotdot", "vocab-symlink"])
def test_file_names_cannot_leave_the_bundle(kind, command, bundle_copy, bundle_dir, tmp_path, capsys, monkeypatch):
    source = "vocab.txt" if kind.startswith("vocab") else f"{INT8}.tflite"
    outside = tmp_path / source  # a sound file, so only the path check can stop it
    shutil.copy(bundle_copy / source, outside)
    escape(kind, bundle_copy, outside)
    opened = []

    def recording(original):
        def open_(file, *args, **kwargs):
            opened.append(Path(os.fsdecode(file)).resolve() if isinstance(file, (str, bytes, os.PathLike)) else file)
            return original(file, *args, **kwargs)
        return open_

    monkeypatch.setattr(builtins, "open", recording(builtins.open))
    monkeypatch.setattr(io, "open", recording(io.open))
    models = []
    monkeypatch.setattr(bundle_module, "TFLiteModel", lambda path, **kw: models.append(path) or pytest.fail(str(path)))
    names = {"absolute": r"manifest\.json: models\[1\]\.file: .*not an absolute path",
             "symlink": r"link\.tflite: manifest\.json models\[1\]\.file resolves to .*outside the bundle folder",
             "vocab-symlink": r"vocab-link\.txt: manifest\.json vocab resolves to .*outside the bundle folder"}
    plain = r"manifest\.json: (vocab|models\[1\]\.file): expected a plain file name inside the bundle folder"
    run_failing(capsys, command, bundle_copy, tmp_path, bundle_dir, names.get(kind, plain))
    assert outside.resolve() not in opened and models == []
    assert all(bundle_copy.resolve() in p.parents for p in opened if tmp_path in p.parents), opened


def test_pack_writes_only_the_folder_named(bundle_copy, bundle_dir, tmp_path, capsys):
    out = tmp_path / "new" / "packed"
    assert cli.main(["pack", "--bundle", str(bundle_copy), "--model", INT8, "--out", str(out)]) == 0
    assert "1/1 models verified" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["packed"]  # the staging folder is gone
    assert sorted(p.name for p in out.iterdir()) == [MODEL_CARD, "manifest.json", f"{INT8}.tflite", "vocab.txt"]
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    for target in (out, tmp_path / "link", Path(".")):
        assert cli.main(["pack", "--bundle", str(bundle_copy), "--model", INT8, "--out", str(target)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert not (tmp_path / "nowhere").exists()


def test_verify_keeps_its_report_and_adds_one_error_line(bundle_copy, capsys):
    write_matching(bundle_copy, f"{INT8}.tflite", b"\x00garbage" * 100)
    assert cli.main(["verify", "--bundle", str(bundle_copy)]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines()[0].startswith("ok  model-float32 ") and f"BAD {INT8}: " in out.out
    assert out.out.splitlines()[-1] == "1/2 models verified"
    assert out.err.startswith(f"error: {bundle_copy}: 1 problem(s), first: {INT8}: ") and len(out.err.splitlines()) == 1
