"""The errors the kit raises on purpose: the CLI prints them as one line, anything else is a bug."""

from __future__ import annotations


class KitError(Exception):
    """A deliberate, user-facing error; the message says what is wrong and names the file or setting."""


class ConfigError(KitError, ValueError):
    """A setting, flag or input value the kit cannot use."""


class MissingFileError(KitError, FileNotFoundError):
    """A file the step needs is not there (e.g. an earlier step has not run)."""


class ResumeError(KitError):
    """A work dir's checkpoint does not belong to the model being resumed."""
