"""One case read for interactive work: its model pixels in a `Session`, its box file's boxes, and how its label
map goes to and from its output file — the same readers, intensity rules, orientation and writers as `infer`.

Every array is in the model frame `infer` segments in: a 2D image is (1, H, W) here, a volume (D, H, W) with
axial slices. Imports numpy, scipy and the file readers; never Starlette, never torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..boxes_file import find_box_file
from ..errors import InputError
from ..file_cases import FileOptions, ImageFile, VolumeFile, read_image_file, read_volume_file
from ..io import load_case, load_segs, save_segs
from ..session import Session
from .annotation import Mask
from .library import Entry

__all__ = ["OpenCase", "open_case"]

_CACHED_SLICES = 128  # embeddings kept per open case (4 MiB each)


@dataclass
class OpenCase:
    """entry: the case; session: its pixels on the model, each slice encoded once; source: the ImageFile or
    VolumeFile it was read from (None for npz); is_3d; window: (width, level) HU for CT volumes, else None;
    file_boxes: (N, 4|6) model-frame boxes of its box file (npz: its 'boxes'), or None with `box_note` saying
    why; spacing: (3,) mm of (D, H, W), or None; note: how the intensities and axes were prepared."""

    entry: Entry
    session: Session
    source: ImageFile | VolumeFile | None
    is_3d: bool
    window: tuple[float, float] | None
    file_boxes: np.ndarray | None
    box_note: str | None
    spacing: np.ndarray | None
    note: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """(D, H, W); D = 1 for a 2D image."""
        pixels = self.session.pixels
        return tuple(pixels.shape) if self.is_3d else (1, *pixels.shape[:2])

    @property
    def channels(self) -> int:
        pixels = self.session.pixels
        return 1 if self.is_3d or pixels.ndim == 2 else pixels.shape[2]

    def slice_pixels(self, z: int) -> np.ndarray:
        """uint8 (H, W) or (H, W, 3) pixels of slice z, as the model sees them."""
        return self.session.pixels[z] if self.is_3d else self.session.pixels

    def describe(self) -> dict:
        return {"id": self.entry.id, "name": self.entry.name, "dims": 3 if self.is_3d else 2,
                "shape": list(self.shape), "channels": self.channels,
                "spacing": None if self.spacing is None else [float(v) for v in self.spacing],
                "window": None if self.window is None else list(self.window), "note": self.note,
                "file_boxes": None if self.file_boxes is None else self.file_boxes.tolist(),
                "box_note": self.box_note}

    def write(self, target: Path, labels: np.ndarray) -> None:
        """labels: (D, H, W) in the model frame -> the output file, atomically, as `infer` writes it."""
        if self.entry.kind == "npz":
            save_segs(target, labels if self.is_3d else labels[0])
        else:
            self.source.write(target, labels if self.is_3d else labels[0])

    def read_labels(self, path: Path, max_voxels: int | None) -> np.ndarray:
        """A label map this case's `write` made (or infer's): (D, H, W) integers in the model frame."""
        if self.entry.kind == "npz":
            labels = load_segs(path, max_voxels=max_voxels)
        elif self.entry.kind == "image":
            from ..medical_io import read_image_2d

            labels = read_image_2d(path, max_voxels)
        else:
            from ..medical_io import read_volume

            volume = read_volume(path, max_voxels)
            if volume.geometry.size != self.source.volume.geometry.size:
                raise InputError(f"{path}: is {list(volume.geometry.size)} voxels, but {self.entry.name} is "
                                 f"{list(self.source.volume.geometry.size)}: not its label map.")
            labels = self.source.orientation.to_model(volume.array)
        expected = self.shape if self.is_3d else self.shape[1:]
        if labels.shape != expected or labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
            raise InputError(f"{path}: holds {labels.dtype} {list(labels.shape)}, expected non-negative integer "
                             f"labels of shape {list(expected)} ({self.entry.name}).")
        return labels.reshape(self.shape)


def masks_by_label(labels: np.ndarray) -> list[tuple[int, Mask]]:
    """labels: (D, H, W) non-negative integers -> (label, mask) for each label present, in label order."""
    from scipy import ndimage

    out = []
    for index, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is not None:
            mask = Mask.of(labels[where], index)
            out.append((index, Mask(tuple(s.start + o for s, o in zip(where, mask.origin)), mask.data)))
    return out


def open_case(entry: Entry, options: FileOptions, segmenter, window: tuple[float, float] | None = None) -> OpenCase:
    """Read `entry` and hold its pixels open on `segmenter`. window: the CT window to use instead of the
    options' (ignored for other modalities). Raises InputError for a file infer would refuse."""
    if entry.kind == "npz":
        case = load_case(entry.path, max_voxels=options.max_voxels)
        pixels = case.imgs
        session = segmenter.session(volume=pixels) if case.is_3d else segmenter.session(image=pixels)
        return OpenCase(entry, session, None, case.is_3d, None, case.boxes, None, case.spacing,
                        f"{entry.path.name}: challenge npz, intensities as they are")
    if entry.kind == "image":
        image = read_image_file(entry.path, options)
        boxes, box_note = _file_boxes(image, options)
        return OpenCase(entry, segmenter.session(image=image.pixels), image, False, None, boxes, box_note, None,
                        f"{entry.path.name}: 2D image")
    if entry.kind not in ("volume", "dicom"):
        raise InputError(f"{entry.path}: unsupported input.")
    volume = read_volume_file(entry.path, options)
    window = (window or options.window) if volume.modality == "ct" else None
    boxes, box_note = _file_boxes(volume, options)
    pixels = volume.pixels(window or options.window)
    session = segmenter.session(volume=pixels, max_cached_slices=min(_CACHED_SLICES, pixels.shape[0]))
    return OpenCase(entry, session, volume, True, window, boxes, box_note, volume.spacing,
                    volume.describe(window or options.window))


def _file_boxes(source, options: FileOptions) -> tuple[np.ndarray | None, str | None]:
    """The boxes of the case's box file (model frame), or None and why not (no file; or its error)."""
    try:
        find_box_file(source.path, options.boxes)
    except InputError:
        return None, "no box file"
    try:
        return source.boxes(options), None
    except InputError as e:
        return None, str(e)
