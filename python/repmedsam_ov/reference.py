"""The reference pre- and postprocessing of the published inference script, in numpy and OpenCV.

The C++ runtime reimplements these for speed and is tested against them; the torch reference pipeline and the
plain OpenVINO-Python baseline use them directly. Imports numpy and cv2 only.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["IMAGE_SIZE", "BOX_MARGIN", "resize_longest_side", "pad", "preprocess", "box_to_model", "mask_to_box",
           "upscale_logits", "propagation_walk"]

IMAGE_SIZE = 256
BOX_MARGIN = 3  # pixels added around a neighbour slice's mask when it becomes the next prompt


def resize_longest_side(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 (H, W[, C]) -> uint8 resized with INTER_AREA so that the longest side is `size`."""
    h, w = image.shape[:2]
    scale = size * 1.0 / max(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    return cv2.resize(image, (neww, newh), interpolation=cv2.INTER_AREA)


def pad(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Zero-pad bottom and right to size × size."""
    h, w = image.shape[:2]
    return np.pad(image, ((0, size - h), (0, size - w)) + ((0, 0),) * (image.ndim - 2))


def preprocess(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """uint8 (H, W) or (H, W, 3) -> ((1, 3, 256, 256) float32 in [0, 1], (new_h, new_w) before padding)."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=-1)
    small = resize_longest_side(image)
    lo, hi = small.min(), small.max()
    norm = (small - lo) / np.clip(hi - lo, a_min=1e-8, a_max=None)  # float64 like the original
    return pad(norm).astype(np.float32).transpose(2, 0, 1)[None].copy(), small.shape[:2]


def box_to_model(box: np.ndarray, original_hw: tuple[int, int]) -> np.ndarray:
    """XYXY pixels of the original image -> XYXY in model space (truncated like the original)."""
    ratio = IMAGE_SIZE / max(original_hw)
    return np.array([int(v * ratio) for v in box], dtype=np.int64)


def mask_to_box(label_slice: np.ndarray) -> np.ndarray | None:
    """A neighbour slice's mask (uint8, H×W, holding the object's label value) -> model-space prompt box.

    The slice is resized like an image; None when nothing survives the resize.
    """
    small = resize_longest_side(label_slice)
    if not small.any():
        return None
    ys, xs = np.nonzero(pad(small))
    return np.array([max(0, xs.min() - BOX_MARGIN), max(0, ys.min() - BOX_MARGIN),
                     min(IMAGE_SIZE, xs.max() + BOX_MARGIN), min(IMAGE_SIZE, ys.max() + BOX_MARGIN)], dtype=np.int64)


def upscale_logits(logits: np.ndarray, new_hw: tuple[int, int], original_hw: tuple[int, int]) -> np.ndarray:
    """(256, 256) float32 logits -> crop to the resized extent -> bilinear (half-pixel) to (H, W)."""
    crop = np.ascontiguousarray(logits[: new_hw[0], : new_hw[1]])
    return cv2.resize(crop, (original_hw[1], original_hw[0]), interpolation=cv2.INTER_LINEAR)


def propagation_walk(z_min: int, z_max: int, depth: int) -> tuple[int, list[tuple[int, int]]]:
    """The slices of one 3D object in the reference's order: (z_mid, [(z, neighbour z whose mask prompts it)]).

    Upward from the middle slice to min(z_max, depth - 1), then downward from z_mid - 1 to z_min; the middle
    slice itself is prompted by the object's box.
    """
    z_min, z_max = int(z_min), int(z_max)
    z_mid = int((z_max - z_min) / 2 + z_min)
    walk = [(z, z - 1) for z in range(z_mid, min(z_max, depth - 1) + 1)]
    walk += [(z, z + 1) for z in range(z_mid - 1, z_min - 1, -1)]
    return z_mid, walk


def box_fill(image_shape: tuple[int, ...], boxes: np.ndarray, is_3d: bool) -> np.ndarray:
    """The model-free baseline: every box filled with its label (inclusive corners; 3D boxes over z_min..z_max),
    later boxes over earlier ones; uint8, or uint16 past 255 boxes. What a segmenter must beat to be useful."""
    shape = image_shape[:3] if is_3d else image_shape[:2]
    segs = np.zeros(shape, np.uint16 if len(boxes) > 255 else np.uint8)
    for label, box in enumerate(np.asarray(boxes).astype(int), start=1):
        if is_3d:
            x0, y0, z0, x1, y1, z1 = box
            segs[z0: z1 + 1, y0: y1 + 1, x0: x1 + 1] = label
        else:
            x0, y0, x1, y1 = box
            segs[y0: y1 + 1, x0: x1 + 1] = label
    return segs
