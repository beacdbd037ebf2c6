"""Shared test helpers: a tiny split folder and a tiny bundle exported from the tiny checkpoint."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from converter.config import ExportConfig, KitConfig, with_overrides

FIXTURES = Path(__file__).parent / "fixtures"
TINY_BERT = FIXTURES / "tiny_bert"
ROWS = [("the profit rose", "positive", 100), ("sales fell", "negative", 100), ("net sales", "neutral", 66),
        ("operating loss increased", "negative", 75), ("shares up by 10 %", "positive", 100),
        ("the company", "neutral", 100), ("profit decreased", "negative", 50), ("market", "neutral", 100)]


def write_split(folder: Path, rows=ROWS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    body = "text\tlabel\tagreement\n" + "".join(f"{t}\t{lab}\t{a}\n" for t, lab, a in rows)
    for split in ("train", "dev", "test"):
        (folder / f"{split}.tsv").write_text(body)
    return folder


def tiny_config(tmp: Path, seq_len: int = 7) -> KitConfig:
    cfg = KitConfig(checkpoint=str(TINY_BERT), out_dir=str(tmp / "dist"), work_dir=str(tmp / "work"))
    cfg = with_overrides(cfg, "model", max_seq_len=seq_len)
    cfg = with_overrides(cfg, "data", data_dir=str(write_split(tmp / "data")))
    return replace(cfg, export=ExportConfig(num_calibration_examples=8))


def relabelled_checkpoint(folder: Path, order: tuple[str, ...], head: bool = True) -> Path:
    """The tiny sequence-classification checkpoint with its classifier's outputs in `order` (e.g.
    ProsusAI/finbert's positive, negative, neutral): rows permuted and id2label renamed together, so
    its logits are the original's columns in that order. head=False drops the classifier."""
    import json
    import shutil

    from safetensors.numpy import load_file, save_file

    from converter.config import LABELS

    shutil.copytree(TINY_BERT, folder)
    tensors = load_file(folder / "model.safetensors")
    rows = [LABELS.index(label) if label in LABELS else i for i, label in enumerate(order)]
    if head:
        tensors["classifier.weight"] = tensors["classifier.weight"][rows]
        tensors["classifier.bias"] = tensors["classifier.bias"][rows]
    else:
        tensors = {k: v for k, v in tensors.items() if not k.startswith("classifier.")}
    save_file(tensors, folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): label for i, label in enumerate(order)}
    config["label2id"] = {label: i for i, label in enumerate(order)}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder
