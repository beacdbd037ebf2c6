"""The one place custom classes are registered for cloning, saving, loading, pruning and QAT."""

from __future__ import annotations

from converter.compress.quant.configs import (
    DenseQuantizeConfig,
    NoOpQuantizeConfig,
    OutputQuantizeConfig,
    WeightOnlyQuantizeConfig,
)
from converter.compress.quant.quantizers import PerChannelKernelQuantizer
from converter.modeling.layers import CUSTOM_OBJECTS


def custom_objects() -> dict:
    return {**CUSTOM_OBJECTS, "NoOpQuantizeConfig": NoOpQuantizeConfig, "DenseQuantizeConfig": DenseQuantizeConfig,
            "OutputQuantizeConfig": OutputQuantizeConfig, "PerChannelKernelQuantizer": PerChannelKernelQuantizer,
            "WeightOnlyQuantizeConfig": WeightOnlyQuantizeConfig}
