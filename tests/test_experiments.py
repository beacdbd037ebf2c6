"""The sweeps in experiments/: importing one runs nothing, each runs as `python -m experiments.NAME`,
and the one variant parser types, checks and rejects."""

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import experiments
from converter.config import DistillConfig, QatTarget
from experiments.student_sweep import overrides
from experiments.sweep_variants import parse_variant

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(info.name for info in pkgutil.iter_modules(experiments.__path__))
DEFAULTS = {"rank": 160, "lr": 1e-4, "target": QatTarget.TEACHER, "cut": "slim", "fresh": False, "width": None}


def test_importing_every_experiment_runs_nothing(tmp_path, monkeypatch, capsys):
    assert {"student_sweep", "sweep_variants", "qat_sweep", "slim_sweep"} <= set(MODULES)
    monkeypatch.chdir(tmp_path)  # a sweep that ran on import would look for work/ here, or write here
    monkeypatch.setattr(sys, "argv", ["experiments"])
    for name in MODULES:
        module = importlib.import_module(f"experiments.{name}")
        source = Path(module.__file__).read_text()
        assert "sys.path" not in source, name
        assert name == "sweep_variants" or callable(module.main), name
    assert capsys.readouterr().out == "" and list(tmp_path.iterdir()) == []


def test_an_experiment_runs_as_a_module_from_the_repo_root(tmp_path):
    result = subprocess.run([sys.executable, "-m", "experiments.student_sweep", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})  # no PYTHONPATH
    assert result.returncode == 0, result.stderr
    assert "--run" in result.stdout


def test_parse_variant_types_each_value_from_its_default():
    variant = parse_variant("rank=288, lr=2e-05,target=self,fresh=true", DEFAULTS, {"target": ("teacher", "self")})
    assert variant == {**DEFAULTS, "rank": 288, "lr": 2e-5, "target": QatTarget.SELF, "fresh": True}
    assert type(variant["rank"]) is int and type(variant["lr"]) is float
    assert parse_variant("fresh=False,lr=1", DEFAULTS)["fresh"] is False  # not bool("False")
    assert parse_variant("", DEFAULTS) == DEFAULTS
    assert parse_variant("width=6", DEFAULTS, types={"width": int})["width"] == 6


@pytest.mark.parametrize("text, message", [
    ("depth=3", "unknown key 'depth'"),
    ("rank=1.5", "rank='1.5' is not a valid int"),
    ("target=student", "target='student' is not a valid QatTarget"),
    ("fresh=yes", "fresh takes true or false"),
    ("cut=wide", "cut must be one of"),
    ("rank", "is not key=value"),
    ("width=6", "width defaults to None"),
])
def test_parse_variant_rejects_unknown_keys_and_bad_values(text, message):
    with pytest.raises(SystemExit, match=message):
        parse_variant(text, DEFAULTS, {"cut": ("slim", "structured")})


def test_student_sweep_runs_are_distill_config_overrides():
    base = DistillConfig()
    cfg = overrides(base, "augment_copies=2,train.epochs=5,hidden_size=6")
    assert (cfg.augment_copies, cfg.train.epochs, cfg.hidden_size) == (2, 5, 6)
    assert (cfg.alpha, cfg.train.learning_rate) == (base.alpha, base.train.learning_rate)
    assert overrides(base, "") == base
    with pytest.raises(SystemExit, match="--run: unknown key 'train.steps'"):
        overrides(base, "train.steps=3")
