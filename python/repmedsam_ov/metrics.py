"""Segmentation metrics of the CVPR 2024 "MedSAM on Laptop" challenge: DSC and NSD (normalised surface Dice).

Reproduces the official scoring (DeepMind's surface-distance library driven by the challenge's
`compute_metrics.py`) to float rounding, including its quirks: a case's NSD is the mean over labels only
when the case's mean DSC exceeds 0.2 (else 0), and a 2D case is scored as an H×W×1 volume with spacing
(1, 1, 1), so every mask pixel touches the surface. Unlike the official code, which scans the whole volume
several times per label, it finds every label's bounding box in one pass and works only there. Imports numpy
and scipy only; never torch.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .errors import InputError

__all__ = ["CaseMetrics", "dsc", "nsd", "evaluate_case", "TOLERANCE_MM", "NSD_MIN_DSC"]

TOLERANCE_MM = 2.0  # NSD tolerance: millimetres for 3D, pixels for 2D
NSD_MIN_DSC = 0.2  # NSD is computed only when the case's mean DSC is above this; otherwise it is 0

# The surface lives on the corners between voxels. The corner at index (i, j, k) of a code map sees the
# 2×2×2 voxels (i+a-1, j+b-1, k+c-1), a, b, c in {0, 1}, and packs them into 8 bits, voxel (a, b, c)
# weighing 128 >> (4a + 2b + c): DeepMind's neighbourhood code.
_CORNERS = list(itertools.product((0, 1), repeat=3))
_KERNEL = np.array([128 >> (4 * a + 2 * b + c) for a, b, c in _CORNERS], np.uint8).reshape(2, 2, 2)


@dataclass(frozen=True)
class CaseMetrics:
    """Scores of one case.

    dsc, nsd: the case scores (means over labels); nsd is 0.0 when dsc <= NSD_MIN_DSC, as in the challenge.
    labels: int64 (L,) the non-zero labels of the ground truth, ascending.
    label_dsc, label_nsd: float64 (L,) per-label scores; label_nsd is NaN where NSD was not computed.
    """

    dsc: float
    nsd: float
    labels: np.ndarray
    label_dsc: np.ndarray
    label_nsd: np.ndarray


def dsc(gt: np.ndarray, seg: np.ndarray) -> float:
    """Dice of two boolean masks of the same shape (any ndim): 2|A∩B| / (|A| + |B|); NaN when both are empty."""
    gt, seg = _bool_pair(gt, seg)
    total = int(np.count_nonzero(gt)) + int(np.count_nonzero(seg))
    return 2 * int(np.count_nonzero(gt & seg)) / total if total else float("nan")


def label_agreement(a: np.ndarray, b: np.ndarray, n_labels: int) -> list[float]:
    """Per-label Dice of two label maps for labels 1..n_labels, 1.0 where both lack a label (engine agreement)."""
    return [1.0 if np.isnan(d := dsc(a == i, b == i)) else d for i in range(1, n_labels + 1)]


def nsd(gt: np.ndarray, seg: np.ndarray, spacing, tolerance_mm: float = TOLERANCE_MM) -> float:
    """Normalised surface Dice of two boolean (D, H, W) masks, as DeepMind's `compute_surface_dice_at_tolerance`.

    spacing: 3 voxel sizes in millimetres, in the arrays' axis order. For the challenge's 2D convention pass
    `mask[..., None]` and spacing (1, 1, 1). Returns the surfel area of either surface lying within
    `tolerance_mm` of the other surface, over the total surfel area, in [0, 1]; NaN when both masks are empty.
    """
    gt, seg = _bool_pair(gt, seg)
    if gt.ndim != 3:
        raise InputError(f"masks have shape {gt.shape}, expected (D, H, W); give a 2D mask as mask[..., None].")
    spacing = _spacing(spacing)
    region = _bounding_region(gt | seg)
    if region is None:
        return float("nan")
    return _nsd_in_region(gt[region], seg[region], spacing, tolerance_mm)


def evaluate_case(gts: np.ndarray, segs: np.ndarray, spacing=None) -> CaseMetrics:
    """Score one case the challenge's way: per non-zero label of `gts`, DSC and NSD of (gts == i, segs == i).

    gts, segs: integer label maps of one shape, (H, W) for 2D or (D, H, W) for 3D.
    spacing: 3D only, 3 voxel sizes in millimetres in (D, H, W) order; 2D is scored as an (H, W, 1) volume
        with spacing (1, 1, 1) and a tolerance of 2 pixels.
    Raises InputError for mismatched shapes, non-integer labels, a missing spacing or an empty `gts`.
    """
    gts, segs = np.asarray(gts), np.asarray(segs)
    for name, a in (("gts", gts), ("segs", segs)):
        if a.dtype.kind not in "biu":
            raise InputError(f"'{name}' has dtype {a.dtype}, expected integer labels.")
    if gts.shape != segs.shape:
        raise InputError(f"'gts' has shape {gts.shape} but 'segs' has shape {segs.shape}; they must match.")
    if gts.ndim == 2:
        gts, segs, spacing = gts[..., None], segs[..., None], (1.0, 1.0, 1.0)
    elif gts.ndim != 3:
        raise InputError(f"'gts' has shape {gts.shape}, expected (H, W) for 2D or (D, H, W) for 3D.")
    elif spacing is None:
        raise InputError("a 3D case needs 'spacing' (3 voxel sizes in mm, D,H,W order) for NSD.")
    spacing = _spacing(spacing)

    gts, segs = (a.view(np.uint8) if a.dtype == bool else a for a in (gts, segs))
    top = int(gts.max(initial=0))
    if top > np.iinfo(np.uint16).max:
        raise InputError(f"'gts' holds label {top}, expected labels up to 65535 (uint8 or uint16 label maps).")
    gt_boxes = ndimage.find_objects(gts)  # one pass: the bounding box of every label
    labels = np.array([i + 1 for i, box in enumerate(gt_boxes) if box is not None], np.int64)
    if labels.size == 0:
        raise InputError("'gts' has no non-zero label: nothing to score.")
    seg_boxes = ndimage.find_objects(segs, max_label=len(gt_boxes))  # seg labels absent from gts are ignored
    regions = [_union(gt_boxes[label - 1], seg_boxes[label - 1]) for label in labels]

    def masks(label, region):  # made again when needed: whole-volume crops of many labels add up
        return gts[region] == label, segs[region] == label

    label_dsc = np.array([dsc(*masks(label, region)) for label, region in zip(labels, regions)])
    label_nsd = np.full(labels.size, np.nan)
    case_dsc = float(label_dsc.mean())
    if case_dsc > NSD_MIN_DSC:
        label_nsd[:] = [_nsd_in_region(*masks(label, region), spacing, TOLERANCE_MM)
                        for label, region in zip(labels, regions)]
        case_nsd = float(label_nsd.mean())
    else:
        case_nsd = 0.0
    return CaseMetrics(case_dsc, case_nsd, labels, label_dsc, label_nsd)


def _nsd_in_region(gt: np.ndarray, seg: np.ndarray, spacing: tuple, tolerance_mm: float) -> float:
    """NSD of boolean (D, H, W) crops that hold every foreground voxel of both masks."""
    if not (gt.any() and seg.any()):
        return 0.0 if gt.any() or seg.any() else float("nan")
    areas = _surfel_areas(spacing)
    gt_codes, seg_codes = _neighbour_codes(gt), _neighbour_codes(seg)
    gt_border = (gt_codes != 0) & (gt_codes != 255)
    seg_border = (seg_codes != 0) & (seg_codes != 255)
    # Distances are measured within the crop (plus its one-corner border): every surfel of both masks lies
    # inside it, and the Euclidean distance to the nearest surfel does not depend on what lies outside.
    to_seg = ndimage.distance_transform_edt(~seg_border, sampling=spacing)[gt_border]
    to_gt = ndimage.distance_transform_edt(~gt_border, sampling=spacing)[seg_border]
    gt_area, seg_area = areas[gt_codes[gt_border]], areas[seg_codes[seg_border]]
    close = gt_area[to_seg <= tolerance_mm].sum() + seg_area[to_gt <= tolerance_mm].sum()
    return float(close / (gt_area.sum() + seg_area.sum()))


def _neighbour_codes(mask: np.ndarray) -> np.ndarray:
    """uint8 (D+1, H+1, W+1): the neighbourhood code of every voxel corner of a boolean (D, H, W) mask."""
    padded = np.pad(mask.view(np.uint8), [(0, 1)] * 3)  # the far corners; the near ones come from cval=0
    return ndimage.correlate(padded, _KERNEL, mode="constant", cval=0)


@functools.lru_cache(maxsize=16)
def _surfel_areas(spacing: tuple) -> np.ndarray:
    """float64 (256,): surface area in mm² that each neighbourhood code contributes, for voxel size `spacing`."""
    scale = np.array([spacing[1] * spacing[2], spacing[0] * spacing[2], spacing[0] * spacing[1]])
    return np.array([np.linalg.norm(normals * scale, axis=1).sum() for normals in _surfel_normals()])


@functools.lru_cache(maxsize=1)
def _surfel_normals() -> list[np.ndarray]:
    """Per neighbourhood code, float64 (T, 3): one area vector (normal × area, unit voxels) per triangle.

    This rebuilds DeepMind's marching-cubes table. The surface of a code joins the midpoints of the cube edges
    whose two voxels differ; a code and its complement share one surface; on a face with diagonally opposite
    voxels inside, the inside voxels (the fewer, after taking the complement) are cut off separately. Each
    closed polygon is split into the triangles of largest total area at unit spacing: this rule gives
    DeepMind's table for every one of the 256 codes.
    """
    return [np.array([_area_vector(*t) for t in _triangles(code)]).reshape(-1, 3) for code in range(256)]


def _triangles(code: int) -> list[tuple]:
    inside = {c for c, bit in zip(_CORNERS, _KERNEL.ravel()) if code & int(bit)}
    if len(inside) > 4:
        inside = set(_CORNERS) - inside
    links: dict[tuple, list[tuple]] = {}
    for axis, side in itertools.product(range(3), (0, 1)):
        ring = [_corner(axis, side, u, v) for u, v in ((0, 0), (0, 1), (1, 1), (1, 0))]
        edges = [(ring[k], ring[(k + 1) % 4]) for k in range(4)]
        cut = [k for k, (p, q) in enumerate(edges) if (p in inside) != (q in inside)]
        if len(cut) == 4:  # ambiguous face: one pair per inside corner, i.e. around edges k-1 and k
            pairs = [((k - 1) % 4, k) for k in range(4) if ring[k] in inside]
        else:
            pairs = [tuple(cut)] if cut else []
        for k, m in pairs:
            p, q = _midpoint(*edges[k]), _midpoint(*edges[m])
            links.setdefault(p, []).append(q)
            links.setdefault(q, []).append(p)
    triangles, seen = [], set()
    for start in links:  # every midpoint lies on two faces, so the links form closed polygons
        if start in seen:
            continue
        polygon, prev = [start], None
        while True:
            nxt = next(q for q in links[polygon[-1]] if q != prev)
            if nxt == start:
                break
            prev = polygon[-1]
            polygon.append(nxt)
        seen.update(polygon)
        triangles += _largest_triangulation(polygon)
    return triangles


def _largest_triangulation(polygon: list[tuple]) -> list[tuple]:
    """The triangles (vertex triples) that split a closed polygon with the largest total area."""
    def area(i: int, k: int, j: int) -> float:
        return math.hypot(*_area_vector(polygon[i], polygon[k], polygon[j]))

    @functools.lru_cache(maxsize=None)
    def best(i: int, j: int) -> tuple[float, tuple]:  # (area, triangles) of the sub-polygon polygon[i..j]
        if j - i < 2:
            return 0.0, ()
        options = []
        for k in range(i + 1, j):
            (a1, t1), (a2, t2) = best(i, k), best(k, j)
            options.append((a1 + a2 + area(i, k, j), t1 + t2 + ((i, k, j),)))
        return max(options, key=lambda option: option[0])

    return [tuple(polygon[i] for i in t) for t in best(0, len(polygon) - 1)[1]]


def _area_vector(p, q, r) -> tuple:
    """Half the cross product of the triangle's edges: its normal scaled to its area."""
    (u0, u1, u2), (v0, v1, v2) = (b - a for a, b in zip(p, q)), (b - a for a, b in zip(p, r))
    return 0.5 * (u1 * v2 - u2 * v1), 0.5 * (u2 * v0 - u0 * v2), 0.5 * (u0 * v1 - u1 * v0)


def _corner(axis: int, side: int, u: int, v: int) -> tuple:
    c = [u, v]
    c.insert(axis, side)
    return tuple(c)


def _midpoint(p: tuple, q: tuple) -> tuple:
    return tuple((a + b) / 2 for a, b in zip(p, q))


def _bool_pair(gt, seg) -> tuple[np.ndarray, np.ndarray]:
    gt, seg = np.asarray(gt), np.asarray(seg)
    if gt.shape != seg.shape:
        raise InputError(f"masks have shapes {gt.shape} and {seg.shape}; they must match.")
    if gt.dtype != bool or seg.dtype != bool:
        raise InputError(f"masks have dtypes {gt.dtype} and {seg.dtype}, expected bool (e.g. labels == i).")
    return gt, seg


def _spacing(spacing) -> tuple:
    s = np.asarray(spacing)
    if s.dtype.kind not in "iuf" or s.shape != (3,) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise InputError(f"spacing is {spacing!r}, expected 3 positive finite voxel sizes in mm (D,H,W order).")
    return tuple(float(x) for x in s)


def _bounding_region(mask: np.ndarray) -> tuple | None:
    """The smallest box of slices holding every True voxel, or None when there is none."""
    box = ndimage.find_objects(mask.view(np.uint8))
    return box[0] if box else None


def _union(a: tuple, b: tuple | None) -> tuple:
    if b is None:
        return a
    return tuple(slice(min(s.start, t.start), max(s.stop, t.stop)) for s, t in zip(a, b))
