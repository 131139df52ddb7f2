"""Atomic output files: written under a temporary name in the target's folder, then renamed onto it, so a
reader (or an interrupted run) never sees a truncated file. Standard library only; the torch side uses it too.

The temporary file is created with mode 0666 and the process umask applies, as for `open(path, "w")`:
`tempfile.mkstemp` would give 0600 and leave outputs unreadable by other users and services.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "write_bytes_atomic"]


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a new empty file beside `path` (its name ends with `suffix`, for writers that choose the format by
    extension); write it inside the block. It replaces `path` when the block ends, and is removed on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:  # another writer drew the same name
            continue
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
