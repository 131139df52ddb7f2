"""Argument types shared by the subcommands: a bad value is an argparse usage error (exit 2) that names the
option, e.g. `argument -t/--threads: expected a whole number of at least 1, got '0'`."""

from __future__ import annotations

import argparse

__all__ = ["positive_int"]


def positive_int(text: str) -> int:
    """argparse type of counts (threads, workers, repeats): a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value
