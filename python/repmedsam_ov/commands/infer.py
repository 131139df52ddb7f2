"""`repmedsam-ov infer`: segment npz cases, NIfTI/NRRD/MetaImage volumes, DICOM series and 2D images with the
C++ runtime or the torch reference.

Each case is validated before any model work; a bad case is reported in one line and skipped, the others
are still processed (in parallel with --workers). Outputs are written atomically, so an interrupted run never
leaves a truncated file. Format code lives in `file_cases` and the modules it uses.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import CommandFailed, InputError, ModelError, UsageError
from ..io import load_case, save_segs
from ._args import positive_int

log = logging.getLogger("repmedsam_ov")

_LABEL_EXTS = (".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".tif", ".tiff")
_KINDS = "(.npz, .nii, .nii.gz, .nrrd, .mha, .mhd, DICOM series folders, .png, .jpg, .tif)"


def register(sub) -> None:
    p = sub.add_parser("infer", help="segment npz cases, medical volumes (NIfTI, NRRD, MHA, DICOM) and 2D images",
                       description="Segment challenge npz cases (-> OUTDIR/<name>.npz with key 'segs'), volumes and "
                                   "DICOM series (-> a label volume in the input's geometry) and 2D images "
                                   "(-> a label PNG), prompted by boxes.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="a case or image file, a DICOM series folder, or a folder of them")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output folder, or for one volume or image an output file (.nii.gz, .nii, .nrrd, .mha, .png, .tif)")
    p.add_argument("--backend", choices=("runtime", "torch"), default="runtime",
                   help="runtime: the C++ OpenVINO runtime (default); torch: the PyTorch reference")
    p.add_argument("-m", "--model", metavar="MODEL_DIR",
                   help="exported model folder (runtime backend; default: the model bundled with the package, if "
                        "this build has one: see `repmedsam-ov info`)")
    p.add_argument("--checkpoint", metavar="CKPT", help="Rep-MedSAM .pth checkpoint (torch backend)")
    p.add_argument("--precision", choices=("auto", "f32", "bf16", "int8"), default="auto", help="runtime precision")
    p.add_argument("-t", "--threads", type=positive_int, metavar="N", help="inference threads (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    p.add_argument("-b", "--boxes", metavar="FILE|DIR",
                   help="box file (.json or .csv) or a folder of <name>.boxes.json|csv (default: beside each image)")
    p.add_argument("--box-space", choices=("voxel", "world"),
                   help="box coordinates: voxel indices (default) or world millimetres (LPS, as ITK reads the file)")
    p.add_argument("--modality", choices=("auto", "ct", "mr", "pet", "other", "none"), default="auto",
                   help="volume intensities: ct = window, mr/pet/other = 0.5-99.5 percentiles, none = already uint8 "
                        "0..255 (default auto: DICOM Modality, else uint8 -> none, HU-like -> ct, else other)")
    p.add_argument("--window", default="soft-tissue", metavar="NAME|W,L",
                   help="CT window: soft-tissue (400,40; default), lung (1500,-600), bone (1800,400) or WIDTH,LEVEL in HU")
    p.add_argument("--overlay", metavar="DIR", help="also write PNG overlays (image, masks, boxes) to DIR")
    p.add_argument("--max-voxels", type=positive_int, metavar="N",
                   help="refuse inputs declaring more than N values (voxels x channels), before reading them "
                        "(default: $REPMEDSAM_MAX_VOXELS, else 2**28 = 268435456, a 512x512x1024 CT)")
    p.add_argument("-j", "--workers", type=positive_int, default=1, metavar="N",
                   help="cases processed in parallel (default 1)")
    p.set_defaults(func=run)


def _kind(path: Path) -> str:
    from ..medical_io import kind_of

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
    from ..medical_io import kind_of

    cases = []
    for item in map(Path, inputs):
        if item.is_dir() and kind_of(item) != "dicom":
            cases.extend(p for p in sorted(item.iterdir()) if kind_of(p) is not None)
        else:
            cases.append(item)
    return cases


def make_backend(args):
    """A callable case -> segs for the chosen backend; raises ModelError with what to install or pass."""
    from ..engines import make_engine

    if args.backend == "torch" and not args.checkpoint:
        raise UsageError("--backend torch needs --checkpoint CKPT.pth (an official or trained Rep-MedSAM checkpoint).")
    name = "torch" if args.backend == "torch" else f"runtime-{args.precision}"
    return make_engine(name, args.model and Path(args.model), args.checkpoint, args.threads)


def _serialised(segment):
    lock = threading.Lock()

    def call(case):
        with lock:
            return segment(case)
    return call


def _targets(cases: list[Path], output: Path) -> list[Path]:
    """Output path of each case: OUT/<name>.npz, OUT/<file name> for volumes (.mhd -> .mha: one file),
    OUT/<series>.mha for DICOM, OUT/<stem>.png for 2D images; or OUT itself for one volume or image when OUT names a label file."""
    from ..medical_io import split_ext

    as_file = output.name.lower().endswith(_LABEL_EXTS) and not output.is_dir()
    if as_file and len(cases) == 1 and _kind(cases[0]) in ("volume", "dicom", "image"):
        return [output]
    if as_file and any(_kind(c) != "npz" for c in cases):
        raise UsageError(f"-o {output} names a file but there are {len(cases)} inputs; give an output folder.")
    if output.exists() and not output.is_dir():
        raise InputError(f"{output}: exists and is not a folder (-o expects an output folder).")
    names = {"dicom": lambda p: p.name + ".mha", "image": lambda p: split_ext(p)[0] + ".png",
             "volume": lambda p: split_ext(p)[0] + ".mha" if split_ext(p)[1] == ".mhd" else p.name}
    targets = [output / names.get(_kind(p), lambda p: p.name)(p) for p in cases]
    first: dict[Path, Path] = {}
    for path, target in zip(cases, targets):
        if first.setdefault(target, path) != path:  # one would overwrite, or be skipped for, the other
            raise UsageError(f"{first[target]} and {path} would both be written to {target}; "
                             "segment them into different output folders.")
    return targets


def _options(args, n_cases: int):
    from ..file_cases import FileOptions
    from ..intensity import parse_window
    from ..limits import max_voxels

    boxes = Path(args.boxes) if args.boxes else None
    if boxes is not None and not boxes.exists():
        raise UsageError(f"--boxes {boxes}: no such file or folder.")
    return FileOptions(boxes=boxes, box_space=args.box_space, shared_boxes=boxes is not None and boxes.is_file()
                       and n_cases > 1, modality=args.modality, window=parse_window(args.window),
                       overlay=Path(args.overlay) if args.overlay else None, max_voxels=max_voxels(args.max_voxels))


def _segment_one(path: Path, target: Path, segment, options) -> int:
    if path.resolve() == target.resolve():
        raise InputError(f"{path}: the output would replace the input; choose another -o.")
    kind = _kind(path)
    if kind == "npz":
        case = load_case(path, max_voxels=options.max_voxels)
        segs = segment(case)
        save_segs(target, segs)
        if options.overlay is not None:
            from ..overlay import write_overlays
            write_overlays(options.overlay, path.stem, case.imgs, segs, case.boxes)
        return len(case.boxes)
    if kind == "unsupported":
        raise InputError(f"{path}: unsupported input; expected {_KINDS}.")
    from ..file_cases import segment_image_file, segment_volume_file

    process = segment_image_file if kind == "image" else segment_volume_file
    return process(path, target, segment, options)


def run(args) -> int:
    cases = collect_inputs(args.inputs)
    if not cases:
        raise InputError(f"{', '.join(args.inputs)}: no cases found {_KINDS}.")
    targets = _targets(cases, Path(args.output))
    options = _options(args, len(cases))
    workers = min(args.workers, len(cases))
    # One backend shared by the workers: the runtime serialises its calls and releases the GIL, so workers
    # overlap reading, preprocessing and writing with inference (faster on 2 cores than one Segmenter per
    # worker with half the threads each; see README). The torch reference is serialised with a lock.
    segment = make_backend(args)
    if workers > 1 and args.backend == "torch":
        segment = _serialised(segment)
    counts = {"done": 0, "skipped": 0}
    failed: list[str] = []
    lock = threading.Lock()

    def one(path: Path, target: Path) -> None:
        if target.exists() and not args.overwrite:
            with lock:
                counts["skipped"] += 1
                n = sum(counts.values()) + len(failed)
            log.info("[%d/%d] %s: skipped, %s exists (use --overwrite)", n, len(cases), path.name, target)
            return
        start = time.perf_counter()
        try:
            n_boxes = _segment_one(path, target, segment, options)
        except Exception as e:  # one bad case never stops the others
            message = str(e) if isinstance(e, (InputError, ModelError)) else f"{path}: {type(e).__name__}: {e}"
            with lock:
                failed.append(message)
            log.error("repmedsam-ov: error: %s", message)
            if args.verbose:
                log.exception("details")
            return
        with lock:
            counts["done"] += 1
            n = sum(counts.values()) + len(failed)
        log.info("[%d/%d] %s: %d box%s, %.1f s -> %s", n, len(cases), path.name, n_boxes,
                 "" if n_boxes == 1 else "es", time.perf_counter() - start, target)

    if workers == 1:
        for path, target in zip(cases, targets):
            one(path, target)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="infer") as executor:
            list(executor.map(one, cases, targets))
    if len(cases) > 1 or failed:
        log.warning("%d done, %d skipped, %d failed", counts["done"], counts["skipped"], len(failed))
        if len(cases) > 1:
            for message in failed:
                log.warning("  failed: %s", message)
    if failed:
        raise CommandFailed(1)
    return 0
