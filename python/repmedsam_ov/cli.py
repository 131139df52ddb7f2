"""`repmedsam-ov` command line: one prefix, thin subcommands in `commands/`.

Exit codes: 0 ok, 1 bad data or model (a one-line message per failure), 2 usage error. Tracebacks only
with -v. Heavy imports (torch, the runtime) happen inside the subcommand that needs them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .commands import COMMANDS
from .errors import CommandFailed, InputError, ModelError, UsageError

__all__ = ["main"]

log = logging.getLogger("repmedsam_ov")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repmedsam-ov", description="Rep-MedSAM segmentation on CPU (OpenVINO).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(sub)
    for command in sub.choices.values():  # every subcommand takes them after its name
        command.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
        command.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")
    return parser


def _setup_logging(verbose: bool, quiet: bool) -> None:
    """Progress and per-case errors go to stderr as plain lines (not through the root logger)."""
    handler = logging.StreamHandler(_own_stderr())
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def _own_stderr():
    """sys.stderr, or where it is the process's descriptor 2, a stream on a duplicate of it: readers mute
    descriptor 2 while C++ libraries parse a file (medical_io), and our lines must not be muted with them."""
    if sys.stderr is not sys.__stderr__ or sys.stderr is None:
        return sys.stderr  # captured (tests) or replaced by the caller: write where we are told
    global _STDERR
    if _STDERR is None:
        try:
            sys.stderr.flush()
            _STDERR = open(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding=sys.stderr.encoding,
                           errors="backslashreplace")
        except (OSError, AttributeError, ValueError):
            return sys.stderr
    return _STDERR


_STDERR = None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    try:
        return args.func(args) or 0
    except UsageError as e:
        print(f"repmedsam-ov {args.command}: error: {e}", file=sys.stderr)
        return 2
    except CommandFailed as e:
        return e.code
    except (InputError, ModelError, OSError) as e:
        if args.verbose:
            raise
        print(f"repmedsam-ov: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("repmedsam-ov: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
