"""Box files: the prompts for one image (or, in CSV, for several), as JSON or CSV.

JSON: `{"image": "scan.nii.gz", "space": "voxel", "size": [W, H, D], "boxes": [[x_min, y_min, z_min, x_max,
y_max, z_max], ...]}` — only "boxes" is required — or a bare list of boxes. CSV: a header row naming the
columns `x_min, y_min, [z_min,] x_max, y_max, [z_max]`, optionally `image`, then one box per row. Box i (in
file order; in a CSV, among the rows for this image) gets label i + 1. "image" names the file the boxes were
drawn on (its file name, or the folder name of a DICOM series): when it names another image, that is an
error. 2D images take 4-value boxes `[x_min, y_min, x_max, y_max]`. Imports numpy only.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["BoxSpec", "find_box_file", "load_boxes", "same_image"]

_SIDECARS = (".boxes.json", ".boxes.csv")
_KEYS = ("image", "space", "size", "boxes")
_LAYOUT = {4: "[x_min, y_min, x_max, y_max]", 6: "[x_min, y_min, z_min, x_max, y_max, z_max]"}
_COLUMNS = {4: ("x_min", "y_min", "x_max", "y_max"), 6: ("x_min", "y_min", "z_min", "x_max", "y_max", "z_max")}


@dataclass(frozen=True)
class BoxSpec:
    """boxes: (N, 4|6) int64 or float64 in the file's order; space: 'voxel', 'world' or None (not stated);
    size: the image size the file says the boxes were drawn on ((W, H) or (W, H, D)), or None; names_image:
    whether the file says which image it is for (a JSON "image" or a CSV image column)."""

    path: Path
    boxes: np.ndarray
    space: str | None = None
    size: tuple[int, ...] | None = None
    names_image: bool = False


def same_image(named: str, image: Path) -> bool:
    """Whether a box file's "image" entry names `image` (by file name, with or without its extension)."""
    from .medical_io import split_ext

    name = Path(str(named).replace("\\", "/")).name
    return name == image.name or split_ext(Path(name))[0] == split_ext(image)[0]


def find_box_file(image: Path, boxes_arg: Path | None) -> Path:
    """The box file for `image`: --boxes FILE as given; with --boxes DIR or none, `<stem>.boxes.json` or
    `<stem>.boxes.csv` in DIR or beside the image."""
    from .medical_io import split_ext

    if boxes_arg is not None and not boxes_arg.is_dir():
        return boxes_arg
    folder = boxes_arg if boxes_arg is not None else image.parent
    stem = image.name if image.is_dir() else split_ext(image)[0]
    for suffix in _SIDECARS:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    raise InputError(f"{image}: no box file: expected {folder / (stem + _SIDECARS[0])} (or .boxes.csv), or pass "
                     "--boxes FILE.")


def load_boxes(path: Path, image: Path, columns: int) -> BoxSpec:
    """Read the boxes for `image` (columns: 4 for a 2D image, 6 for a volume). Raises InputError."""
    if not path.is_file():
        raise InputError(f"{path}: no such box file.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the box file ({e}).") from None
    spec = _load_csv(path, text, image) if path.suffix.lower() == ".csv" else _load_json(path, text, image)
    boxes = spec.boxes
    if boxes.shape[0] == 0:
        raise InputError(f"{path}: no boxes: give at least one {_LAYOUT[columns]}.")
    if boxes.shape[1] != columns:
        kind = "a 3D volume" if columns == 6 else "a 2D image"
        raise InputError(f"{path}: has {boxes.shape[1]}-value boxes but {image.name} is {kind}: expected "
                         f"{_LAYOUT[columns]} per box.")
    return spec


def _numbers(path: Path, rows: list, where: str) -> np.ndarray:
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) not in (4, 6) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in row):
            raise InputError(f"{path}: {where}[{i}] = {row!r}: expected 4 or 6 numbers, {_LAYOUT[4]} or {_LAYOUT[6]}.")
        if len(row) != len(rows[0]):
            raise InputError(f"{path}: {where}[{i}] has {len(row)} values but {where}[0] has {len(rows[0])}.")
    if not rows:
        return np.zeros((0, 6), np.int64)
    integer = all(isinstance(v, int) for row in rows for v in row)
    boxes = np.array(rows, np.int64 if integer else np.float64)
    bad = np.flatnonzero(~np.all(np.isfinite(boxes), axis=1))
    if bad.size:
        raise InputError(f"{path}: {where}[{bad[0]}] = {rows[bad[0]]}: not finite.")
    return boxes


def _load_json(path: Path, text: str, image: Path) -> BoxSpec:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e}).") from None
    if isinstance(data, list):
        return BoxSpec(path, _numbers(path, data, "boxes"))
    if not isinstance(data, dict) or "boxes" not in data:
        raise InputError(f"{path}: expected a list of boxes or an object with \"boxes\" (and optionally \"image\", "
                         "\"space\", \"size\").")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown key {unknown[0]!r}; a box file has {', '.join(_KEYS)}.")
    named = data.get("image")
    if named is not None and not same_image(str(named), image):
        raise InputError(f"{path}: is the box file for {named!r}, not for {image.name}; pass the right --boxes file.")
    space = data.get("space")
    if space not in (None, "voxel", "world"):
        raise InputError(f"{path}: \"space\" is {space!r}, expected \"voxel\" or \"world\".")
    size = data.get("size")
    if size is not None and (not isinstance(size, list) or len(size) not in (2, 3)
                             or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise InputError(f"{path}: \"size\" is {size!r}, expected [W, H] or [W, H, D] in voxels.")
    if not isinstance(data["boxes"], list):
        raise InputError(f"{path}: \"boxes\" must be a list of boxes, got {type(data['boxes']).__name__}.")
    return BoxSpec(path, _numbers(path, data["boxes"], "boxes"), space, tuple(size) if size else None, named is not None)


def _load_csv(path: Path, text: str, image: Path) -> BoxSpec:
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{path}: empty CSV; expected a header row ({', '.join(_COLUMNS[6])}) and one box per row.")
    header = [c.strip().lower() for c in rows[0]]
    columns = next((c for c in (6, 4) if set(_COLUMNS[c]) <= set(header)), None)
    if columns is None:
        raise InputError(f"{path}: header {rows[0]} lacks box columns; expected {', '.join(_COLUMNS[6])} (3D) or "
                         f"{', '.join(_COLUMNS[4])} (2D), and optionally image.")
    unknown = sorted(set(header) - set(_COLUMNS[columns]) - {"image"})
    if unknown:
        raise InputError(f"{path}: unknown column {unknown[0]!r}; expected {', '.join(_COLUMNS[columns])} and "
                         "optionally image.")
    body = rows[1:]
    if "image" in header:
        at = header.index("image")
        names = sorted({r[at].strip() for r in body if len(r) > at})
        body = [r for r in body if len(r) > at and same_image(r[at].strip(), image)]
        if not body:
            raise InputError(f"{path}: has no boxes for {image.name} (its image column names: "
                             f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}).")
    values = []
    for row in body:
        try:
            values.append([_number(row[header.index(c)]) for c in _COLUMNS[columns]])
        except (IndexError, ValueError):
            raise InputError(f"{path}: row {row!r}: expected numbers in columns {', '.join(_COLUMNS[columns])}.") from None
    return BoxSpec(path, _numbers(path, values, "boxes"), names_image="image" in header)


def _number(text: str) -> int | float:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return float(text)
