"""`repmedsam-ov infer`: segment challenge npz cases with the C++ runtime or the torch reference.

Each case is validated before any model work; a bad case is reported in one line and skipped, the others
are still processed. Outputs are written atomically, so an interrupted run never leaves a truncated file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import CommandFailed, InputError, ModelError, UsageError
from ..io import load_case, save_segs

log = logging.getLogger("repmedsam_ov")


def register(sub) -> None:
    p = sub.add_parser("infer", help="segment npz cases (files or folders of *.npz)",
                       description="Segment challenge-format npz cases; writes OUTDIR/<name>.npz with key 'segs'.")
    p.add_argument("inputs", nargs="+", metavar="CASE", help="an .npz case file or a folder of them")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the segmentations")
    p.add_argument("--backend", choices=("runtime", "torch"), default="runtime",
                   help="runtime: the C++ OpenVINO runtime (default); torch: the PyTorch reference")
    p.add_argument("-m", "--model", metavar="MODEL_DIR", help="exported model folder (runtime backend; default: bundled)")
    p.add_argument("--checkpoint", metavar="CKPT", help="Rep-MedSAM .pth checkpoint (torch backend)")
    p.add_argument("--precision", choices=("auto", "f32", "bf16", "int8"), default="auto", help="runtime precision")
    p.add_argument("-t", "--threads", type=int, metavar="N", help="inference threads (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    p.set_defaults(func=run)


def collect_cases(inputs: list[str]) -> list[Path]:
    """Files as given, folders expanded to their *.npz files (sorted); missing paths are kept to be reported."""
    cases = []
    for item in map(Path, inputs):
        cases.extend(sorted(item.glob("*.npz")) if item.is_dir() else [item])
    return cases


def make_backend(args):
    """A callable case -> segs for the chosen backend; raises ModelError with what to install or pass."""
    if args.backend == "torch":
        if not args.checkpoint:
            raise UsageError("--backend torch needs --checkpoint CKPT.pth (an official or trained Rep-MedSAM checkpoint).")
        try:
            from repmedsam_export import load_checkpoint
            from repmedsam_export.pipeline import ReferencePipeline
        except ImportError as e:
            raise ModelError(f"the torch backend needs the export extra ({e.name} is missing): "
                             "pip install 'repmedsam-ov[export]'") from None
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        return ReferencePipeline(load_checkpoint(args.checkpoint)).segment
    try:
        from ..segmenter import Segmenter
    except ImportError as e:
        raise ModelError(f"the C++ runtime is not available in this build ({e}); use --backend torch.") from None
    return Segmenter(args.model, precision=args.precision, threads=args.threads).segment


def run(args) -> int:
    cases = collect_cases(args.inputs)
    if not cases:
        raise InputError(f"{', '.join(args.inputs)}: no .npz cases found.")
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder (-o expects an output folder).")
    segment = make_backend(args)
    done, skipped, failed = 0, 0, []
    for n, path in enumerate(cases, start=1):
        target = out_dir / path.name
        if target.exists() and not args.overwrite:
            log.info("[%d/%d] %s: skipped, %s exists (use --overwrite)", n, len(cases), path.name, target)
            skipped += 1
            continue
        try:
            start = time.perf_counter()
            case = load_case(path)
            save_segs(target, segment(case))
        except (InputError, ModelError) as e:
            failed.append(str(e))
            log.error("repmedsam-ov: error: %s", e)
            if args.verbose:
                log.exception("details")
            continue
        done += 1
        log.info("[%d/%d] %s: %d boxes, %.1f s -> %s", n, len(cases), path.name, len(case.boxes),
                 time.perf_counter() - start, target)
    if len(cases) > 1 or failed:
        log.warning("%d done, %d skipped, %d failed", done, skipped, len(failed))
    if failed:
        raise CommandFailed(1)
    return 0
