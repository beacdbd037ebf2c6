"""One frozen KitConfig holding every number the converter uses, validated when it is built.

Tests and the CLI build it as a preset plus overrides (`with_overrides`). The geometry of a model
(ModelConfig) comes from its checkpoint; what a user sets about the model is ModelOptions. Why
each default is what it is: docs/design.md."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum

from converter.errors import ConfigError
from device_runtime.format import Quantization

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")


class Choice(str, Enum):
    """A string option with a closed set of values; formats as its value."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


class ModelRole(Choice):
    TEACHER = "teacher"
    STUDENT = "student"


class Pooling(Choice):
    CLS = "cls"  # BERT: the pooler reads the [CLS] row
    MEAN = "mean"  # masked mean of all rows (sentence-transformers)
    AUTO = "auto"  # the checkpoint's own: mean when its 1_Pooling/config.json says mean tokens


class Strategy(Choice):
    NONE = "none"  # the default device
    MIRRORED = "mirrored"  # tf.distribute.MirroredStrategy: the visible GPUs, or cpu_replicas logical CPUs
    MULTIWORKER = "multiworker"  # tf.distribute.MultiWorkerMirroredStrategy, the cluster from TF_CONFIG


class QatTarget(Choice):
    TEACHER = "teacher"  # the float teacher's logits
    SELF = "self"  # the float model being quantized


class ActivationRange(Choice):
    MOVING_AVERAGE = "moving_average"  # TF-MOT's default: moving average of batch min/max
    ALL_VALUES = "all_values"  # min/max over every batch, as post-training calibration takes


class Importance(Choice):
    MAGNITUDE = "magnitude"  # weight magnitude of a head's / neuron's rows
    TAYLOR = "taylor"  # |gradient x weight| of the loss


class EmbeddingWeights(Choice):
    NONE = "none"  # plain SVD
    COUNTS = "counts"  # rows weighted by training token count + 1


def _check(section, **choices) -> None:
    """Turn each named string field into its Choice (ConfigError naming field and allowed values)."""
    for name, kind in choices.items():
        value = getattr(section, name)
        try:
            object.__setattr__(section, name, kind(value))
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise ConfigError(f"{type(section).__name__}.{name}: {value!r}; choose one of {allowed}") from None


def _check_range(section, name: str, low: float, high: float, low_open: bool = False) -> None:
    value = getattr(section, name)
    if not (low < value <= high if low_open else low <= value <= high):
        bound = "(" if low_open else "["
        raise ConfigError(f"{type(section).__name__}.{name}: {value!r}; must lie in {bound}{low}, {high}]")


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
    mask_bias: float = -30.0  # see ModelOptions.mask_bias
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

    def __post_init__(self):
        if self.pooling not in (Pooling.CLS, Pooling.MEAN):
            raise ConfigError(f"ModelConfig.pooling: {self.pooling!r}; choose cls or mean")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"ModelConfig: hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")


@dataclass(frozen=True)
class ModelOptions:
    """What the user sets about a model; its geometry comes from the checkpoint (from_hf_config)."""

    max_seq_len: int = 64
    # Added to attention scores at padded keys. exp(-30) < 1e-13 hides them as well as
    # BERT's -10000 does in float, but keeps the int8 range of the scores usable.
    mask_bias: float = -30.0
    dropout_rate: float | None = None  # None: the checkpoint's hidden_dropout_prob

    def __post_init__(self):
        if self.max_seq_len < 3:
            raise ConfigError(f"ModelOptions.max_seq_len: {self.max_seq_len}; needs room for [CLS], a token and [SEP]")
        if self.mask_bias >= 0:
            raise ConfigError(f"ModelOptions.mask_bias: {self.mask_bias}; must be negative")
        if self.dropout_rate is not None:
            _check_range(self, "dropout_rate", 0.0, 1.0)

    def apply(self, geometry: ModelConfig) -> ModelConfig:
        """The checkpoint's geometry with these options in force."""
        changes = {"max_seq_len": self.max_seq_len, "mask_bias": self.mask_bias}
        if self.dropout_rate is not None:
            changes["dropout_rate"] = self.dropout_rate
        return dataclasses.replace(geometry, **changes)


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
    # What the model card says the weights were trained on; the license passes to trained weights.
    dataset: str = "Financial PhraseBank v1.0 (Malo et al., 2014), sentences with >= 50% annotator agreement"
    dataset_license: str = "CC BY-NC-SA 3.0"


@dataclass(frozen=True)
class FinetuneConfig:
    """Teacher fine-tuning: AdamW with linear warmup and decay."""

    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    seed: int = 42  # chosen on dev (experiments/teacher_seeds.py)
    max_train_examples: int = 0  # 0 = all; small values make quick smoke runs

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"FinetuneConfig: epochs {self.epochs} and batch_size {self.batch_size} must be >= 1")
        _check_range(self, "learning_rate", 0.0, 1.0, low_open=True)
        _check_range(self, "warmup_fraction", 0.0, 1.0)


@dataclass(frozen=True)
class DistillConfig:
    """Student geometry and the distillation loss. None widths: the teacher's."""

    num_layers: int = 3
    hidden_size: int | None = None
    num_heads: int | None = None
    intermediate_size: int | None = None
    alpha: float = 0.1  # weight of the hard-label loss; alpha and T chosen on dev (experiments/distill_sweep.py)
    temperature: float = 2.0
    # > 0: intermediate-layer distillation (converter.compress.intermediate): the student's embedding and
    # layer outputs also learn the teacher's mapped layers', with this weight on their mean squared error.
    # The student distillation only (the structured and slim recoveries learn logits); one device.
    hidden_weight: float = 0.0
    # Also train the same student on hard labels only (alpha = 1) inside convert; off by default,
    # `make ablation` runs it after convert (it doubles the student's training time).
    run_ablation: bool = False
    # Perturbed copies of each training sentence ([MASK]ed / dropped wordpieces), labelled by the teacher.
    augment_copies: int = 0
    augment_mask_prob: float = 0.1
    augment_drop_prob: float = 0.1
    # 8 epochs: chosen on dev (experiments/student_sweep.py).
    train: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(epochs=8, learning_rate=1e-4))

    def __post_init__(self):
        if self.num_layers < 1:
            raise ConfigError(f"DistillConfig.num_layers: {self.num_layers}; must be >= 1")
        _check_range(self, "alpha", 0.0, 1.0)
        _check_range(self, "temperature", 0.0, 100.0, low_open=True)
        _check_range(self, "hidden_weight", 0.0, 1000.0)


@dataclass(frozen=True)
class PruneConfig:
    """TF-MOT magnitude pruning of every encoder Dense kernel (polynomial decay)."""

    target_sparsity: float = 0.5
    prune_embeddings: bool = True  # the word table is half the file: pruning it is what gzip can use
    end_fraction: float = 0.6  # the schedule reaches the target after this share of the steps
    frequency: int = 10
    train: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(epochs=3, learning_rate=3e-5, warmup_fraction=0.0))

    def __post_init__(self):
        _check_range(self, "target_sparsity", 0.0, 1.0)
        _check_range(self, "end_fraction", 0.0, 1.0, low_open=True)


@dataclass(frozen=True)
class QatConfig:
    """TF-MOT quantization-aware fine-tuning of the student (and of the teacher: teacher-qat-int8)."""

    teacher: bool = True  # also QAT the teacher, for when its post-training int8 loses too much
    # Whose float logits the QAT fine-tune learns: "teacher", or "self" (the float model being quantized).
    target: QatTarget = QatTarget.TEACHER
    # Activation ranges (see ActivationRange). dropout False: fine-tune without dropout, so the
    # ranges QAT records are those of inference (dropout scales kept activations by 1 / (1 - rate)).
    # Both chosen on dev.
    activation_range: ActivationRange = ActivationRange.ALL_VALUES
    dropout: bool = False
    # The schedule of every QAT fine-tune (teacher, prune-preserving), except that the distilled
    # student's runs student_epochs (chosen on dev).
    train: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(epochs=1, learning_rate=1e-5, warmup_fraction=0.0))
    student_epochs: int = 3

    def __post_init__(self):
        _check(self, target=QatTarget, activation_range=ActivationRange)


@dataclass(frozen=True)
class SlimConfig:
    """Beyond the usual toolkit: embedding compaction, structured pruning, length buckets."""

    enabled: bool = True
    # int4w variants (4 or 8 bits per layer group, chosen on dev: converter.jobs.lowbit) of the student,
    # student-structured, student-structured-compact and student-slim.
    lowbit: bool = True
    # When the chosen combination is below the best one on dev: a fine-tune through its rounding on the
    # distillation loss (converter.compress.qat.weight_only_qat), shipped if better on dev (None: off).
    lowbit_qat: FinetuneConfig | None = field(default_factory=lambda: FinetuneConfig(epochs=2, learning_rate=5e-5))
    # student-structured: fraction of attention heads / feed-forward neurons kept per layer
    # (chosen on dev: experiments/structured_sweep.py).
    keep_heads: float = 0.5
    keep_ffn: float = 0.75
    # How heads and neurons are ranked (see Importance); Taylor chosen on dev.
    importance: Importance = Importance.TAYLOR
    # The slim (5 MB) model is cut further: 75% of heads does not fit the size budget.
    slim_keep_heads: float = 0.5
    slim_keep_ffn: float = 0.5
    extra_text: str = ""  # optional unlabeled text file: its most frequent ids are kept too
    extra_top_k: int = 0
    min_count: int = 1  # a training id is kept when seen at least this often
    # The slim model (structured + compact): word table factorized to this rank (SVD, then
    # recovered by distillation) and the position table cut to the longest bucket; 0 keeps both whole.
    embedding_rank: int = 160
    # The factorization's row weights (see EmbeddingWeights: counts is the best rank-r table for the
    # tokens that occur); unk_copy_prob > 0: the recovery also trains on a copy of every sentence
    # with wordpieces sent to [UNK] at that rate (0 = off). Chosen on dev (experiments/slim_sweep.py).
    embedding_weights: EmbeddingWeights = EmbeddingWeights.COUNTS
    unk_copy_prob: float = 0.05
    unk_rare_alpha: float = 0.0  # > 0: rare wordpieces go to [UNK] more often in that copy (augment.unk_copy)
    buckets: tuple[int, ...] = (16, 32, 64, 128)
    # Buckets use dynamic-range int8: activations are quantized per token row at run time, so a
    # sentence's real rows compute the same in every bucket. Full int8 calibrates fixed ranges
    # per file, and each length's calibration differs (0.6% of test labels changed).
    bucket_quantization: Quantization = Quantization.DYNAMIC
    # Also student-structured-<bucket_quantization> in the same buckets (the whole word table, no id map).
    structured_buckets: bool = True
    # Also student-structured-buckets-int8: the structured student in the same buckets in full int8, each
    # bucket calibrated at its own length (identical_labels in the report says how many labels stay put).
    int8_buckets: bool = True
    recovery: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(epochs=3, learning_rate=1e-4))
    slim_recovery: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(epochs=4, learning_rate=1e-4))

    def __post_init__(self):
        _check(self, importance=Importance, embedding_weights=EmbeddingWeights, bucket_quantization=Quantization)
        for name in ("keep_heads", "keep_ffn", "slim_keep_heads", "slim_keep_ffn"):
            _check_range(self, name, 0.0, 1.0, low_open=True)
        _check_range(self, "unk_copy_prob", 0.0, 1.0)
        if self.embedding_rank < 0 or self.unk_rare_alpha < 0:
            raise ConfigError("SlimConfig: embedding_rank and unk_rare_alpha must be >= 0")
        if not self.buckets or sorted(self.buckets) != list(self.buckets):
            raise ConfigError(f"SlimConfig.buckets: {self.buckets}; a non-empty increasing tuple of lengths")


@dataclass(frozen=True)
class ExportConfig:
    """TFLite export: which variants, and how full int8 is calibrated."""

    quantizations: tuple[Quantization, ...] = (Quantization.FLOAT32, Quantization.DYNAMIC, Quantization.FLOAT16,
                                               Quantization.INT8)
    num_calibration_examples: int = 200
    calibration_seed: int = 7
    float_parity_atol: float = 1e-4
    # Float islands in the int8 model. Every FULLY_CONNECTED (all weights) runs int8 x int8;
    # (SUM, MAXIMUM, DIV: the mean pooling's 1 / token-count weights, which int8 would round);
    # LayerNorm (MEAN, SQUARED_DIFFERENCE, RSQRT), residual/elementwise ops, softmax, GELU and
    # the weightless attention matmuls stay float: int8 loses accuracy on their outlier-heavy ranges and
    # those int8 kernels fall outside XNNPACK (docs/design.md; experiments/int8_islands.py measures it).
    int8_float_ops: tuple[str, ...] = ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "ADD", "SUB", "MUL",
                                       "SOFTMAX", "GELU", "BATCH_MATMUL", "SUM", "MAXIMUM", "DIV")
    # 16x8 quantizes everything it has kernels for; SQUARED_DIFFERENCE has no int16 kernel.
    int16x8_float_ops: tuple[str, ...] = ("SQUARED_DIFFERENCE",)

    def __post_init__(self):
        try:
            object.__setattr__(self, "quantizations", tuple(Quantization(q) for q in self.quantizations))
        except ValueError:
            allowed = ", ".join(q.value for q in Quantization)
            raise ConfigError(f"ExportConfig.quantizations: {self.quantizations}; each one of {allowed}") from None

    def float_ops(self, quantization: str) -> tuple[str, ...]:
        return {Quantization.INT8: self.int8_float_ops, Quantization.INT16X8: self.int16x8_float_ops}.get(quantization, ())


@dataclass(frozen=True)
class BundleConfig:
    """What the bundle ships by default: the rule that picks `default_model` on dev (docs/design.md)."""

    default_model: str = ""  # a model name: used instead of the rule
    # candidates: dev accuracy within this many points of the best model's; None: one standard error of
    # that accuracy on the dev split (the one-standard-error rule), about 1.6 points on 483 sentences
    tolerance_points: float | None = None
    budget_mb: float = 25.0  # candidates: model + extra files + vocab at most this many MB (0: no budget)
    pack_device: bool = True  # pack the default model alone into <out>/device/
    mobile: bool = True  # make convert ends with the default model's MediaPipe file (converter mobile)

    def __post_init__(self):
        if (self.tolerance_points or 0) < 0 or self.budget_mb < 0:
            raise ConfigError("BundleConfig: tolerance_points and budget_mb must be >= 0")


@dataclass(frozen=True)
class KitConfig:
    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataConfig = field(default_factory=DataConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    qat: QatConfig = field(default_factory=QatConfig)
    slim: SlimConfig = field(default_factory=SlimConfig)
    bundle: BundleConfig = field(default_factory=BundleConfig)
    checkpoint: str = "minilm"
    pooling: Pooling = Pooling.CLS  # of a freshly fine-tuned head (see Pooling); cls chosen on dev
    compress: bool = True  # distill, QAT and prune after the teacher (False: teacher only)
    # The checkpoint's own classifier as the teacher, no fine-tune: True, False, or None (auto: when it
    # has a head whose id2label names negative, neutral and positive in any order). See docs/design.md.
    teacher_as_is: bool | None = None
    # Where the teacher fine-tune and the student distillation run (tf.distribute); the TF-MOT steps
    # run on one device (docs/design.md). cpu_replicas: with mirrored and no GPU, split the CPU into
    # this many logical devices (tests; a check of a multi-device run on one machine).
    strategy: Strategy = Strategy.NONE
    cpu_replicas: int = 0
    work_dir: str = "work"
    out_dir: str = "dist"

    def __post_init__(self):
        _check(self, pooling=Pooling, strategy=Strategy)
        if self.cpu_replicas and (self.cpu_replicas < 2 or self.strategy != Strategy.MIRRORED):
            raise ConfigError(f"KitConfig.cpu_replicas: {self.cpu_replicas}; 0, or a count >= 2 with strategy mirrored")
        if self.distill.hidden_weight and self.strategy != Strategy.NONE:
            raise ConfigError("distill.hidden_weight > 0 (intermediate-layer distillation) trains on one device; "
                              "use --strategy none")


def with_overrides(cfg: KitConfig, section: str, **changes) -> KitConfig:
    """Return `cfg` with fields of one section replaced (validated again); unknown names raise ConfigError."""
    part = getattr(cfg, section)
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(part)})
    if unknown:
        raise ConfigError(f"{type(part).__name__} has no field {', '.join(unknown)}")
    return dataclasses.replace(cfg, **{section: dataclasses.replace(part, **changes)})
