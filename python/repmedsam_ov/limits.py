"""Size limits on what an input file may declare, checked from its header before any voxel is allocated.

A file says how big it is before its data (an npy header's shape, a NIfTI `dim`, a NRRD `sizes`, a PNG IHDR),
and a hostile or broken file can declare terabytes in a few bytes (a zip or gzip bomb). Readers compare the
declared number of values (voxels × channels) with `max_voxels()` and refuse a larger input with an
`InputError` that names the file, the size and how to raise the limit.

Default 2**28 = 268,435,456 values: a 512×512×1024 CT (the largest common clinical series) fits. The limit
is on values, not bytes, because the preprocessing works in float64 (17-19 bytes per voxel beyond the input at
its peak, measured with tracemalloc; about 23 with the input and label maps), so 2**28 voxels peak near 6 GB; larger volumes need
`--max-voxels N` (or REPMEDSAM_MAX_VOXELS=N) and the memory to match. Standard library only.
"""

from __future__ import annotations

import os

from .errors import InputError, UsageError

__all__ = ["DEFAULT_MAX_VOXELS", "ENV", "check_values", "max_voxels"]

DEFAULT_MAX_VOXELS = 2**28
ENV = "REPMEDSAM_MAX_VOXELS"


def max_voxels(override: int | None = None) -> int:
    """The limit in force: `override` (the CLI's --max-voxels), else $REPMEDSAM_MAX_VOXELS, else the default.
    UsageError when the environment variable is not a whole number >= 1."""
    if override is not None:
        return int(override)
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT_MAX_VOXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{ENV}={text!r}: expected a whole number of values (voxels x channels) of at least 1.")
    return value


def check_values(where: str, shape, limit: int | None = None, what: str = "voxels") -> None:
    """InputError when an array of `shape` (as the file declares it) holds more than the limit's values.

    where: the message's start, e.g. "scan.nii.gz" or "case.npz: 'imgs'"; shape: declared sizes (ints)."""
    count = 1
    for size in shape:
        count *= max(int(size), 0)
    limit = max_voxels(limit)
    if count > limit:
        dims = "x".join(str(int(s)) for s in shape)
        raise InputError(f"{where}: declares {dims} = {count:,} {what}, more than the limit of {limit:,} values "
                         f"(it would need about {_human(count)} or more of memory). Raise the limit with "
                         f"--max-voxels N or {ENV}=N if the file is genuine.")


def _human(count: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if count < 1024 or unit == "PB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return ""
