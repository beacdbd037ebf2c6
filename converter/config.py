"""One frozen KitConfig holding every number the converter uses.

Tests and the CLI build it as a preset plus overrides (`dataclasses.replace`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")


@dataclass(frozen=True)
class ModelConfig:
    """Geometry of a BERT encoder plus the classification head."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12  # BERT's value; must match the checkpoint
    dropout_rate: float = 0.1
    max_seq_len: int = 64
    num_labels: int = len(LABELS)
    # Added to attention scores at padded keys. exp(-30) < 1e-13 hides them as well as
    # BERT's -10000 does in float, but keeps the int8 range of the scores usable.
    mask_bias: float = -30.0

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads


BERT_BASE = ModelConfig()
MINILM_L6 = ModelConfig(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536)
# Distinct dims so a swapped axis or missing transpose cannot hide.
TINY = ModelConfig(
    vocab_size=40, hidden_size=12, num_layers=2, num_heads=3, intermediate_size=20,
    max_position_embeddings=16, max_seq_len=7,
)


@dataclass(frozen=True)
class DataConfig:
    """Where the sentences come from and how a release folder is split."""

    data_dir: str = "../shared/data/fpb"
    strict: bool = False
    split_seed: int = 13
    dev_fraction: float = 0.1
    test_fraction: float = 0.1


@dataclass(frozen=True)
class FinetuneConfig:
    """Teacher fine-tuning: AdamW with linear warmup and decay."""

    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    seed: int = 42
    max_train_examples: int = 0  # 0 = all; small values make quick smoke runs


@dataclass(frozen=True)
class ExportConfig:
    """TFLite export: which variants, and how full int8 is calibrated."""

    quantizations: tuple[str, ...] = ("float32", "dynamic", "float16", "int8")
    num_calibration_examples: int = 200
    calibration_seed: int = 7
    float_parity_atol: float = 1e-4
    # Float islands in the int8 model: LayerNorm's MEAN / SQUARED_DIFFERENCE / RSQRT and the
    # elementwise ADD / SUB / MUL (residuals, mask bias). Matmuls, softmax, GELU stay int8.
    int8_float_ops: tuple[str, ...] = ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "ADD", "SUB", "MUL")


@dataclass(frozen=True)
class KitConfig:
    model: ModelConfig = field(default_factory=lambda: MINILM_L6)
    data: DataConfig = field(default_factory=DataConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    checkpoint: str = "minilm"
    work_dir: str = "work"
    out_dir: str = "dist"


def with_overrides(cfg: KitConfig, section: str, **changes) -> KitConfig:
    """Return `cfg` with fields of one section replaced; unknown names raise."""
    part = getattr(cfg, section)
    return dataclasses.replace(cfg, **{section: dataclasses.replace(part, **changes)})
