"""Subcommands of `repmedsam-ov`. Each module has `register(subparsers)` that adds its parser and sets `func`."""

from importlib import import_module

_NAMES = ("infer", "export", "evaluate", "bench", "train", "info")


def _registrars():
    for name in _NAMES:
        try:
            module = import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{name}":  # subcommand not part of this build yet
                continue
            raise
        yield module.register


COMMANDS = list(_registrars())
