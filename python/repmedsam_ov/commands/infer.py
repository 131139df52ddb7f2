"""`repmedsam-ov infer`: segment npz cases, NIfTI/NRRD/MetaImage volumes, DICOM series and 2D images with the
C++ runtime or the torch reference.

Each case is validated before any model work; a bad case is reported in one line and skipped, the others
are still processed (in parallel with --workers). Outputs are written atomically, so an interrupted run never
leaves a truncated file. The cases and the per-case step (`plan_cases`, `segment_case`) live in the library
module `cases`, shared with `cluster` and `serve`; format code lives in `file_cases`. With --ray the same cases
go to Ray actors (`cluster`) and come back to the same report (`Tally`); Ray is imported only then.
"""

from __future__ import annotations

import argparse
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..cases import Outcome, plan_cases, segment_case
from ..errors import CommandFailed, UsageError
from ..segmenter import PRECISIONS
from ._args import positive_int

log = logging.getLogger("repmedsam_ov")


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
    p.add_argument("-m", "--model", metavar="MODEL",
                   help="a bundled model's name (rep_medsam, the default; litemedsam) or an exported model folder "
                        "(`repmedsam-ov info` lists the bundled ones)")
    p.add_argument("--checkpoint", metavar="CKPT",
                   help="Rep-MedSAM .pth checkpoint (torch backend; default: the bundled model's own, from a source checkout)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="runtime precision (auto: per model and CPU, see `repmedsam-ov info`)")
    p.add_argument("-t", "--threads", type=positive_int, metavar="N", help="inference threads (default: all cores)")
    p.add_argument("--cache-dir", metavar="DIR|none",
                   help="OpenVINO compiled-model cache, so the next run starts fast (default: "
                        "$REPMEDSAM_COMPILE_CACHE, else ~/.cache/repmedsam-ov/openvino; none = off)")
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
    p.add_argument("-j", "--workers", type=positive_int, metavar="N",
                   help="cases processed in parallel (default 1; without --ray)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="segment on a Ray cluster (the [cluster] extra): alone, start or join a local Ray instance; "
                        "'auto' or ray://HOST:10001, an existing cluster. Inputs and OUT must be on a path every "
                        "node reads at the same place; -t is then threads per actor (default: the CPUs of the "
                        "smallest node)")
    p.add_argument("--actors", type=_actors, metavar="N|MIN,MAX",
                   help="with --ray: N actors (one model each), or an autoscaling pool of MIN to MAX "
                        "(default 1 to cluster CPUs / threads per actor)")
    p.add_argument("--retries", type=_retries, metavar="N",
                   help="with --ray: times a case is retried on a new actor when its actor process dies (default 2)")
    p.set_defaults(func=run)


def _actors(text: str) -> tuple[int, int]:
    """--actors N or MIN,MAX -> (min, max)."""
    parts = text.split(",")
    try:
        low, high = (positive_int(parts[0]), positive_int(parts[-1])) if len(parts) <= 2 else (0, 0)
    except argparse.ArgumentTypeError:
        low = high = 0
    if not 1 <= low <= high:
        raise argparse.ArgumentTypeError(f"expected N or MIN,MAX with 1 <= MIN <= MAX, got {text!r}")
    return low, high


def _retries(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 0, got {text!r}")
    return int(text)


def make_backend(args):
    """A callable case -> segs for the chosen backend; raises ModelError with what to install or pass."""
    from ..engines import compile_cache, make_engine

    name = "torch" if args.backend == "torch" else f"runtime-{args.precision}"
    cache = compile_cache(args.cache_dir) if args.backend == "runtime" else None
    return make_engine(name, args.model and Path(args.model), args.checkpoint, args.threads, cache_dir=cache)


def _serialised(segment):
    lock = threading.Lock()

    def call(case):
        with lock:
            return segment(case)
    return call


class Tally:
    """Counts outcomes as they arrive (from any thread), logging each case's progress or error line;
    `finish` logs `N done, N skipped, N failed` with one line per failure, and raises CommandFailed(1) when a
    case failed. The one place these lines are written, for threads and for Ray actors alike."""

    def __init__(self, total: int, verbose: bool = False) -> None:
        self.total, self.verbose = total, verbose
        self.counts = {"done": 0, "skipped": 0}
        self.failed: list[str] = []
        self._lock = threading.Lock()

    def add(self, outcome: Outcome) -> None:
        name = Path(outcome.path).name
        with self._lock:
            if outcome.status == "failed":
                self.failed.append(outcome.message)
            else:
                self.counts[outcome.status] += 1
            n = sum(self.counts.values()) + len(self.failed)
        if outcome.status == "failed":
            log.error("repmedsam-ov: error: %s", outcome.message)
            if self.verbose and outcome.details:
                log.error("details\n%s", outcome.details.rstrip())
        elif outcome.status == "skipped":
            log.info("[%d/%d] %s: skipped, %s exists (use --overwrite)", n, self.total, name, outcome.target)
        elif outcome.message:
            log.info("[%d/%d] %s: %s -> %s", n, self.total, name, outcome.message, outcome.target)
        else:
            log.info("[%d/%d] %s: %d box%s, %.1f s -> %s", n, self.total, name, outcome.boxes,
                     "" if outcome.boxes == 1 else "es", outcome.seconds, outcome.target)

    def finish(self) -> int:
        if self.total > 1 or self.failed:
            log.warning("%d done, %d skipped, %d failed", self.counts["done"], self.counts["skipped"], len(self.failed))
            if self.total > 1:
                for message in self.failed:
                    log.warning("  failed: %s", message)
        if self.failed:
            raise CommandFailed(1)
        return 0


def _file_options(args) -> dict:
    return dict(boxes=args.boxes, box_space=args.box_space, modality=args.modality, window=args.window,
                overlay=args.overlay, max_voxels=args.max_voxels)


def run(args) -> int:
    if args.ray is not None:
        return _run_on_ray(args)
    if args.actors is not None or args.retries is not None:
        raise UsageError(f"{'--actors' if args.actors is not None else '--retries'} applies to --ray runs only.")
    cases, targets, options = plan_cases(args.inputs, args.output, **_file_options(args))
    workers = min(args.workers or 1, len(cases))
    # One backend shared by the workers: the runtime serialises its calls and releases the GIL, so workers
    # overlap reading, preprocessing and writing with inference (faster on 2 cores than one Segmenter per
    # worker with half the threads each; see README). The torch reference is serialised with a lock.
    segment = make_backend(args)
    if workers > 1 and args.backend == "torch":
        segment = _serialised(segment)
    tally = Tally(len(cases), args.verbose)

    def one(path: Path, target: Path) -> None:
        tally.add(segment_case(path, target, segment, options, args.overwrite))

    if workers == 1:
        for path, target in zip(cases, targets):
            one(path, target)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="infer") as executor:
            list(executor.map(one, cases, targets))
    return tally.finish()


def _run_on_ray(args) -> int:
    """--ray: the same cases, outcomes and summary, with the segmenting done by Ray actors (cluster.py)."""
    if args.backend != "runtime":
        raise UsageError("--ray runs the C++ runtime backend only; drop --backend torch.")
    if args.workers is not None:
        raise UsageError("-j/--workers applies without --ray; with --ray use --actors N (or MIN,MAX).")
    from ..cluster import RayMissing, quiet_console, segment_files

    tally = None

    def started(total: int) -> None:
        nonlocal tally
        tally = Tally(total, args.verbose)

    try:
        with quiet_console(args.verbose):
            segment_files(args.inputs, args.output, address=args.ray or None, model=args.model,
                          precision=args.precision, threads=args.threads, actors=args.actors,
                          overwrite=args.overwrite, retries=2 if args.retries is None else args.retries,
                          verbose=args.verbose, on_start=started, on_case=lambda outcome: tally.add(outcome),
                          **_file_options(args))
    except RayMissing as e:
        raise UsageError(str(e)) from None
    return tally.finish()
