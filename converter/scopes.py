"""The one place custom classes are registered for cloning, saving, loading, pruning and QAT."""

from __future__ import annotations


def custom_objects() -> dict:
    from converter.layers import CUSTOM_OBJECTS
    from converter.qat import DenseQuantizeConfig, NoOpQuantizeConfig, OutputQuantizeConfig, PerChannelKernelQuantizer

    return {**CUSTOM_OBJECTS, "NoOpQuantizeConfig": NoOpQuantizeConfig, "DenseQuantizeConfig": DenseQuantizeConfig,
            "OutputQuantizeConfig": OutputQuantizeConfig, "PerChannelKernelQuantizer": PerChannelKernelQuantizer}
