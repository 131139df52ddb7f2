"""Case files in the CVPR 2024 "MedSAM on Laptop" npz format: loading with validation, atomic saving.

A case holds `imgs` (2D: H×W×3 or H×W uint8; 3D: D×H×W uint8) and `boxes` (2D: N×4 `[x_min, y_min, x_max,
y_max]`; 3D: N×6 `[x_min, y_min, z_min, x_max, y_max, z_max]`, z_max inclusive), in pixel (voxel) indices
of the array. Every check names the file, the key and what was expected; nothing is silently "fixed".
Imports numpy only.
"""

from __future__ import annotations

import os
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import InputError
from .limits import check_values

__all__ = ["Case", "load_case", "load_segs", "validate_boxes", "save_segs", "segs_dtype"]

_EXPECTED = "Expected 'imgs' (H,W,3 or H,W for 2D; D,H,W for 3D, uint8) and 'boxes' (N,4 or N,6)."


@dataclass(frozen=True)
class Case:
    """One validated case.

    imgs: uint8, (H, W, 3) for 2D or (D, H, W) for 3D (a 2D (H, W) grey image is kept as is).
    boxes: int64 (N, 4) `[x_min, y_min, x_max, y_max]` or (N, 6) `[x_min, y_min, z_min, x_max, y_max, z_max]`,
        pixel indices; float boxes are kept as float64 (the reference truncates after scaling).
    spacing: (3,) float64 millimetres in (D, H, W) order for 3D, or None.
    """

    path: Path
    imgs: np.ndarray
    boxes: np.ndarray
    spacing: np.ndarray | None

    @property
    def is_3d(self) -> bool:
        return self.boxes.shape[1] == 6


def load_case(path: str | os.PathLike, *, max_voxels: int | None = None) -> Case:
    """Load and validate one challenge npz (loaded with allow_pickle=False). Raises InputError.

    Each array's npy header is read first: an array declaring more values than `max_voxels` (default
    `limits.max_voxels()`), more than 65535 boxes, or more data than its zip member holds is refused before
    anything is allocated or decompressed."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file.")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an .npz case file.")
    try:
        with open(path, "rb") as f, _open_npz(path, f) as npz:
            keys = list(npz.keys())
            missing = [k for k in ("imgs", "boxes") if k not in keys]
            if missing:
                found = ", ".join(keys) or "nothing"
                raise InputError(f"{path}: missing key '{missing[0]}' (found: {found}). {_EXPECTED}")
            names = ("imgs", "boxes", "spacing") if "spacing" in keys else ("imgs", "boxes")
            for name in names:
                _check_member(path, npz.zip, name, max_voxels)
            imgs, boxes = npz["imgs"], npz["boxes"]
            spacing = npz["spacing"] if "spacing" in keys else None
    except InputError:
        raise
    except ValueError as e:  # object arrays refused by allow_pickle=False, or a corrupt header
        raise InputError(f"{path}: cannot read the arrays ({e}). {_EXPECTED}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as e:
        # a corrupt deflate stream (zlib.error), an encrypted member (RuntimeError), an unsupported
        # compression method (NotImplementedError)
        raise InputError(f"{path}: not a readable .npz archive ({type(e).__name__}: {e}).") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the file ({type(e).__name__}: {e}).") from None
    return _validated(path, imgs, boxes, spacing)


# values an array other than 'imgs' may declare: 65535 boxes (the uint16 label map) of 6 values; spacing 3
_MEMBER_LIMITS = {"boxes": (65535 * 6, "values (at most 65535 boxes of 6)"), "spacing": (64, "values")}


def _check_member(path: Path, archive: zipfile.ZipFile, name: str, max_voxels: int | None) -> None:
    """Read the npy header of member `name` and refuse, before loading, what np.load should not allocate."""
    members = archive.namelist()
    info = archive.getinfo(name if name in members else name + ".npy")  # np.load's lookup order
    where = f"{path}: '{name}'"
    with archive.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in reader:
                raise ValueError(f"npy format version {version[0]}.{version[1]}, expected 1.0 or 2.0")
            shape, _, dtype = reader[version](member)
        except (ValueError, SyntaxError, TypeError, tokenize.TokenError) as e:  # numpy parses the header as Python
            raise InputError(f"{where}: not a readable npy array header ({e}). {_EXPECTED}") from None
        header = member.tell()
    if dtype.hasobject:
        raise InputError(f"{path}: cannot read the arrays ('{name}' holds Python objects, dtype {dtype}, which are "
                         f"never loaded: a pickle can run code). {_EXPECTED}")
    if name in _MEMBER_LIMITS:
        cap, what = _MEMBER_LIMITS[name]
        if int(np.prod(shape, dtype=object)) > cap:
            raise InputError(f"{where}: declares shape {shape}, more than {cap:,} {what}. {_EXPECTED}")
    else:
        check_values(where, shape, max_voxels, "values")
    need = header + int(np.prod(shape, dtype=object)) * dtype.itemsize
    if info.file_size < need:
        raise InputError(f"{where}: truncated array: its header declares {need:,} bytes but the archive member "
                         f"holds {info.file_size:,} (copy or download the file again).")


def _open_npz(path: Path, f):
    magic = f.read(6)
    f.seek(0)
    if magic == b"\x93NUMPY":
        raise InputError(f"{path}: is a single .npy array, expected an .npz archive. {_EXPECTED}")
    if not magic.startswith(b"PK"):
        raise InputError(f"{path}: not an .npz archive (it does not start like a zip file). {_EXPECTED}")
    return np.load(f, allow_pickle=False)


def _validated(path: Path, imgs: np.ndarray, boxes: np.ndarray, spacing) -> Case:
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 6):
        raise InputError(f"{path}: 'boxes' has shape {boxes.shape}, expected (N, 4) for 2D or (N, 6) for 3D.")
    is_3d = boxes.shape[1] == 6
    if imgs.dtype != np.uint8:
        raise InputError(f"{path}: 'imgs' has dtype {imgs.dtype}, expected uint8 (intensities 0..255).")
    if is_3d and imgs.ndim != 3:
        raise InputError(f"{path}: 'imgs' has shape {imgs.shape} but 'boxes' are 3D (N, 6): expected (D, H, W).")
    if not is_3d and not (imgs.ndim == 2 or (imgs.ndim == 3 and imgs.shape[2] == 3)):
        raise InputError(f"{path}: 'imgs' has shape {imgs.shape} but 'boxes' are 2D (N, 4): expected (H, W, 3) or (H, W).")
    if 0 in imgs.shape:
        raise InputError(f"{path}: 'imgs' has shape {imgs.shape}: every dimension must be at least 1.")
    boxes = validate_boxes(boxes, imgs.shape, where=f"{path}: ")
    if spacing is not None:
        spacing = np.asarray(spacing)
        if spacing.dtype.kind not in "iuf" or spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
            raise InputError(f"{path}: 'spacing' is {spacing!r}, expected 3 positive finite numbers (mm, D,H,W order).")
        spacing = spacing.astype(np.float64)
    return Case(path=path, imgs=imgs, boxes=boxes, spacing=spacing)


def validate_boxes(boxes: np.ndarray, image_shape: tuple, where: str = "") -> np.ndarray:
    """Check boxes against an image (H,W[,3]) or volume (D,H,W) shape; return them as int64 or float64.

    x/y may reach the far edge (x_max <= W); z must index a slice (0 <= z_min <= z_max < D). Errors give the
    size in the boxes' order, [W, H(, D)]: a volume file's (i, j, k), as in its box file's "size".
    """
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 6):
        raise InputError(f"{where}'boxes' has shape {boxes.shape}, expected (N, 4) for 2D or (N, 6) for 3D.")
    if boxes.shape[0] == 0:
        raise InputError(f"{where}'boxes' is empty (shape {boxes.shape}): give at least one box.")
    if boxes.dtype.kind not in "iuf":
        raise InputError(f"{where}'boxes' has dtype {boxes.dtype}, expected integer or float pixel coordinates.")
    if boxes.dtype.kind == "f":
        bad = np.flatnonzero(~np.all(np.isfinite(boxes), axis=1))
        if bad.size:
            raise InputError(f"{where}boxes[{bad[0]}] = {boxes[bad[0]].tolist()}: not finite (NaN or inf).")
        boxes = boxes.astype(np.float64)
    else:
        boxes = boxes.astype(np.int64)
    is_3d = boxes.shape[1] == 6
    if is_3d:
        d, h, w = image_shape[:3]
        lo, hi = boxes[:, :3], boxes[:, 3:]
        names, limits = ("x", "y", "z"), (w, h, d)
        layout = "Boxes are [x_min, y_min, z_min, x_max, y_max, z_max] in voxels, z_max inclusive."
    else:
        h, w = image_shape[:2]
        lo, hi = boxes[:, :2], boxes[:, 2:]
        names, limits = ("x", "y"), (w, h)
        layout = "Boxes are [x_min, y_min, x_max, y_max] in pixels."
    for axis, (name, limit) in enumerate(zip(names, limits)):
        for i in range(boxes.shape[0]):
            a, b = lo[i, axis], hi[i, axis]
            if b < a:
                raise InputError(f"{where}boxes[{i}] = {boxes[i].tolist()}: {name}_max < {name}_min. {layout}")
            top = limit - 1 if name == "z" else limit
            if a < 0 or b > top:
                raise InputError(
                    f"{where}boxes[{i}] = {boxes[i].tolist()}: {name} outside the image "
                    f"(expected 0 <= {name} <= {top}; image size {list(limits)} as ({', '.join(names)})). {layout}")
    return boxes


def segs_dtype(n_boxes: int) -> type:
    """uint8 labels, or uint16 past 255 boxes."""
    return np.uint8 if n_boxes <= 255 else np.uint16


def load_segs(path: str | os.PathLike, *, max_voxels: int | None = None) -> np.ndarray:
    """The integer label map `segs` of an npz written by `save_segs` (or the challenge's), loaded with
    allow_pickle=False and its header checked against `max_voxels` first. Raises InputError."""
    path = Path(path)
    try:
        with open(path, "rb") as f, _open_npz(path, f) as npz:
            if "segs" not in npz.keys():
                raise InputError(f"{path}: missing key 'segs' (found: {', '.join(npz.keys()) or 'nothing'}).")
            _check_member(path, npz.zip, "segs", max_voxels)
            segs = npz["segs"]
    except InputError:
        raise
    except (ValueError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, OSError) as e:
        raise InputError(f"{path}: cannot read the label map ({type(e).__name__}: {e}).") from None
    if segs.dtype.kind not in "iu":
        raise InputError(f"{path}: 'segs' has dtype {segs.dtype}, expected integer labels.")
    return segs


def save_segs(path: str | os.PathLike, segs: np.ndarray) -> None:
    """Write `segs` to an npz atomically: a temporary file in the same folder, then rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, segs=segs)
