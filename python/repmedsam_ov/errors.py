"""Error types a user sees. Messages lead with the file or argument, then what was expected and found.

Imports nothing heavy: the CLI maps these to exit code 1 and a one-line message.
"""

__all__ = ["CommandFailed", "InputError", "ModelError", "UsageError"]


class InputError(ValueError):
    """Bad input data: a case file, an array or a box that does not meet the documented contract."""


class ModelError(RuntimeError):
    """A model folder or checkpoint that cannot be used (missing, corrupt, wrong type or version)."""


class UsageError(Exception):
    """Command-line arguments that do not fit together (exit code 2)."""


class CommandFailed(Exception):
    """Raised by a subcommand that has already reported its failures; carries the exit code."""

    def __init__(self, code: int = 1) -> None:
        super().__init__(code)
        self.code = code
