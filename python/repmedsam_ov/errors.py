"""Error types a user sees. Messages lead with the file or argument, then what was expected and found.

Imports nothing heavy: the CLI maps these to exit code 1 and a one-line message.
"""

__all__ = ["Cancelled", "CommandFailed", "InputError", "ModelError", "UsageError"]


_MAX_MESSAGE = 600  # characters; a message quoting a hostile file's bytes is cut in the middle


def _one_line(message: str) -> str:
    """One readable line: newlines folded, and at most _MAX_MESSAGE characters (the file name at the start and
    the "expected ..." at the end are kept; fuzzing found messages of 40,000 characters quoting zip headers)."""
    text = " ".join(str(message).split("\n"))
    if len(text) <= _MAX_MESSAGE:
        return text
    return f"{text[:_MAX_MESSAGE * 2 // 3]} [... {len(text) - _MAX_MESSAGE} characters ...] {text[-_MAX_MESSAGE // 3:]}"


class InputError(ValueError):
    """Bad input data: a case file, an array or a box that does not meet the documented contract. The message
    is kept to one line of at most 600 characters."""

    def __init__(self, message: str = "") -> None:
        super().__init__(_one_line(message))


class ModelError(RuntimeError):
    """A model folder or checkpoint that cannot be used (missing, corrupt, wrong type or version)."""


class Cancelled(Exception):
    """A segment call stopped by its `Progress.cancel()` (from another thread); its labels are incomplete."""


class UsageError(Exception):
    """Command-line arguments that do not fit together (exit code 2)."""


class CommandFailed(Exception):
    """Raised by a subcommand that has already reported its failures; carries the exit code."""

    def __init__(self, code: int = 1) -> None:
        super().__init__(code)
        self.code = code
