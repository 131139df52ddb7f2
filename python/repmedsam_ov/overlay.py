"""PNG overlays for a look before trusting a number: the image with coloured masks and the prompt boxes.

2D: one picture per image. 3D: one per object, its middle slice (the slice its propagation starts from) in the
model's axial frame, all labels on that slice coloured and the object's box drawn. Small images are enlarged
(nearest neighbour) to at least 256 pixels so that boxes and edges stay visible. Imports numpy and OpenCV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import write_bytes_atomic

__all__ = ["draw_overlay", "palette", "write_overlays"]

_ALPHA = 0.45
_MIN_SIDE = 256


def palette(n: int) -> np.ndarray:
    """(n + 1, 3) uint8 RGB colours; row 0 (background) is black, neighbours' hues are far apart."""
    import cv2

    hues = (np.arange(n) * 0.618033988749895 % 1.0 * 180).astype(np.uint8)
    hsv = np.stack([hues, np.full(n, 220, np.uint8), np.full(n, 255, np.uint8)], axis=1)[None]
    return np.concatenate([np.zeros((1, 3), np.uint8), cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]])


def draw_overlay(image: np.ndarray, labels: np.ndarray, boxes: np.ndarray, colours: np.ndarray,
                 box_labels: list[int]) -> np.ndarray:
    """image: uint8 (H, W) or (H, W, 3) RGB; labels: (H, W) ints; boxes: (K, 4) `[x_min, y_min, x_max, y_max]`
    pixels with their labels `box_labels` -> (H', W', 3) uint8 BGR for cv2, H' = H * s, W' = W * s."""
    import cv2

    rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
    scale = max(1, int(np.ceil(_MIN_SIDE / max(image.shape[:2]))))
    if scale > 1:
        rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
        labels = np.repeat(np.repeat(labels, scale, axis=0), scale, axis=1)
    out = rgb.astype(np.float32)
    inside = labels > 0
    out[inside] = (1 - _ALPHA) * out[inside] + _ALPHA * colours[labels[inside]].astype(np.float32)
    out = np.ascontiguousarray(out.astype(np.uint8)[:, :, ::-1])
    for box, label in zip(boxes, box_labels):
        x0, y0, x1, y1 = (int(round(float(v) * scale)) for v in box)
        colour = tuple(int(c) for c in colours[label][::-1])
        cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, 1)
    return out


def _write_png(path: Path, bgr: np.ndarray) -> None:
    import cv2

    ok, data = cv2.imencode(".png", bgr)
    if ok:
        write_bytes_atomic(path, data.tobytes())


def write_overlays(folder: Path, stem: str, image: np.ndarray, labels: np.ndarray, boxes: np.ndarray) -> list[Path]:
    """image: uint8 (H, W[, 3]) with boxes (N, 4), or (D, H, W) with boxes (N, 6) `[x_min, y_min, z_min, x_max,
    y_max, z_max]`, in the model frame; labels: the segmentation (same H, W[, D]). Returns the PNGs written:
    `<stem>.png` (2D) or `<stem>_obj<i>_z<z>.png` per object (3D, i from 1)."""
    colours = palette(len(boxes))
    if boxes.shape[1] == 4:
        path = folder / f"{stem}.png"
        _write_png(path, draw_overlay(image, labels, boxes, colours, list(range(1, len(boxes) + 1))))
        return [path]
    written = []
    for i, (x0, y0, z0, x1, y1, z1) in enumerate(boxes, start=1):
        z = int((z1 - z0) / 2 + z0)  # the propagation's middle slice (ARCHITECTURE.md §2)
        path = folder / f"{stem}_obj{i:03d}_z{z}.png"
        _write_png(path, draw_overlay(image[z], labels[z], np.array([[x0, y0, x1, y1]]), colours, [i]))
        written.append(path)
    return written
