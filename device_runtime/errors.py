"""The base of the device side's deliberate errors (bundle, model, vocab, data); the CLI prints them as one line."""

from __future__ import annotations


class BundleInputError(Exception):
    """Something the user handed the runtime (bundle, model file, vocab, data table) is missing or invalid."""
