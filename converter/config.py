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
    # Per-layer widths after structured pruning; empty = num_heads / intermediate_size everywhere.
    heads_per_layer: tuple[int, ...] = ()
    intermediate_per_layer: tuple[int, ...] = ()
    # > 0: the word table is factorized, (vocab, rank) rows then a (rank, hidden) projection.
    embedding_rank: int = 0
    # What the pooler Dense reads: "cls" (BERT: the [CLS] row) or "mean" (masked mean of all rows,
    # how sentence-transformers checkpoints such as all-MiniLM-L6-v2 were trained).
    pooling: str = "cls"

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    def heads(self, i: int) -> int:
        return self.heads_per_layer[i] if self.heads_per_layer else self.num_heads

    def intermediate(self, i: int) -> int:
        return self.intermediate_per_layer[i] if self.intermediate_per_layer else self.intermediate_size


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
    seed: int = 42  # best on dev of 42, 1, 2 (scripts/teacher_seeds.py; benchmarks/results/teacher-seeds-*.md)
    max_train_examples: int = 0  # 0 = all; small values make quick smoke runs


@dataclass(frozen=True)
class DistillConfig:
    """Student geometry and the distillation loss. None widths: the teacher's."""

    num_layers: int = 3
    hidden_size: int | None = None
    num_heads: int | None = None
    intermediate_size: int | None = None
    alpha: float = 0.1  # weight of the hard-label loss; alpha and T chosen on dev (scripts/distill_sweep.py)
    temperature: float = 2.0
    # Also train the same student on hard labels only (alpha = 1) inside convert; off by default,
    # `make ablation` runs it after convert (it doubles the student's training time).
    run_ablation: bool = False
    # Perturbed copies of each training sentence ([MASK]ed / dropped wordpieces), labelled by the teacher.
    augment_copies: int = 0
    augment_mask_prob: float = 0.1
    augment_drop_prob: float = 0.1
    # 8 epochs: dev 0.8427 (best at epoch 5) vs 0.8344 with 4 (scripts/student_sweep.py --run train.epochs=8).
    train: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(epochs=8, learning_rate=1e-4))


@dataclass(frozen=True)
class PruneConfig:
    """TF-MOT magnitude pruning of every encoder Dense kernel (polynomial decay)."""

    target_sparsity: float = 0.5
    prune_embeddings: bool = True  # the word table is half the file: pruning it is what gzip can use
    end_fraction: float = 0.6  # the schedule reaches the target after this share of the steps
    frequency: int = 10
    train: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(epochs=3, learning_rate=3e-5, warmup_fraction=0.0))


@dataclass(frozen=True)
class QatConfig:
    """TF-MOT quantization-aware fine-tuning of the student (and of the teacher: teacher-qat-int8)."""

    teacher: bool = True  # also QAT the teacher, for when its post-training int8 loses too much
    # Whose float logits the QAT fine-tune learns: "teacher", or "self" (the float model being quantized).
    target: str = "teacher"
    # Activation ranges: "moving_average" of batch min/max (TF-MOT's default) or "all_values" (global
    # min/max, what post-training calibration takes). dropout False: fine-tune without dropout, so the
    # ranges QAT records are those of inference (dropout scales kept activations by 1 / (1 - rate)).
    # Chosen on dev (051ceff run's models, 1 epoch): student 0.8468 all_values without dropout vs
    # 0.8385 TF-MOT's defaults (0.8406 all_values with dropout, 0.8302 moving_average without);
    # teacher 0.8571 vs 0.8489.
    activation_range: str = "all_values"
    dropout: bool = False
    # The schedule of every QAT fine-tune (teacher, prune-preserving), except that the distilled
    # student's runs student_epochs: its dev accuracy rose 0.8406 / 0.8468 / 0.8489 over epochs 1-3.
    train: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(epochs=1, learning_rate=1e-5, warmup_fraction=0.0))
    student_epochs: int = 3


@dataclass(frozen=True)
class SlimConfig:
    """Beyond the usual toolkit: embedding compaction, structured pruning, length buckets."""

    enabled: bool = True
    # student-structured: fraction of attention heads / feed-forward neurons kept per layer.
    # 50% / 75%: scripts/structured_sweep.py --importance taylor on 3bb43f7's student, dev accuracy
    # 75/75 0.8427, 50/75 0.8447, 75/50 0.8427, 50/50 0.8447 (all >= 1.5x but 75/75); the dev tie
    # between 50/75 and 50/50 goes to the larger model.
    keep_heads: float = 0.5
    keep_ffn: float = 0.75
    # How heads and neurons are ranked: "magnitude" of their weights, or "taylor" (loss gradient x
    # weight). Taylor, chosen on dev (051ceff's 8-epoch student, 3 recovery epochs): 75/50 dev 0.8427
    # vs 0.8344 magnitude; 50/50 0.8447 vs 0.8282; the slim model 0.8219 vs 0.8157.
    importance: str = "taylor"
    # The slim (5 MB) model is cut further: 75% of heads does not fit the size budget.
    slim_keep_heads: float = 0.5
    slim_keep_ffn: float = 0.5
    extra_text: str = ""  # optional unlabeled text file: its most frequent ids are kept too
    extra_top_k: int = 0
    min_count: int = 1  # a training id is kept when seen at least this often
    # The slim model (structured + compact): word table factorized to this rank (SVD, then
    # recovered by distillation) and the position table cut to the longest bucket; 0 keeps both whole.
    embedding_rank: int = 160
    # The factorization's row weights: "counts" (training token count + 1: the best rank-r table for
    # the tokens that occur) or "none" (plain SVD); unk_copy_prob > 0: the recovery also trains on a
    # copy of every sentence with wordpieces sent to [UNK] at that rate (0 = off). Chosen on dev with
    # scripts/slim_sweep.py (3bb43f7's models): counts + 0.05 dev 0.8302, plain SVD 0.8219, counts
    # alone 0.8178, [UNK] copy alone 0.8199.
    embedding_weights: str = "counts"
    unk_copy_prob: float = 0.05
    unk_rare_alpha: float = 0.0  # > 0: rare wordpieces go to [UNK] more often in that copy (augment.unk_copy)
    buckets: tuple[int, ...] = (16, 32, 64, 128)
    # Buckets use dynamic-range int8: activations are quantized per token row at run time, so a
    # sentence's real rows compute the same in every bucket. Full int8 calibrates fixed ranges
    # per file, and each length's calibration differs (0.6% of test labels changed).
    bucket_quantization: str = "dynamic"
    recovery: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(epochs=3, learning_rate=1e-4))
    slim_recovery: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(epochs=4, learning_rate=1e-4))


@dataclass(frozen=True)
class ExportConfig:
    """TFLite export: which variants, and how full int8 is calibrated."""

    quantizations: tuple[str, ...] = ("float32", "dynamic", "float16", "int8")
    num_calibration_examples: int = 200
    calibration_seed: int = 7
    float_parity_atol: float = 1e-4
    # Float islands in the int8 model. Every FULLY_CONNECTED (all weights) runs int8 x int8;
    # (SUM, MAXIMUM, DIV: the mean pooling's 1 / token-count weights, which int8 would round);
    # LayerNorm (MEAN, SQUARED_DIFFERENCE, RSQRT), residual/elementwise ops, softmax, GELU and
    # the weightless attention matmuls stay float. All-int8 lost about 3 accuracy points on the
    # teacher and ran 2x slower than this, as those int8 kernels fall outside XNNPACK.
    int8_float_ops: tuple[str, ...] = ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "ADD", "SUB", "MUL",
                                       "SOFTMAX", "GELU", "BATCH_MATMUL", "SUM", "MAXIMUM", "DIV")
    # 16x8 quantizes everything it has kernels for; SQUARED_DIFFERENCE has no int16 kernel.
    int16x8_float_ops: tuple[str, ...] = ("SQUARED_DIFFERENCE",)

    def float_ops(self, quantization: str) -> tuple[str, ...]:
        return {"int8": self.int8_float_ops, "int16x8": self.int16x8_float_ops}.get(quantization, ())


@dataclass(frozen=True)
class KitConfig:
    model: ModelConfig = field(default_factory=lambda: MINILM_L6)
    data: DataConfig = field(default_factory=DataConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    qat: QatConfig = field(default_factory=QatConfig)
    slim: SlimConfig = field(default_factory=SlimConfig)
    checkpoint: str = "minilm"
    # Pooling of a freshly fine-tuned head: "cls" / "mean", or "auto": the checkpoint's own (mean
    # when its sentence-transformers 1_Pooling/config.json says mean tokens, else cls). cls is the
    # default, chosen on dev: the MiniLM teacher reached 0.857 / 0.851 dev accuracy with cls in two
    # runs and 0.849 with mean (test: 0.849-0.851 cls, 0.832 mean).
    pooling: str = "cls"
    compress: bool = True  # distill, QAT and prune after the teacher (False: teacher only)
    work_dir: str = "work"
    out_dir: str = "dist"


def with_overrides(cfg: KitConfig, section: str, **changes) -> KitConfig:
    """Return `cfg` with fields of one section replaced; unknown names raise."""
    part = getattr(cfg, section)
    return dataclasses.replace(cfg, **{section: dataclasses.replace(part, **changes)})
