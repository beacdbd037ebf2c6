"""Run by tests/test_distribute.py in a fresh process (logical CPU devices must be set before
TensorFlow starts): the tiny teacher fine-tune and the student distillation on one device and under
MirroredStrategy over 2 logical CPUs, from the same weights and seed. Prints their per-epoch losses
as JSON on the last line."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from converter.config import DistillConfig, FinetuneConfig, ModelOptions, Strategy
from converter.train.distribute import make_strategy


def main(work: Path) -> None:
    strategy = make_strategy(Strategy.MIRRORED, cpu_replicas=2)  # first: before the runtime starts
    from converter.compress.distill import distill
    from converter.data.tokenize import encode, load_tokenizer
    from converter.modeling import hf_weights as ck
    from converter.modeling.bert import build_classifier
    from converter.train.finetune import fit_classifier
    from tests.helpers import ROWS, TINY_BERT

    texts = [text for text, _, _ in ROWS] * 2  # 16 rows: 4 global batches of 4, 2 rows per replica
    labels = [["negative", "neutral", "positive"].index(label) for _, label, _ in ROWS] * 2
    import numpy as np

    inputs = list(encode(load_tokenizer(TINY_BERT), texts, 7).values())
    train = dev = (inputs, np.array(labels))
    options = ModelOptions(max_seq_len=7, dropout_rate=0.0)  # dropout draws per replica: off for a like-for-like
    finetune = FinetuneConfig(epochs=2, batch_size=4, learning_rate=1e-3, seed=3)
    student = DistillConfig(num_layers=1, train=replace(finetune, seed=4))
    losses = {}
    for name, used in (("one_device", None), ("mirrored", strategy)):
        model, model_cfg, _, _ = ck.build_from_checkpoint(str(TINY_BERT), 7, options=options)
        teacher, state = fit_classifier(model, train, dev, finetune, work / name / "teacher", strategy=used,
                                        build=lambda cfg=model_cfg: build_classifier(cfg))
        _, _, student_state = distill(teacher, model_cfg, train, dev, student, work / name / "student", strategy=used)
        losses[name] = {"teacher": [h["loss"] for h in state["history"]],
                        "student": [h["loss"] for h in student_state["history"]],
                        "replicas": 1 if used is None else used.num_replicas_in_sync}
    print(json.dumps(losses))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
