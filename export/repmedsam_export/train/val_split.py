"""The validation split of the training data: whole cases held out of training to choose checkpoints on, so
that the eval set only ever decides shipping (issue 28).

3D: whole volumes of every 3D modality, a patient's volumes together (BraTS pat0006's FLAIR and T1c), the
new multi-organ CT and left-atrium MR included. 2D: two images of every 2D source, picked by a hash of the
name (stable whatever the order or number of other cases). `write_val_folder` writes them in the challenge
layout (`imgs/NAME.npz` with imgs, boxes[, spacing]; `gts/NAME.npz`) at the stored training scale, boxes
made from the labels as the eval cases' are; `train STAGE --val` on that folder leaves its cases out of
training (loop.py). Imports numpy and hashlib only (no torch).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from repmedsam_ov.atomic import atomic_path

__all__ = ["HELD_OUT_3D", "held_out_names", "calibration_names", "case_boxes", "write_val_folder"]

HELD_OUT_3D = (
    "3DBox_CT_totalseg_example-ct-dicom",  # 31 abdomen/thorax organs: AMOS-like walks
    "3DBox_MR_deepmedic_pat0006-Flair",  # brain tumour, one patient's two volumes
    "3DBox_MR_deepmedic_pat0006-T1c",
    "3DBox_MR_la2018_4498CA6D",  # left atrium, two patients
    "3DBox_MR_la2018_45C45I6I",
)
PER_2D_SOURCE = 2


def _hash(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def held_out_names(items) -> set[str]:
    """Names of the held-out cases among `items` (data.Item: name, source, z; z < 0 for 2D)."""
    names_2d: dict[str, set[str]] = {}
    for item in items:
        if item.z < 0:
            names_2d.setdefault(item.source, set()).add(item.name)
    held = {name for item in items if item.z >= 0 and (name := item.name) in HELD_OUT_3D}
    for names in names_2d.values():
        held.update(sorted(names, key=_hash)[:PER_2D_SOURCE])
    return held


def case_boxes(labels: np.ndarray) -> np.ndarray:
    """Challenge boxes of a label map: 2D (H, W) -> N×4 [x_min, y_min, x_max, y_max]; 3D (D, H, W) -> N×6
    [x_min, y_min, z_min, x_max, y_max, z_max] with z_max inclusive and x/y from the object's middle slice
    (its whole extent where that slice misses it). Row i belongs to label i + 1; labels must be 1..N."""
    n = int(labels.max())
    rows = []
    for value in range(1, n + 1):
        where = np.nonzero(labels == value)
        if len(where[0]) == 0:
            raise ValueError(f"label {value} of 1..{n} is missing: labels must be consecutive")
        if labels.ndim == 2:
            ys, xs = where
            rows.append([xs.min(), ys.min(), xs.max(), ys.max()])
            continue
        zs, ys, xs = where
        z0, z1 = int(zs.min()), int(zs.max())
        mid = labels[int((z1 - z0) / 2 + z0)] == value
        if mid.any():
            ys, xs = np.nonzero(mid)
        rows.append([xs.min(), ys.min(), z0, xs.max(), ys.max(), z1])
    return np.array(rows, dtype=np.int64).reshape(n, 4 if labels.ndim == 2 else 6)


def _relabelled(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..N in order (a stored case may skip values, e.g. organs outside a crop)."""
    values = np.unique(labels)
    values = values[values > 0]
    lut = np.zeros(int(labels.max()) + 1, dtype=np.uint16)
    lut[values] = np.arange(1, len(values) + 1)
    return lut[labels].astype(np.uint8 if len(values) <= 255 else np.uint16)


def calibration_names(items, per_2d_source: int = 10) -> set[str]:
    """Training cases (never held-out ones) for int8 calibration: every 3D volume and `per_2d_source` images
    of each 2D source, picked by name hash as the split is."""
    held = held_out_names(items)
    names_2d: dict[str, set[str]] = {}
    for item in items:
        if item.z < 0 and item.name not in held:
            names_2d.setdefault(item.source, set()).add(item.name)
    chosen = {it.name for it in items if it.z >= 0 and it.name not in held}
    for names in names_2d.values():
        chosen.update(sorted(names, key=_hash)[:per_2d_source])
    return chosen


def write_val_folder(source, out: str | Path, names: set[str] | None = None) -> list[str]:
    """Write cases of a FolderSource (the training folder; default: the held-out ones) to out/imgs and
    out/gts in the challenge layout, each file atomically. -> the case names written."""
    out = Path(out)
    (out / "imgs").mkdir(parents=True, exist_ok=True)
    (out / "gts").mkdir(parents=True, exist_ok=True)
    names = sorted(held_out_names(source.items) if names is None else names)
    for name in names:
        row = source.rows[name]
        if row["kind"] == "2d":
            image, labels = source.read(next(it for it in source.items if it.name == name))
            case = {}
        else:
            with np.load(source.root / row["image"], allow_pickle=False) as npz:
                image, labels, case = npz["imgs"], npz["gts"], {"spacing": npz["spacing"]}
        labels = _relabelled(labels)
        case.update(imgs=image, boxes=case_boxes(labels))
        for sub, arrays in (("imgs", case), ("gts", {"gts": labels})):
            with atomic_path(out / sub / f"{name}.npz", suffix=".npz") as tmp:
                np.savez_compressed(tmp, **arrays)
    return names
