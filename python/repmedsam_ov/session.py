"""`Session`: one image or volume held open on a `Segmenter` for interactive segmentation, and `Progress`.

A session owns a copy of the pixels and a C++ embedding store (`_core.EmbeddingStore`): the first call that
needs a slice encodes it, later calls on that slice only run the decoder. Results are those of
`Segmenter.segment_2d` / `segment_3d` for the same boxes, since the same C++ loops run; only the encoder runs
are saved. A `Progress` lets another thread follow a call (decoder steps done) and cancel it. Imports numpy;
`_core` is already loaded by the Segmenter. Never torch.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .segmenter import (Segmenter, checked_boxes_2d, checked_boxes_3d, checked_image, checked_volume, trace_of)

__all__ = ["Progress", "Session"]


class Progress:
    """Progress of one `Session.segment` call, for other threads: `steps` counts the decoder runs done (2D: boxes;
    3D: slices of all walks, z_max - z_min + 1 per box); `cancel()` stops the call before its next step, and the
    call raises `Cancelled`. A Progress cancelled before its call starts stops it at once. One per call."""

    def __init__(self) -> None:
        from . import _core

        self._native = _core.Progress()

    @property
    def steps(self) -> int:
        return self._native.steps

    @property
    def cancelled(self) -> bool:
        return self._native.cancelled

    def cancel(self) -> None:
        self._native.cancel()


class Session:
    """An image or volume open on a Segmenter (from `Segmenter.session`); segment it with box prompts again and
    again, each slice encoded once.

    Args:
        segmenter: the compiled model; the session's calls queue with its other calls.
        image: uint8 (H, W, 3) RGB or (H, W) grey, as `Segmenter.segment_2d` takes it; or
        volume: uint8 (D, H, W), as `Segmenter.segment_3d` takes it. Exactly one; the pixels are copied.
        max_cached_slices: embeddings kept (4 MiB each); the least recently used is encoded again when needed.

    Thread-safe: calls from several threads queue on the Segmenter. Raises InputError for bad pixels.
    """

    def __init__(self, segmenter: Segmenter, *, image: np.ndarray | None = None, volume: np.ndarray | None = None,
                 max_cached_slices: int = 64) -> None:
        if (image is None) == (volume is None):
            raise InputError("give a session either image=... (2D) or volume=... (3D).")
        if isinstance(max_cached_slices, bool) or not isinstance(max_cached_slices, (int, np.integer)) or \
                max_cached_slices < 1:
            raise InputError(f"max_cached_slices must be a positive integer, got {max_cached_slices!r}.")
        pixels = checked_volume(volume) if image is None else checked_image(image)
        self.is_3d = image is None
        self.pixels = np.array(pixels, np.uint8, order="C")  # our copy: the store's embeddings describe it
        self.pixels.setflags(write=False)
        self._segmenter = segmenter
        from . import _core

        self._store = _core.EmbeddingStore(int(max_cached_slices))

    @property
    def encoded(self) -> int:
        """Slices (or the image) encoded so far by this session's calls, re-encodes after eviction included."""
        return self._store.encoded

    def segment(self, boxes: np.ndarray, *, progress: Progress | None = None, return_trace: bool = False):
        """Segment the session's pixels with `boxes`: (N, 4) `[x_min, y_min, x_max, y_max]` pixels for an image,
        (N, 6) `[x_min, y_min, z_min, x_max, y_max, z_max]` (z_max inclusive) for a volume, as segment_2d and
        segment_3d take them; a 3D box with z_min = z_max segments that one slice.

        Returns labels of the pixels' size without channels: 0 background, i + 1 for box i (later boxes
        overwrite earlier ones); uint8, or uint16 past 255 boxes. With return_trace, `(labels, Trace)`; its
        encoder_runs counts only this call's encodings. Raises InputError for bad boxes and `Cancelled` when
        `progress` was cancelled."""
        core = self._segmenter._core
        native = None if progress is None else progress._native
        if self.is_3d:
            boxes = checked_boxes_3d(boxes, self.pixels.shape)
            labels, trace = core.segment_3d(self.pixels, boxes, store=self._store, progress=native)
        else:
            boxes = checked_boxes_2d(boxes, self.pixels.shape)
            labels, trace = core.segment_2d(self.pixels, boxes, store=self._store, progress=native)
        return (labels, trace_of(trace)) if return_trace else labels
