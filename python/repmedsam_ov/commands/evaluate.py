"""`repmedsam-ov evaluate`: DSC and NSD of predicted `segs` against ground-truth `gts`, the challenge's way.

Cases are paired by file name across --segs and --gts. A missing, unreadable or mismatched file fails that
case only: it shows in the table, the CSV and the summary, and the exit code becomes 1. Imports numpy and
scipy only.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..metrics import CaseMetrics, evaluate_case

log = logging.getLogger("repmedsam_ov")

_NAME = re.compile(r"[23]DBox_([^_]+)_")  # challenge file names: 2DBox_<Modality>_... / 3DBox_<Modality>_...


@dataclass
class Row:
    """One case: `case` is the file name; dsc and nsd are NaN when `error` says why the case failed."""

    case: str
    modality: str
    dsc: float = math.nan
    nsd: float = math.nan
    error: str | None = None


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="DSC and NSD of segmentations against ground truth (the challenge's metrics)",
        description="Per case DSC and NSD (tolerance 2 mm in 3D, 2 pixels in 2D) as the CVPR 2024 MedSAM on "
                    "Laptop challenge computes them, then means per modality and overall (over scored cases).")
    p.add_argument("--segs", required=True, type=Path, metavar="DIR", help="folder of predicted *.npz holding 'segs'")
    p.add_argument("--gts", required=True, type=Path, metavar="DIR",
                   help="folder of ground-truth *.npz holding 'gts' (and 'spacing' in mm for 3D cases)")
    p.add_argument("--imgs", type=Path, metavar="DIR",
                   help="take 3D spacing from the image npz files in DIR, as the challenge does "
                        "(default: the 'spacing' in the gts file)")
    p.add_argument("--csv", type=Path, metavar="FILE", help="write one row per case: case, modality, dsc, nsd, error")
    p.add_argument("--json", action="store_true",
                   help="print JSON lines instead of the table: one per case, then one per modality and 'overall'")
    p.set_defaults(func=run)


def run(args) -> int:
    for folder in (args.segs, args.gts, args.imgs):
        if folder is not None and not folder.is_dir():
            raise InputError(f"{folder}: no such folder.")
    names = sorted({p.name for d in (args.segs, args.gts) for p in d.glob("*.npz")})
    if not names:
        raise InputError(f"{args.gts}: no .npz files here or in {args.segs}.")
    rows = []
    for i, name in enumerate(names, 1):
        start = time.perf_counter()
        row = score_file(name, args.segs, args.gts, args.imgs)
        rows.append(row)
        if row.error:
            log.warning(f"[{i}/{len(names)}] {row.error}")
        else:
            log.info(f"[{i}/{len(names)}] {name}: DSC {row.dsc:.4f}, NSD {row.nsd:.4f} "
                     f"({time.perf_counter() - start:.1f} s)")
    summary = summarize(rows)
    if args.csv:
        write_csv(args.csv, rows)
    if args.json:
        for record in [asdict(r) for r in rows] + summary:
            print(json.dumps({k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}))
    else:
        print_table(rows, summary)
    return 1 if any(r.error for r in rows) else 0


def score_file(name: str, segs_dir: Path, gts_dir: Path, imgs_dir: Path | None = None) -> Row:
    """Score the case `name` found in both folders; every problem becomes `Row.error`, never an exception."""
    row = Row(name, modality_of(name))
    gt_path, seg_path = gts_dir / name, segs_dir / name
    try:
        segs, _ = _read(seg_path, "segs")
        spacing = _read(imgs_dir / name, "spacing")[0] if imgs_dir is not None and segs.ndim == 3 else None
        scores = score_against(gt_path, segs, spacing, what=f"{seg_path}: 'segs'")
    except InputError as e:
        row.error = str(e)
        return row
    row.dsc, row.nsd = scores.dsc, scores.nsd
    return row


def modality_of(name: str) -> str:
    """The modality field of a challenge file name (2DBox_<Modality>_...), else "other"."""
    match = _NAME.match(name)
    return match.group(1) if match else "other"


def score_against(gt_path: Path, segs: np.ndarray, spacing=None, what: str = "the prediction") -> CaseMetrics:
    """DSC and NSD of `segs` against the 'gts' of `gt_path`; 3D spacing from `spacing`, else the gts file's.
    Raises InputError naming the files (`what` names the prediction)."""
    gts, own_spacing = _read(gt_path, "gts")
    if gts.shape != segs.shape:
        raise InputError(f"{what} has shape {segs.shape} but {gt_path}: 'gts' has shape {gts.shape}; a "
                         "prediction must have its ground truth's shape.")
    spacing = own_spacing if spacing is None else spacing
    if gts.ndim == 3 and spacing is None:
        raise InputError(f"{gt_path}: no 'spacing' for this 3D case; pass --imgs DIR (image files that hold it).")
    try:
        return evaluate_case(gts, segs, spacing if gts.ndim == 3 else None)
    except InputError as e:
        raise InputError(f"{gt_path}: {e}") from None


def _read(path: Path, key: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The array `key` of an npz file and its 'spacing' (or None). Raises InputError naming the file."""
    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not an .npz archive (expected a zip of arrays holding '{key}').")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if key not in npz.files:
                raise InputError(f"{path}: missing key '{key}' (found: {', '.join(npz.files) or 'nothing'}).")
            array = npz[key]
            spacing = npz["spacing"] if "spacing" in npz.files else None
    except InputError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # corrupt members, object arrays
        raise InputError(f"{path}: not a readable .npz archive ({type(e).__name__}: {e}).") from None
    if key != "spacing" and array.dtype.kind not in "biu":
        raise InputError(f"{path}: '{key}' has dtype {array.dtype}, expected integer labels (0 = background).")
    return array, spacing


def summarize(rows: list[Row]) -> list[dict]:
    """Means of DSC and NSD per modality (sorted) and overall, over the cases that were scored."""
    groups = {m: [r for r in rows if r.modality == m] for m in sorted({r.modality for r in rows})}
    groups["overall"] = rows
    summary = []
    for modality, group in groups.items():
        scored = [r for r in group if not r.error]
        summary.append({"modality": modality, "cases": len(scored), "failed": len(group) - len(scored),
                        "dsc": float(np.mean([r.dsc for r in scored])) if scored else math.nan,
                        "nsd": float(np.mean([r.nsd for r in scored])) if scored else math.nan})
    return summary


def write_csv(path: Path, rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", "modality", "dsc", "nsd", "error"])
        for r in rows:
            writer.writerow([r.case, r.modality, _fmt(r.dsc, 6), _fmt(r.nsd, 6), r.error or ""])


def print_table(rows: list[Row], summary: list[dict]) -> None:
    width = max(len(r.case) for r in rows)
    print(f"{'case':<{width}}  {'modality':<12} {'DSC':>7} {'NSD':>7}")
    for r in rows:
        print(f"{r.case:<{width}}  {r.modality:<12} {_fmt(r.dsc, 4, 'failed'):>7} {_fmt(r.nsd, 4, ''):>7}")
    print(f"\n{'modality':<12} {'cases':>5} {'failed':>6} {'DSC':>7} {'NSD':>7}")
    for s in summary:
        dsc, nsd = _fmt(s["dsc"], 4, "-"), _fmt(s["nsd"], 4, "-")
        print(f"{s['modality']:<12} {s['cases']:>5} {s['failed']:>6} {dsc:>7} {nsd:>7}")
    failed = [r for r in rows if r.error]
    if failed:
        print(f"\n{len(failed)} of {len(rows)} cases failed:")
        for r in failed:
            print(f"  {r.case}: {r.error}")


def _fmt(x: float, digits: int, nan: str = "") -> str:
    return nan if math.isnan(x) else f"{x:.{digits}f}"
