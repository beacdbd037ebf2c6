"""KitConfig does what it says: string options checked when it is built, overrides honoured."""

import dataclasses

import pytest
import tf_keras as keras
from typer.testing import CliRunner

from converter.cli import app
from converter.config import KitConfig, ModelOptions, with_overrides
from converter.errors import ConfigError
from converter.jobs.compression import teacher_config
from converter.modeling.hf_weights import build_from_checkpoint
from converter.modeling.layers import AttentionMaskBias
from tests.helpers import TINY_BERT

KIT = KitConfig()


@pytest.mark.parametrize("section, field, value, allowed", [
    ("slim", "importance", "tayler", "magnitude, taylor"),
    ("slim", "embedding_weights", "count", "none, counts"),
    ("slim", "bucket_quantization", "int4", "float32, dynamic, float16, int8, int16x8"),
    ("qat", "target", "student", "teacher, self"),
    ("qat", "activation_range", "minmax", "moving_average, all_values"),
])
def test_a_typo_in_a_string_option_names_the_field_and_the_allowed_values(section, field, value, allowed):
    with pytest.raises(ConfigError) as err:
        with_overrides(KIT, section, **{field: value})
    assert field in str(err.value) and repr(value) in str(err.value) and allowed in str(err.value)


def test_pooling_and_quantizations_are_checked_too():
    with pytest.raises(ConfigError, match="pooling: 'max'; choose one of cls, mean, auto"):
        dataclasses.replace(KIT, pooling="max")
    with pytest.raises(ConfigError, match="quantizations"):
        with_overrides(KIT, "export", quantizations=("float32", "int9"))


@pytest.mark.parametrize("section, changes", [
    ("slim", {"keep_heads": 0.0}), ("slim", {"keep_ffn": 1.5}), ("prune", {"target_sparsity": -0.1}),
    ("distill", {"alpha": 2.0}), ("distill", {"num_layers": 0}), ("finetune", {"epochs": 0}),
    ("model", {"mask_bias": 5.0}), ("model", {"max_seq_len": 2}), ("slim", {"buckets": (64, 16)}),
])
def test_values_out_of_range_are_refused(section, changes):
    with pytest.raises(ConfigError):
        with_overrides(KIT, section, **changes)


def test_an_unknown_override_is_refused_by_name():
    with pytest.raises(ConfigError, match="SlimConfig has no field keep_head"):
        with_overrides(KIT, "slim", keep_head=0.5)


def test_valid_strings_become_their_enum_and_format_as_their_value():
    cfg = with_overrides(KIT, "qat", target="self", activation_range="moving_average")
    assert f"{cfg.qat.target}/{cfg.qat.activation_range}" == "self/moving_average"
    assert cfg.qat.target == "self"


def test_model_options_reach_the_built_model():
    options = ModelOptions(max_seq_len=7, mask_bias=-55.0, dropout_rate=0.25)
    model, cfg, _, _ = build_from_checkpoint(str(TINY_BERT), 7, options=options)
    assert (cfg.mask_bias, cfg.dropout_rate) == (-55.0, 0.25)
    biases = [layer.mask_bias for layer in model.layers if isinstance(layer, AttentionMaskBias)]
    rates = {layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)}
    assert biases == [-55.0] and rates == {0.25}
    default, default_cfg, _, _ = build_from_checkpoint(str(TINY_BERT), 7, options=ModelOptions(max_seq_len=7))
    assert default_cfg.dropout_rate == 0.1  # the checkpoint's hidden_dropout_prob when not overridden
    assert default_cfg.mask_bias == -30.0


def test_the_jobs_build_the_teacher_with_the_options(tmp_path):
    cfg = dataclasses.replace(KIT, checkpoint=str(TINY_BERT), work_dir=str(tmp_path))
    cfg = with_overrides(cfg, "model", max_seq_len=7, mask_bias=-40.0, dropout_rate=0.0)
    teacher = teacher_config(cfg)
    assert (teacher.max_seq_len, teacher.mask_bias, teacher.dropout_rate) == (7, -40.0, 0.0)


@pytest.mark.parametrize("args", [["convert", "--student-layers", "0"], ["convert", "--compress-epochs", "0"],
                                  ["slim", "--keep-heads", "0"], ["prune", "--target-sparsity", "1.5"]])
def test_the_cli_reports_a_bad_value_in_one_line_before_any_model_loads(args, tmp_path):
    result = CliRunner().invoke(app, [*args, "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "dist")])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "Traceback" not in result.output
    assert not (tmp_path / "work").exists()
