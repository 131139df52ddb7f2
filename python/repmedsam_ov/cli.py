"""`repmedsam-ov` command line: one prefix, thin subcommands in `commands/`.

Exit codes: 0 ok, 1 bad data or model (a one-line message per failure), 2 usage error. Tracebacks only
with -v. Heavy imports (torch, the runtime) happen inside the subcommand that needs them.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .commands import COMMANDS
from .errors import InputError, ModelError

__all__ = ["main"]

log = logging.getLogger("repmedsam_ov")


class CommandFailed(Exception):
    """Raised by a subcommand that has already reported its failures; carries the exit code."""

    def __init__(self, code: int = 1) -> None:
        super().__init__(code)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repmedsam-ov", description="Rep-MedSAM segmentation on CPU (OpenVINO).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    try:
        return args.func(args) or 0
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
