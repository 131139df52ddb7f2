"""Error types a user sees. Messages lead with the file or argument, then what was expected and found.

Imports nothing heavy: the CLI maps these to exit code 1 and a one-line message.
"""

__all__ = ["InputError", "ModelError"]


class InputError(ValueError):
    """Bad input data: a case file, an array or a box that does not meet the documented contract."""


class ModelError(RuntimeError):
    """A model folder or checkpoint that cannot be used (missing, corrupt, wrong type or version)."""
