"""The objects a user made on one case: each a label, the box that made it (if any) and its mask, with undo.

A 2D image is a volume of one slice here, so both kinds share one code path. Masks are kept cropped to their
bounding box; the label map is painted object by object in creation order, later objects over earlier ones,
which is `infer`'s rule (box i gets label i + 1, later boxes overwrite earlier ones) when labels follow the
order. Every change replaces immutable `Obj` records, so an undo step is a cheap copy of the list. Imports numpy
and scipy; never the model, never Starlette.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np

from ..errors import InputError

__all__ = ["Annotation", "Mask", "Obj", "MAX_LABEL"]

MAX_LABEL = 65535  # the uint16 label map
_UNDO_DEPTH = 100


@dataclass(frozen=True)
class Mask:
    """A binary mask stored by its bounding box: `origin` (z, y, x) voxels and `data`, bool (d, h, w)."""

    origin: tuple[int, int, int]
    data: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray, value: int = 0) -> "Mask | None":
        """labels: (D, H, W) -> the mask of `labels == value` (value 0: of `labels != 0`); None when empty."""
        where = labels != 0 if value == 0 else labels == value
        extent = [np.flatnonzero(where.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
        if extent[0].size == 0:
            return None
        lo = [int(e[0]) for e in extent]
        hi = [int(e[-1]) + 1 for e in extent]
        data = where[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].copy()
        data.setflags(write=False)
        return cls((lo[0], lo[1], lo[2]), data)

    @property
    def z_range(self) -> tuple[int, int]:
        """First and last slice (inclusive)."""
        return self.origin[0], self.origin[0] + self.data.shape[0] - 1

    def paint(self, out: np.ndarray, label: int, z0: int = 0) -> None:
        """Paint `label` into out, (d, H, W) slices z0.. of the label map, where the mask is set."""
        z, y, x = self.origin
        d, h, w = self.data.shape
        first, last = max(z, z0), min(z + d, z0 + out.shape[0])
        if first < last:
            region = out[first - z0:last - z0, y:y + h, x:x + w]
            region[self.data[first - z:last - z]] = label


@dataclass(frozen=True)
class Obj:
    """One object: `id` (stable for the case), `label` (1..65535), `box` as infer takes it (2D: [x_min, y_min,
    x_max, y_max]; 3D: [x_min, y_min, z_min, x_max, y_max, z_max], z_max inclusive) or None for an object loaded
    from a label file, and `mask` (None: nothing segmented yet, or an empty result)."""

    id: int
    label: int
    box: tuple[float, ...] | None
    mask: Mask | None

    def describe(self) -> dict:
        z = None if self.mask is None else list(self.mask.z_range)
        return {"id": self.id, "label": self.label, "box": None if self.box is None else list(self.box),
                "slices": z, "voxels": 0 if self.mask is None else int(self.mask.data.sum())}


class Annotation:
    """The objects of one case of `shape` (D, H, W) (D = 1 for 2D), changed under `lock` by whoever holds it;
    `version` grows with every change (clients refetch labels when it moves)."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.shape = shape
        self.objects: list[Obj] = []
        self.version = 0
        self.lock = threading.RLock()
        self._undo: list[list[Obj]] = []
        self._next_id = 1

    def _changed(self, objects: list[Obj], undoable: bool = True) -> None:
        if undoable:
            self._undo.append(self.objects)
            del self._undo[:-_UNDO_DEPTH]
        self.objects = objects
        self.version += 1

    def find(self, obj_id: int) -> Obj:
        for obj in self.objects:
            if obj.id == obj_id:
                return obj
        raise KeyError(obj_id)

    def next_label(self) -> int:
        used = max((o.label for o in self.objects), default=0)
        if used >= MAX_LABEL:
            raise InputError(f"labels run out at {MAX_LABEL} (the uint16 label map); delete objects first.")
        return used + 1

    def add(self, label: int | None = None, box=None, mask: Mask | None = None) -> Obj:
        obj = Obj(self._next_id, self.next_label() if label is None else _label(label), _box(box), mask)
        self._next_id += 1
        self._changed([*self.objects, obj])
        return obj

    def update(self, obj_id: int, **changes) -> Obj:
        """Replace fields of one object (label, box, mask); KeyError when it is gone. The first result of a new
        object (no box, no mask yet) joins the undo step that added it: one undo takes the object away."""
        old = self.find(obj_id)
        if "label" in changes:
            changes["label"] = _label(changes["label"])
        if "box" in changes:
            changes["box"] = _box(changes["box"])
        new = replace(old, **changes)
        self._changed([new if o.id == obj_id else o for o in self.objects],
                      undoable=old.box is not None or old.mask is not None)
        return new

    def remove(self, obj_id: int) -> None:
        self.find(obj_id)
        self._changed([o for o in self.objects if o.id != obj_id])

    def replace_all(self, objects: list[tuple[int, tuple | None, Mask | None]]) -> None:
        """Replace every object by (label, box, mask) triples, e.g. from a label file (one undo step)."""
        new = []
        for label, box, mask in objects:
            new.append(Obj(self._next_id, _label(label), _box(box), mask))
            self._next_id += 1
        self._changed(new)

    def undo(self) -> bool:
        if not self._undo:
            return False
        self.objects = self._undo.pop()
        self.version += 1
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def dtype(self) -> type:
        return np.uint16 if max((o.label for o in self.objects), default=0) > 255 else np.uint8

    def labels(self, z0: int = 0, z1: int | None = None) -> np.ndarray:
        """The label map of slices z0..z1 (exclusive; default all): (d, H, W), uint8 or uint16 past 255."""
        z1 = self.shape[0] if z1 is None else z1
        out = np.zeros((z1 - z0, *self.shape[1:]), self.dtype())
        for obj in self.objects:
            if obj.mask is not None:
                obj.mask.paint(out, obj.label, z0)
        return out


def _label(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LABEL:
        raise InputError(f"label {value!r}: expected a whole number from 1 to {MAX_LABEL}.")
    return value


def _box(box) -> tuple[float, ...] | None:
    """As given, whole numbers as ints (a box file written from it reads the same)."""
    return None if box is None else tuple(int(v) if float(v).is_integer() else float(v) for v in box)
