"""The cases of a run and the per-case step, by `infer`'s rules: shared by `infer`, `cluster` (Ray actors) and
`serve`.

`plan_cases` turns INPUT paths and -o into the cases, their output paths and the per-file options;
`segment_case` runs one case through a `segment` callable (an `io.Case` -> labels) and never raises for the
case's own problems: it returns an `Outcome` with the one line `infer` reports. Format code lives in
`file_cases` (NIfTI/NRRD/MetaImage/DICOM/PNG...) and `io` (npz). Imports no model code, no Ray and never torch;
nothing here imports `commands` or `cluster`.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, ModelError, UsageError
from .io import load_case, save_segs

__all__ = ["KINDS", "LABEL_EXTS", "Outcome", "collect_cases", "collect_inputs", "file_options", "kind", "plan_cases",
           "segment_case", "targets"]

LABEL_EXTS = (".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".tif", ".tiff")
KINDS = "(.npz, .nii, .nii.gz, .nrrd, .mha, .mhd, DICOM series folders, .png, .jpg, .tif)"


def kind(path: Path) -> str:
    """"npz", "volume", "dicom", "image" or "unsupported" (a missing path counts as npz, to be reported)."""
    from .medical_io import kind_of

    return kind_of(path) or ("npz" if not path.exists() or path.suffix.lower() == ".npz" else "unsupported")


def collect_cases(inputs: list[str]) -> list[Path]:
    """npz cases: files as given, folders expanded to their *.npz files (sorted); missing paths are kept to be
    reported. (`bench` takes its cases this way.)"""
    cases = []
    for item in map(Path, inputs):
        cases.extend(sorted(item.glob("*.npz")) if item.is_dir() else [item])
    return cases


def collect_inputs(inputs: list[str]) -> list[Path]:
    """Files and DICOM series folders as given; other folders expanded to their supported files and DICOM
    series sub-folders (sorted); missing paths are kept to be reported."""
    from .medical_io import kind_of

    cases = []
    for item in map(Path, inputs):
        if item.is_dir() and kind_of(item) != "dicom":
            cases.extend(p for p in sorted(item.iterdir()) if kind_of(p) is not None)
        else:
            cases.append(item)
    return cases


def targets(cases: list[Path], output: Path) -> list[Path]:
    """Output path of each case: OUT/<name>.npz, OUT/<file name> for volumes (.mhd -> .mha: one file),
    OUT/<series>.mha for DICOM, OUT/<stem>.png for 2D images; or OUT itself for one volume or image when OUT names a label file."""
    from .medical_io import split_ext

    as_file = output.name.lower().endswith(LABEL_EXTS) and not output.is_dir()
    if as_file and len(cases) == 1 and kind(cases[0]) in ("volume", "dicom", "image"):
        return [output]
    if as_file and any(kind(c) != "npz" for c in cases):
        raise UsageError(f"-o {output} names a file but there are {len(cases)} inputs; give an output folder.")
    if output.exists() and not output.is_dir():
        raise InputError(f"{output}: exists and is not a folder (-o expects an output folder).")
    names = {"dicom": lambda p: p.name + ".mha", "image": lambda p: split_ext(p)[0] + ".png",
             "volume": lambda p: split_ext(p)[0] + ".mha" if split_ext(p)[1] == ".mhd" else p.name}
    paths = [output / names.get(kind(p), lambda p: p.name)(p) for p in cases]
    first: dict[Path, Path] = {}
    for path, target in zip(cases, paths):
        if first.setdefault(target, path) != path:  # one would overwrite, or be skipped for, the other
            raise UsageError(f"{first[target]} and {path} would both be written to {target}; "
                             "segment them into different output folders.")
    return paths


def file_options(n_cases: int, boxes=None, box_space=None, modality="auto", window="soft-tissue", overlay=None,
                 max_voxels=None):
    """`file_cases.FileOptions` from the CLI's values of those names (None = default). Raises UsageError."""
    from .file_cases import FileOptions
    from .intensity import parse_window
    from .limits import max_voxels as voxel_limit

    boxes = Path(boxes) if boxes else None
    if boxes is not None and not boxes.exists():
        raise UsageError(f"--boxes {boxes}: no such file or folder.")
    return FileOptions(boxes=boxes, box_space=box_space, shared_boxes=boxes is not None and boxes.is_file()
                       and n_cases > 1, modality=modality, window=parse_window(window),
                       overlay=Path(overlay) if overlay else None, max_voxels=voxel_limit(max_voxels))


def plan_cases(inputs: list[str], output, **options) -> tuple[list[Path], list[Path], object]:
    """The cases of one run, their output paths and the per-file options, by the rules of `infer`; options:
    boxes, box_space, modality, window, overlay and max_voxels, as the CLI options of those names (None =
    default). Raises InputError or UsageError."""
    cases = collect_inputs(inputs)
    if not cases:
        raise InputError(f"{', '.join(map(str, inputs))}: no cases found {KINDS}.")
    paths = targets(cases, Path(output))
    return cases, paths, file_options(len(cases), **options)


def _segment_one(path: Path, target: Path, segment, options) -> int:
    if path.resolve() == target.resolve():
        raise InputError(f"{path}: the output would replace the input; choose another -o.")
    found = kind(path)
    if found == "npz":
        case = load_case(path, max_voxels=options.max_voxels)
        segs = segment(case)
        save_segs(target, segs)
        if options.overlay is not None:
            from .overlay import write_overlays
            write_overlays(options.overlay, path.stem, case.imgs, segs, case.boxes)
        return len(case.boxes)
    if found == "unsupported":
        raise InputError(f"{path}: unsupported input; expected {KINDS}.")
    from .file_cases import segment_image_file, segment_volume_file

    process = segment_image_file if found == "image" else segment_volume_file
    return process(path, target, segment, options)


@dataclass(frozen=True)
class Outcome:
    """What became of one case. status: "done" (boxes segmented, seconds taken; message set only when an earlier
    attempt of the same run wrote it), "skipped" (target exists, no --overwrite) or "failed" (message: the one
    line reported; details: the traceback, shown with -v). Paths as given, as strings (Ray passes rows)."""

    path: str
    target: str
    status: str
    boxes: int = 0
    seconds: float = 0.0
    message: str = ""
    details: str = ""


def segment_case(path: Path, target: Path, segment, options, overwrite: bool = False) -> Outcome:
    """One case through `segment`, never raising for the case's own problems: any error becomes a failed
    Outcome whose message is the line `infer` reports. The per-case step of `infer` and of its Ray actors."""
    if target.exists() and not overwrite:
        return Outcome(str(path), str(target), "skipped")
    start = time.perf_counter()
    try:
        n_boxes = _segment_one(path, target, segment, options)
    except Exception as e:  # one bad case never stops the others
        message = str(e) if isinstance(e, (InputError, ModelError)) else f"{path}: {type(e).__name__}: {e}"
        return Outcome(str(path), str(target), "failed", message=message, details=traceback.format_exc())
    return Outcome(str(path), str(target), "done", boxes=n_boxes, seconds=time.perf_counter() - start)
