"""One medical file through the model: read, find its boxes, preprocess, reorient, segment, write back.

`segment_volume_file` (NIfTI/NRRD/MetaImage/DICOM series) and `segment_image_file` (PNG/JPEG/TIFF) take a
`segment` callable (a validated `io.Case` -> labels, any backend) and write the label map atomically in the
input's geometry; nothing is written when anything fails. Their steps (`read_volume_file`/`read_image_file`,
then `.boxes`, `.pixels` and `.write`) are public for `serve`, which segments interactively between them. Imports numpy (SimpleITK and OpenCV through
medical_io); never torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .boxes_file import BoxSpec, find_box_file, load_boxes
from .errors import InputError
from .intensity import choose_modality, to_model_image, to_model_volume
from .io import Case, validate_boxes
from .medical_io import Volume, read_image_2d, read_volume, split_ext, write_labels_2d, write_labels_3d
from .orientation import Orientation
from .overlay import write_overlays

__all__ = ["FileOptions", "ImageFile", "VolumeFile", "read_image_file", "read_volume_file", "segment_image_file",
           "segment_volume_file"]

log = logging.getLogger("repmedsam_ov")


@dataclass(frozen=True)
class FileOptions:
    """boxes: --boxes (a file, a folder of `<stem>.boxes.json|csv`, or None: beside the image); box_space:
    'voxel', 'world' or None (the box file's "space", else voxel); shared_boxes: one box file serves several
    inputs, so it must name its image; modality and window (width, level) HU: intensity preprocessing;
    overlay: folder for PNG overlays or None; max_voxels: the largest input (values) to read, None =
    `limits.max_voxels()`."""

    boxes: Path | None = None
    box_space: str | None = None
    shared_boxes: bool = False
    modality: str = "auto"
    window: tuple[float, float] = (400.0, 40.0)
    overlay: Path | None = None
    max_voxels: int | None = None


def _boxes_for(image: Path, columns: int, options: FileOptions) -> BoxSpec:
    spec = load_boxes(find_box_file(image, options.boxes), image, columns)
    if options.shared_boxes and not spec.names_image:
        raise InputError(f"{spec.path}: serves several inputs but does not say which image it is for; give it an "
                         "\"image\" entry (JSON) or an image column (CSV), or one box file per image.")
    return spec


def _checked(spec: BoxSpec, boxes: np.ndarray, shape: tuple, image: Path) -> np.ndarray:
    try:
        return validate_boxes(boxes, shape, where=f"{spec.path}: ")
    except InputError as e:
        raise InputError(f"{e} Is {spec.path.name} the box file for {image.name}?") from None


def _space(spec: BoxSpec, options: FileOptions) -> str:
    if options.box_space and spec.space and options.box_space != spec.space:
        raise InputError(f"{spec.path}: says \"space\": \"{spec.space}\" but --box-space {options.box_space} was given.")
    return options.box_space or spec.space or "voxel"


@dataclass(frozen=True)
class ImageFile:
    """A 2D image file read for the model. pixels: uint8 (H, W, 3) RGB (grey replicated to 3 channels, as the
    reference does; 16-bit or float images percentile-scaled)."""

    path: Path
    pixels: np.ndarray

    def boxes(self, options: FileOptions) -> np.ndarray:
        """The image's boxes from its box file, validated: (N, 4) `[x_min, y_min, x_max, y_max]` pixels."""
        spec = _boxes_for(self.path, 4, options)
        if _space(spec, options) == "world":
            raise InputError(f"{spec.path}: world (mm) boxes need a volume with a geometry; 2D boxes are pixels.")
        h, w = self.pixels.shape[:2]
        if spec.size is not None and tuple(spec.size) != (w, h):
            raise InputError(f"{spec.path}: boxes were drawn on a {list(spec.size)} image but {self.path.name} is "
                             f"[{w}, {h}] (W, H): is this the box file for another image?")
        return _checked(spec, spec.boxes, self.pixels.shape, self.path)

    def write(self, target: Path, labels: np.ndarray) -> None:
        """labels: (H, W) uint8/uint16 -> a label PNG/TIFF at `target`, atomically."""
        write_labels_2d(target, labels)


def read_image_file(path: Path, options: FileOptions) -> ImageFile:
    """A PNG/JPEG/TIFF image made ready for the model. Raises InputError."""
    pixels = to_model_image(read_image_2d(path, options.max_voxels))
    if pixels.ndim == 2:  # grey is replicated to 3 channels, as the reference does
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return ImageFile(path, pixels)


@dataclass(frozen=True)
class VolumeFile:
    """A volume file or DICOM series read for the model: the raw `volume` (file order, any dtype), how its axes
    go to the model's axial frame, and the modality chosen for its intensities (and why, for the log)."""

    path: Path
    volume: Volume
    orientation: Orientation
    modality: str
    why: str

    def boxes(self, options: FileOptions) -> np.ndarray:
        """The volume's boxes from its box file, validated, in the model frame: (N, 6) `[x_min, y_min, z_min,
        x_max, y_max, z_max]` voxels, z_max inclusive."""
        g = self.volume.geometry
        spec = _boxes_for(self.path, 6, options)
        if spec.size is not None and tuple(spec.size) != tuple(g.size):
            raise InputError(f"{spec.path}: boxes were drawn on a {list(spec.size)} volume but {self.path.name} is "
                             f"{list(g.size)} (i, j, k): is this the box file for another image?")
        boxes = spec.boxes
        if _space(spec, options) == "world":
            boxes = g.world_boxes_to_index(boxes)
        return self.orientation.boxes_to_model(_checked(spec, boxes, self.volume.array.shape, self.path))

    def pixels(self, window: tuple[float, float]) -> np.ndarray:
        """uint8 (D, H, W) model intensities in the model frame; `window` (width, level) HU applies to CT."""
        return self.orientation.to_model(to_model_volume(self.volume.array, self.modality, window))

    def describe(self, window: tuple[float, float]) -> str:
        """What was done to the intensities and axes, for the log."""
        how = {"ct": "CT window %g,%g HU" % window, "none": "intensities as they are"}.get(
            self.modality, f"{self.modality.upper()}: 0.5-99.5 percentile scaling")
        moved = "" if self.orientation.is_identity else f"; axes reoriented to axial ({_axes_text(self.orientation)})"
        return f"{self.path.name}: {how} ({self.why}){moved}"

    @property
    def spacing(self) -> np.ndarray:
        """(3,) float64 millimetres of the model frame's (D, H, W) axes."""
        spacing = [0.0, 0.0, 0.0]
        for a, w in enumerate(self.orientation.world_axis):
            spacing[2 - w] = self.volume.geometry.spacing[a]
        return np.array(spacing)

    def write(self, target: Path, labels: np.ndarray) -> None:
        """labels: (D, H, W) uint8/uint16 in the model frame -> a label volume at `target` in the input's exact
        geometry, atomically."""
        write_labels_3d(target, self.orientation.to_file(labels), self.volume)


def read_volume_file(path: Path, options: FileOptions) -> VolumeFile:
    """A volume file or DICOM series folder made ready for the model. Raises InputError."""
    volume = read_volume(path, options.max_voxels)
    g = volume.geometry
    modality, why = choose_modality(options.modality, volume.array, volume.modality)
    return VolumeFile(path, volume, Orientation.from_direction(g.direction, g.size), modality, why)


def segment_image_file(path: Path, target: Path, segment, options: FileOptions) -> int:
    """A 2D image -> label PNG/TIFF (H, W) at `target`. Returns the number of boxes."""
    image = read_image_file(path, options)
    boxes = image.boxes(options)
    labels = segment(Case(path=path, imgs=image.pixels, boxes=boxes, spacing=None))
    image.write(target, labels)
    if options.overlay is not None:
        write_overlays(options.overlay, split_ext(path)[0], image.pixels, labels, boxes)
    return len(boxes)


def segment_volume_file(path: Path, target: Path, segment, options: FileOptions) -> int:
    """A volume file or DICOM series folder -> a label volume at `target` in its exact geometry. Returns the
    number of boxes."""
    opened = read_volume_file(path, options)
    model_boxes = opened.boxes(options)
    log.info("%s", opened.describe(options.window))
    pixels = opened.pixels(options.window)
    labels = segment(Case(path=path, imgs=pixels, boxes=model_boxes, spacing=opened.spacing))
    opened.write(target, labels)
    if options.overlay is not None:
        stem = path.name if path.is_dir() else split_ext(path)[0]
        write_overlays(options.overlay, stem, pixels, labels, model_boxes)
    return len(model_boxes)


def _axes_text(orientation: Orientation) -> str:
    names = ("LR", "PA", "SI")
    return ", ".join(f"{'ijk'[a]}->{'-' if orientation.flip[a] else '+'}{names[w][0]}"
                     for a, w in enumerate(orientation.world_axis))
