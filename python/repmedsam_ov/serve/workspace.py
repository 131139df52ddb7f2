"""The state of a `serve` process: the case library, the cases open now (a few, most recent first), each case's
objects, and the work on them — segmenting a box, walking a box through a slice range, the box file's boxes,
saving and loading label files.

Model work runs as `Engine` jobs (one at a time, off the request threads), keyed by case and object so that a
newer box for an object supersedes an older one. A job applies its result to the case's `Annotation` only if
the object still exists. Imports numpy and the runtime; never Starlette, never torch.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from ..errors import InputError, UsageError
from ..file_cases import FileOptions
from ..intensity import parse_window
from ..io import validate_boxes
from .annotation import Annotation, Mask, Obj
from .engine import Engine, Job
from .library import Library, NotFound
from .opened import OpenCase, masks_by_label, open_case

__all__ = ["Workspace"]

_MAX_OPEN = 2  # cases whose pixels and embeddings stay in memory


class Workspace:
    """The cases of `library`, segmented by `segmenter` (one per process) through `engine`."""

    def __init__(self, library: Library, segmenter, options: FileOptions, engine: Engine) -> None:
        self.library, self.segmenter, self.options, self.engine = library, segmenter, options, engine
        self._open: OrderedDict[str, OpenCase] = OrderedDict()
        self._annotations: dict[str, Annotation] = {}
        self._windows: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    # --- cases -------------------------------------------------------------------------------------------

    def open(self, case_id: str) -> OpenCase:
        """The case, read on first use (and again after it made room for others). Blocks while reading."""
        entry = self.library.get(case_id)
        with self._lock:
            loading = self._loading.setdefault(entry.id, threading.Lock())
        with loading:  # one reader per case; others wait for its result
            with self._lock:
                if entry.id in self._open:
                    self._open.move_to_end(entry.id)
                    return self._open[entry.id]
            case = open_case(entry, self.options, self.segmenter, self._windows.get(entry.id))
            with self._lock:
                self._open[entry.id] = case
                while len(self._open) > _MAX_OPEN:
                    self._open.popitem(last=False)
                if entry.id not in self._annotations:
                    self._annotations[entry.id] = Annotation(case.shape)
            return case

    def annotation(self, case_id: str) -> Annotation:
        """The case's objects (kept while the process runs, also when its pixels made room for others)."""
        with self._lock:
            found = self._annotations.get(case_id)
        if found is None:
            self.open(case_id)
            found = self._annotations[case_id]
        return found

    def set_window(self, case_id: str, text: str) -> OpenCase:
        """Re-prepare a CT volume's pixels with another window (a name or "W,L"); its objects stay."""
        case = self.open(case_id)
        if case.window is None:
            raise InputError(f"{case.entry.name}: not a CT volume; its window cannot be changed.")
        try:
            window = parse_window(text)
        except UsageError as e:
            raise InputError(str(e).replace("--window ", "window ")) from None
        with self._lock:
            self._windows[case_id] = window
            self._open.pop(case_id, None)
        return self.open(case_id)

    # --- model work ---------------------------------------------------------------------------------------

    def segment_object(self, case_id: str, obj_id: int | None, box, z: int | None, label: int | None = None) -> Job:
        """A box drawn on one slice (z for a volume) for a new object (obj_id None) or to redraw one. The job's
        result is the object (`Obj`)."""
        case, annotation = self.open(case_id), self.annotation(case_id)
        box = _plain_box(box, 4)
        if case.is_3d:
            z = _slice(z, case.shape[0])
            box = [box[0], box[1], z, box[2], box[3], z]
        validate_boxes(np.array([box]), case.shape if case.is_3d else case.shape[1:])
        with annotation.lock:
            if obj_id is None:
                obj = annotation.add(label=label, box=None)
                obj_id = obj.id
            else:
                self.find_object(annotation, obj_id)
        return self._submit(case, annotation, obj_id, box, steps=1)

    def walk_object(self, case_id: str, obj_id: int, z_min: int, z_max: int) -> Job:
        """Propagate an object's box through slices z_min..z_max (inclusive), as infer's 3D walk does with
        box [x_min, y_min, z_min, x_max, y_max, z_max]."""
        case, annotation = self.open(case_id), self.annotation(case_id)
        if not case.is_3d:
            raise InputError(f"{case.entry.name}: a 2D image has no slices to walk through.")
        obj = self.find_object(annotation, obj_id)
        if obj.box is None:
            raise InputError(f"object {obj_id}: has no box (loaded from a label file); draw one first.")
        z_min, z_max = _slice(z_min, case.shape[0]), _slice(z_max, case.shape[0])
        if z_max < z_min:
            raise InputError(f"slice range {z_min}..{z_max}: the first slice is after the last.")
        box = [obj.box[0], obj.box[1], z_min, obj.box[3], obj.box[4], z_max]
        return self._submit(case, annotation, obj_id, box, steps=z_max - z_min + 1)

    def _submit(self, case: OpenCase, annotation: Annotation, obj_id: int, box: list, steps: int) -> Job:
        def run(progress) -> Obj:
            labels = case.session.segment(np.array([box]), progress=progress)
            mask = _mask(labels, box, case.is_3d)
            with annotation.lock:
                self.find_object(annotation, obj_id)  # deleted meanwhile: the result has nowhere to go
                return annotation.update(obj_id, box=box, mask=mask)

        return self.engine.submit(run, key=(case.entry.id, obj_id), total=steps)

    def run_file_boxes(self, case_id: str) -> Job:
        """The case's box file (npz: its boxes) as objects labelled 1..N, each segmented as infer does: the
        current objects are replaced (one undo step). The job's result is the list of objects."""
        case, annotation = self.open(case_id), self.annotation(case_id)
        if case.file_boxes is None:
            raise InputError(f"{case.entry.name}: {case.box_note or 'no box file'}.")
        boxes = case.file_boxes
        steps = int(np.sum(boxes[:, 5] - boxes[:, 2] + 1)) if case.is_3d else len(boxes)

        def run(progress) -> list[Obj]:
            masks = [_mask(case.session.segment(box[None], progress=progress), box, case.is_3d) for box in boxes]
            with annotation.lock:
                annotation.replace_all([(i + 1, box.tolist(), m) for i, (box, m) in enumerate(zip(boxes, masks))])
                return list(annotation.objects)

        return self.engine.submit(run, key=(case.entry.id, "file-boxes"), total=steps)

    # --- label files --------------------------------------------------------------------------------------

    def save(self, case_id: str) -> str:
        """Write the label map to the case's output file (atomically); returns its path."""
        case, annotation = self.open(case_id), self.annotation(case_id)
        target = self.library.writable_target(case.entry)
        with annotation.lock:
            if not annotation.objects:
                raise InputError(f"{case.entry.name}: nothing to save yet; draw a box first.")
            labels = annotation.labels()
        case.write(target, labels)
        return str(target)

    def load(self, case_id: str) -> list[Obj]:
        """Replace the objects by those of the case's saved label file (one per label)."""
        case, annotation = self.open(case_id), self.annotation(case_id)
        labels = case.read_labels(self.library.readable_target(case.entry), self.options.max_voxels)
        found = masks_by_label(labels)
        with annotation.lock:
            annotation.replace_all([(label, None, mask) for label, mask in found])
            return list(annotation.objects)

    @staticmethod
    def find_object(annotation: Annotation, obj_id: int) -> Obj:
        """The object (call with the annotation's lock held); NotFound when it is gone."""
        try:
            return annotation.find(obj_id)
        except KeyError:
            raise NotFound(f"no object {obj_id} (deleted?)") from None


def _mask(labels: np.ndarray, box, is_3d: bool) -> Mask | None:
    """The mask of label 1 in a one-box result, cropped; only the box's slices are looked at."""
    if not is_3d:
        return Mask.of(labels[None], 1)
    z0, z1 = int(box[2]), int(box[5])
    mask = Mask.of(labels[z0:z1 + 1], 1)
    return None if mask is None else Mask((mask.origin[0] + z0, *mask.origin[1:]), mask.data)


def _plain_box(box, n: int) -> list[float]:
    """A box from a client: n finite numbers (whole numbers stay ints); else InputError."""
    if not isinstance(box, list) or len(box) != n or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in box):
        raise InputError(f"box {box!r}: expected {n} numbers [x_min, y_min, x_max, y_max] in pixels.")
    return [int(v) if float(v).is_integer() else float(v) for v in box]


def _slice(z, depth: int) -> int:
    if isinstance(z, bool) or not isinstance(z, int) or not 0 <= z < depth:
        raise InputError(f"slice {z!r}: expected a whole number from 0 to {depth - 1}.")
    return z
