"""The device side: stdlib + numpy + a LiteRT interpreter. `from device_runtime import Classifier`.

The API is imported on first use, so `import device_runtime.format` stays standard-library only."""

__all__ = ["Classifier", "Prediction"]


def __getattr__(name: str):
    if name in __all__:
        from device_runtime import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'device_runtime' has no attribute {name!r}")
