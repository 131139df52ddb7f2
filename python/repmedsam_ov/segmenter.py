"""`Segmenter`: Rep-MedSAM box-prompted segmentation of 2D images and 3D volumes, arrays in and out.

A thin layer over the C++ runtime (`_core.Segmenter`, OpenVINO): it validates inputs with the same rules as
the case loader (`io.validate_boxes`), so bad input is reported as `InputError` before it reaches C++, and
it converts results. Imports numpy, and `_core` (OpenVINO) only when a Segmenter is built; never torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .bundled import bundled_model_dir, resolve_model_dir
from .errors import InputError
from .io import Case, validate_boxes

__all__ = ["PRECISIONS", "Segmenter", "Trace", "bundled_model_dir", "resolve_model_dir"]

_MAX_BOXES = 65535  # labels are uint16 past 255 boxes
PRECISIONS = ("auto", "f32", "bf16", "bf16-encoder", "bf16-2d", "int8")


@dataclass(frozen=True)
class Trace:
    """What one call handed to the networks (for tests and benchmarks).

    decoder_boxes: per object (row of `boxes`), every model-space box `(x0, y0, x1, y1)` (ints, pixels of the
        256x256 model input) given to the decoder, in the reference's call order; 3D: the upward walk from the
        middle slice, then the downward walk.
    encoder_runs: images or slices encoded (re-encodes after cache eviction included).
    decoder_calls: decoder inferences (the boxes of one slice share calls, 2D and 3D).
    seconds: where the time went: "preprocess", "encoder", "prompt" (3D next-slice boxes), "decoder",
        "postprocess" (upsampling and painting masks) and "wait" (for a slice another thread is encoding, or
        for a free inference stream), each summed over worker threads (they overlap, so the sum may exceed
        "wall", the call's elapsed time).
    """

    decoder_boxes: list[list[tuple[int, int, int, int]]]
    encoder_runs: int
    decoder_calls: int
    seconds: dict[str, float] = field(default_factory=dict)

    def calls(self) -> list[list[int]]:
        """All decoder boxes in call order, flattened: the layout of the golden `trace/*.json` files."""
        return [list(box) for boxes in self.decoder_boxes for box in boxes]


class Segmenter:
    """Rep-MedSAM compiled once for this CPU; segment many images or volumes with box prompts.

    Args:
        model: model folder holding encoder.xml/.bin and decoder.xml/.bin (optionally encoder_int8.xml/.bin),
            as written by `repmedsam-ov export`; or the name of a model bundled with the package ("rep_medsam",
            "litemedsam"); None = the default bundled model, Rep-MedSAM (`resolve_model_dir`; `repmedsam-ov
            info` lists them).
        precision: "auto" (what the model folder records as measured fastest within its accuracy rule for this
            CPU class, see `repmedsam-ov info`; for folders without that record: bf16 on CPUs with native bf16,
            AMX or AVX512-BF16, else a recommended int8 encoder, else f32), "f32" (matches the PyTorch
            reference), "bf16", "bf16-encoder" (bf16 image encoder, f32 mask decoder), "bf16-2d" (bf16 for 2D
            images, 3D walks as bf16-encoder) or "int8" (int8 encoder, f32 decoder).
        threads: inference threads in total; None = all physical cores.
        streams: inferences run in parallel (threads are split between them); None = 1 up to two threads
            (measured fastest there: each network runs more efficiently on both threads), else 2 (3D sweeps and
            many-box images then decode side by side; a 2D image is encoded with all threads).
        cache_dir: OpenVINO compiled-model cache folder, so a second process starts fast; None = no cache.
        max_cached_slices: 3D embedding cache size in slices (4 MiB each). Evicted slices are encoded again
            when needed, with identical results; the default keeps a 300x512x512 volume under 2 GB.
        decoder_batch: most boxes per decoder call (2D boxes; 3D walk steps on the same slice). Memory grows with
            it (some 25 MB per box in flight at f32); results do not depend on it.

    Raises ModelError for an unusable model folder and InputError for bad options.

    Calls on one Segmenter serialise (one runs at a time, using all its threads); it may be shared between
    Python threads, and the GIL is released while C++ works. Results do not depend on thread count.
    """

    def __init__(self, model: str | os.PathLike | None = None, precision: str = "auto", threads: int | None = None,
                 *, streams: int | None = None, cache_dir: str | os.PathLike | None = None,
                 max_cached_slices: int = 256, decoder_batch: int = 8) -> None:
        if not isinstance(precision, str) or precision not in PRECISIONS:
            raise InputError(f"precision {precision!r} is not one of: {', '.join(PRECISIONS)}.")
        counts = {name: _count(name, value) for name, value in
                  (("threads", threads), ("streams", streams), ("max_cached_slices", max_cached_slices),
                   ("decoder_batch", decoder_batch))}
        model_dir = resolve_model_dir(model)
        from . import _core  # loads OpenVINO: only when a Segmenter is built, not on `import repmedsam_ov`

        self._core = _core.Segmenter(str(model_dir), precision=precision,
                                     cache_dir="" if cache_dir is None else str(cache_dir), **counts)
        self.model_dir = model_dir

    @property
    def info(self) -> dict[str, str]:
        """Model folder, resolved precision, threads, streams and the model's metadata (rt_info)."""
        return dict(self._core.describe())

    @property
    def precision(self) -> str:
        """The precision in use (one of PRECISIONS but "auto", which is resolved)."""
        return self._core.describe()["precision"]

    def network_seconds(self, repeats: int = 5) -> dict[str, float]:
        """The networks' own speed here: median seconds of one inference with all this Segmenter's threads on one
        stream, after a warm-up. Keys: "encoder" (one image or slice); per box, "decoder_2d" / "decoder_3d" (one
        box a call) and "decoder_2d_batched" / "decoder_3d_batched" (decoder_batch boxes a call). The floor of a
        case is its slices x encoder + its boxes x the faster per-box decoder time (`bench --profile`)."""
        return dict(self._core.time_networks(_count("repeats", repeats)))

    def segment_2d(self, image: np.ndarray, boxes: np.ndarray, *, return_trace: bool = False):
        """Segment one 2D image.

        Args:
            image: uint8 (H, W, 3) RGB or (H, W) grey, row-major pixels.
            boxes: (N, 4) `[x_min, y_min, x_max, y_max]` in pixels of `image` (x = column, y = row), integer or
                float, 0 <= min <= max <= W (or H).
        Returns:
            labels (H, W): 0 background, i + 1 where box i's mask is (later boxes overwrite earlier ones);
            uint8, or uint16 past 255 boxes. With return_trace, `(labels, Trace)`.
        """
        image = checked_image(image)
        labels, trace = self._core.segment_2d(np.ascontiguousarray(image), checked_boxes_2d(boxes, image.shape))
        return (labels, trace_of(trace)) if return_trace else labels

    def segment_3d(self, volume: np.ndarray, boxes: np.ndarray, *, return_trace: bool = False):
        """Segment one 3D volume slice by slice, propagating each object's mask from its middle slice.

        Args:
            volume: uint8 (D, H, W), slices along the first axis.
            boxes: (N, 6) `[x_min, y_min, z_min, x_max, y_max, z_max]`: x/y in pixels of a slice as in
                segment_2d (the object's box on its middle slice), z whole slice indices, z_max inclusive,
                0 <= z_min <= z_max < D.
        Returns:
            labels (D, H, W): 0 background, i + 1 for object i (later objects overwrite earlier ones); uint8,
            or uint16 past 255 boxes. With return_trace, `(labels, Trace)`.
        """
        volume = checked_volume(volume)
        labels, trace = self._core.segment_3d(np.ascontiguousarray(volume), checked_boxes_3d(boxes, volume.shape))
        return (labels, trace_of(trace)) if return_trace else labels

    def segment(self, case: Case, *, return_trace: bool = False):
        """Segment a validated case from `io.load_case`: 2D or 3D by the shape of its boxes."""
        method = self.segment_3d if case.is_3d else self.segment_2d
        return method(case.imgs, case.boxes, return_trace=return_trace)

    def session(self, *, image: np.ndarray | None = None, volume: np.ndarray | None = None,
                max_cached_slices: int = 64):
        """Hold one image or volume open for interactive use (SAM's `set_image`): a `Session` whose calls encode
        each slice once and then only run the decoder. Give `image` (as segment_2d) or `volume` (as
        segment_3d); the pixels are copied. max_cached_slices: embeddings kept (4 MiB each)."""
        from .session import Session

        return Session(self, image=image, volume=volume, max_cached_slices=max_cached_slices)


def _count(name: str, value) -> int:
    """A positive int option, or None for automatic (0 for C++)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer or None, got {value!r}.")
    return int(value)


def checked_image(image) -> np.ndarray:
    """`image` as segment_2d takes it (uint8 (H, W, 3) or (H, W)), else InputError."""
    image = _image(image, "image")
    if image.ndim == 3 and image.shape[2] != 3 or image.ndim not in (2, 3):
        raise InputError(f"image has shape {image.shape}, expected (H, W, 3) or (H, W) uint8.")
    return image


def checked_volume(volume) -> np.ndarray:
    """`volume` as segment_3d takes it (uint8 (D, H, W)), else InputError."""
    volume = _image(volume, "volume")
    if volume.ndim != 3:
        raise InputError(f"volume has shape {volume.shape}, expected (D, H, W) uint8.")
    return volume


def checked_boxes_2d(boxes, shape: tuple) -> np.ndarray:
    """Validated (N, 4) boxes for an image of `shape`, as C-contiguous float64 for `_core`."""
    boxes = _boxes(boxes, shape, 4, "segment_2d", "(N, 4) [x_min, y_min, x_max, y_max]")
    return np.ascontiguousarray(boxes, np.float64)


def checked_boxes_3d(boxes, shape: tuple) -> np.ndarray:
    """Validated (N, 6) boxes with whole z for a volume of `shape`, as C-contiguous float64 for `_core`."""
    boxes = _boxes(boxes, shape, 6, "segment_3d", "(N, 6) [x_min, y_min, z_min, x_max, y_max, z_max]")
    z = boxes[:, [2, 5]]
    bad = np.flatnonzero(np.any(z != np.floor(z), axis=1))
    if bad.size:
        raise InputError(f"boxes[{bad[0]}] = {boxes[bad[0]].tolist()}: z_min and z_max must be whole slice indices.")
    return np.ascontiguousarray(boxes, np.float64)


def _image(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise InputError(f"{name} has dtype {array.dtype}, expected uint8 (intensities 0..255).")
    if 0 in array.shape:
        raise InputError(f"{name} has shape {array.shape}: every dimension must be at least 1.")
    return array


def _boxes(boxes, shape: tuple, columns: int, method: str, layout: str) -> np.ndarray:
    boxes = np.asarray(boxes)
    if boxes.ndim == 2 and boxes.shape[1] in (4, 6) and boxes.shape[1] != columns:
        other = "segment_3d" if columns == 4 else "segment_2d"
        raise InputError(f"{method} takes boxes {layout}, got shape {boxes.shape}; use {other} for those.")
    boxes = validate_boxes(boxes, shape)
    if boxes.shape[0] > _MAX_BOXES:
        raise InputError(f"{boxes.shape[0]} boxes: at most {_MAX_BOXES} fit the uint16 label map.")
    return boxes


def trace_of(raw: dict) -> Trace:
    """The `Trace` of a `_core` call's trace dict."""
    return Trace(decoder_boxes=[[tuple(b) for b in obj] for obj in raw["decoder_boxes"]],
                 encoder_runs=int(raw["encoder_runs"]), decoder_calls=int(raw["decoder_calls"]),
                 seconds=dict(raw["seconds"]))
