"""Axis permutation and flips between a volume's own array order and the model's axial frame — never resampling.

A volume read by SimpleITK has index axes (i, j, k) and a direction matrix whose column a is the world (LPS,
millimetres) direction of index axis a; its numpy array is (k, j, i). The model frame is the one a standard
axial CT is stored in: index axes along L, P, S (identity direction), numpy array (D, H, W) = (S, P, L), so
slices are axial, rows run anterior to posterior and columns right to left (radiological display). Each index
axis is assigned to the world axis it is closest to (oblique volumes: the nearest one, as 3D Slicer and ITK's
DICOMOrient do); the label map goes back by the exact inverse, so it lands on the input's voxel grid.
Imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np

__all__ = ["Orientation"]


@dataclass(frozen=True)
class Orientation:
    """world_axis[a]: the model index axis (0 = L/x, 1 = P/y, 2 = S/z) that file index axis a (i, j, k) becomes;
    flip[a]: whether it runs backwards along it. file_size: (i, j, k) sizes of the file's volume."""

    world_axis: tuple[int, int, int]
    flip: tuple[bool, bool, bool]
    file_size: tuple[int, int, int]

    @classmethod
    def from_direction(cls, direction, file_size) -> "Orientation":
        """direction: 9 numbers, row-major 3x3 (SimpleITK's GetDirection); file_size: (i, j, k) voxels."""
        d = np.asarray(direction, np.float64).reshape(3, 3)
        # the assignment of index axes to world axes with the largest total alignment (unique for non-oblique)
        best = max(permutations(range(3)), key=lambda p: sum(abs(d[p[a], a]) for a in range(3)))
        flip = tuple(bool(d[best[a], a] < 0) for a in range(3))
        return cls(tuple(int(w) for w in best), flip, tuple(int(n) for n in file_size))

    @property
    def is_identity(self) -> bool:
        return self.world_axis == (0, 1, 2) and not any(self.flip)

    @property
    def model_size(self) -> tuple[int, int, int]:
        """(x, y, z) sizes in the model frame."""
        size = [0, 0, 0]
        for a, w in enumerate(self.world_axis):
            size[w] = self.file_size[a]
        return tuple(size)

    def _numpy_axes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        # numpy axis of index axis a is 2 - a (arrays are (k, j, i)); model numpy axis of world axis w is 2 - w
        order = [0, 0, 0]
        for a, w in enumerate(self.world_axis):
            order[2 - w] = 2 - a
        flipped = tuple(2 - w for a, w in enumerate(self.world_axis) if self.flip[a])
        return tuple(order), flipped

    def to_model(self, array: np.ndarray) -> np.ndarray:
        """array: (k, j, i) in file order -> contiguous (D, H, W) in the model frame."""
        order, flipped = self._numpy_axes()
        return np.ascontiguousarray(np.flip(array.transpose(order), flipped) if flipped else array.transpose(order))

    def to_file(self, labels: np.ndarray) -> np.ndarray:
        """labels: (D, H, W) in the model frame -> contiguous (k, j, i) in file order (the exact inverse)."""
        order, flipped = self._numpy_axes()
        if flipped:
            labels = np.flip(labels, flipped)
        return np.ascontiguousarray(labels.transpose(np.argsort(order)))

    def boxes_to_model(self, boxes: np.ndarray) -> np.ndarray:
        """boxes: (N, 6) `[i_min, j_min, k_min, i_max, j_max, k_max]` voxel indices of the file, inclusive (x/y may
        also be the far edge, W or H) -> (N, 6) `[x_min, y_min, z_min, x_max, y_max, z_max]` in the model frame.

        Unmoved, unflipped axes keep their values exactly. A flipped axis of n voxels maps v to n - 1 - v (the
        far edge n to 0); an axis that becomes z is rounded to whole slices within [0, n - 1]."""
        boxes = np.asarray(boxes)
        out = boxes.copy()
        for a, w in enumerate(self.world_axis):
            n = self.file_size[a]
            lo, hi = boxes[:, a], boxes[:, a + 3]
            if self.flip[a]:
                lo, hi = np.maximum(n - 1 - hi, 0), np.maximum(n - 1 - lo, 0)
            if w == 2 and a != 2:
                lo, hi = np.clip(np.rint(lo), 0, n - 1), np.clip(np.rint(hi), 0, n - 1)
            out[:, w], out[:, w + 3] = lo, hi
        return out
