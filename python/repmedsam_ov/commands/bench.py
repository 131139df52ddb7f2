"""`repmedsam-ov bench`: time engines side by side on the same cases and print one table (+ JSON lines)."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from ..engines import ENGINES
from ..errors import InputError, UsageError
from ..floor import case_floor, case_work, floor_fields, print_profile
from ..metrics import label_agreement
from .evaluate import modality_of, score_against
from ._args import positive_int

log = logging.getLogger("repmedsam_ov")


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark engines side by side on the same cases",
                       description="Run each engine on the same cases in one process (warm-up first, cases "
                                   "interleaved) and print seconds, speed-up against torch, throughput, peak RSS "
                                   "and label Dice against the reference engine.")
    p.add_argument("cases", nargs="*", metavar="CASE", help=".npz cases or folders of them")
    p.add_argument("--engines", default="runtime-bf16,ov-python,torch",
                   help=f"comma-separated: {', '.join(ENGINES)}")
    p.add_argument("-m", "--model", metavar="DIR", help="model folder (default: bundled, or exported from --checkpoint)")
    p.add_argument("--checkpoint", metavar="CKPT", help="checkpoint for the torch engine (and to export if no --model)")
    p.add_argument("--litemedsam", metavar="DIR", type=Path,
                   help="LiteMedSAM model folder for the litemedsam-* engines (default: the one exported into the "
                        "cache next to `train get-teacher`'s checkpoint)")
    p.add_argument("--gts", metavar="DIR", type=Path,
                   help="also score each engine's masks against ground truth: DIR/<case>.npz holding 'gts' (and "
                        "'spacing' for 3D), as `evaluate` reads them")
    p.add_argument("--synthetic", action="store_true", help="add the 300x512x512, 6-object synthetic scale case")
    p.add_argument("--repeats", type=positive_int, default=1, metavar="N", help="runs per case and engine (median)")
    p.add_argument("-t", "--threads", type=positive_int, metavar="N", help="inference threads (default: all cores)")
    p.add_argument("--streams", type=positive_int, metavar="N",
                   help="parallel inferences of the runtime engines (default: auto; at most --threads)")
    p.add_argument("--json", metavar="FILE", help="append one JSON line per case and engine")
    p.add_argument("--profile", action="store_true",
                   help="also time each runtime engine's networks alone and print, per case and per source, the "
                        "time against that floor (slices x encoder + boxes x decoder) and where the time went "
                        "(stage seconds summed over threads, waiting included)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..bench import machine_facts, run_bench, synthetic_volume
    from ..engines import make_engine
    from ..io import load_case
    from ..cases import collect_cases

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise UsageError(f"unknown engine(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(ENGINES)}.")
    cases, seen = [], {}
    for path in collect_cases(args.cases):
        if path.stem in seen:  # rows are keyed by case name: a second case of that name would hide the first
            log.warning("%s: skipped, a case named %s is already in the run (%s)", path, path.stem, seen[path.stem])
            continue
        seen[path.stem] = path
        cases.append((path.stem, load_case(path)))
    if args.synthetic:
        synthetic = synthetic_volume()
        cases.append((synthetic.path.name, synthetic))
    if not cases:
        raise UsageError("give CASE files or folders, or --synthetic.")
    if args.gts is not None:
        missing = [name for name, _ in cases if not (args.gts / f"{name}.npz").is_file()]
        if missing:  # before any engine runs: an hour of timing must not end on a missing label file
            raise InputError(f"{args.gts}: no ground truth for {', '.join(missing[:5])}"
                             f"{' …' if len(missing) > 5 else ''} (--gts DIR needs DIR/<case>.npz for every case).")

    model_dir = Path(args.model) if args.model else None
    if model_dir is None and args.checkpoint and any(e != "torch" for e in engines):
        from repmedsam_export.to_ir import export_model  # needs the export extra, like the torch engine

        model_dir = export_model(args.checkpoint, Path(tempfile.mkdtemp()) / "model")
    built = {name: make_engine(name, model_dir, args.checkpoint, args.threads, args.litemedsam, args.streams)
             for name in engines}
    precisions = {name: _precision(engine) for name, engine in built.items()}
    results = run_bench(built, cases, args.repeats, progress=None if args.quiet else log.info)
    floors = _floors(built, cases) if args.profile else {}

    reference = "torch" if "torch" in engines else "runtime-f32" if "runtime-f32" in engines else engines[0]
    by_key = {(m.case, m.engine): m for m in results}
    facts = machine_facts(args.threads) | {"streams": args.streams or "auto"}
    print(f"\n{facts['cpu']} | {facts['cores']} cores, {facts['threads']} threads, {facts['streams']} streams "
          f"| OpenVINO {facts['openvino']} "
          f"| repmedsam-ov {facts['version']}, commit {facts['commit']} | Dice against {reference}")
    header = f"{'case':<44} {'engine':<16} {'s':>8} {'x torch':>8} {'slices/s':>8} {'ms/box':>7} {'RSS MB':>7} {'Dice':>7}"
    if args.gts is not None:
        header += f" {'GT DSC':>7} {'GT NSD':>7}"
    print(header)
    print("-" * len(header))
    totals = {e: 0.0 for e in engines}
    lines = []
    for name, case in cases:
        slices, boxes = case_work(case)
        ref = by_key[(name, reference)]
        for engine in engines:
            m = by_key[(name, engine)]
            totals[engine] += m.seconds
            speedup = by_key[(name, "torch")].seconds / m.seconds if "torch" in engines else float("nan")
            dice = float(np.mean(label_agreement(m.segs, ref.segs, len(case.boxes))))
            row = {"case": name, "engine": engine, "seconds": m.seconds, "speedup_vs_torch": speedup,
                   "slices_per_s": slices / m.seconds, "ms_per_box": 1000 * m.seconds / boxes,
                   "peak_rss_mb": m.peak_rss_mb, "dice_vs_reference": dice, "reference": reference,
                   "slices": slices, "boxes": boxes, "precision": precisions[engine],
                   "stage_seconds": m.stage_seconds} | facts
            if (name, engine) in floors:
                row |= floor_fields(floors[(name, engine)], m.seconds)
            scored = ""
            if args.gts is not None:
                scores = score_against(args.gts / f"{name}.npz", m.segs, what=f"{engine}'s masks of {name}")
                row |= {"gt_dsc": scores.dsc, "gt_nsd": scores.nsd}
                scored = f" {scores.dsc:>7.4f} {scores.nsd:>7.4f}"
            lines.append(row)
            print(f"{name[:44]:<44} {engine:<16} {m.seconds:>8.2f} {speedup:>8.2f} {row['slices_per_s']:>8.2f} "
                  f"{row['ms_per_box']:>7.1f} {m.peak_rss_mb:>7.0f} {dice:>7.4f}{scored}")
    print("-" * len(header))
    for engine in engines:
        speedup = totals["torch"] / totals[engine] if "torch" in engines else float("nan")
        print(f"{'TOTAL':<44} {engine:<16} {totals[engine]:>8.2f} {speedup:>8.2f}")
    if args.gts is not None:
        _print_ground_truth_summary(lines, engines)
    if args.profile:
        print_profile(results, floors)
    if args.json:
        with open(args.json, "a") as f:
            for row in lines:
                f.write(json.dumps(row) + "\n")
    return 0


def _print_ground_truth_summary(rows: list[dict], engines: list[str]) -> None:
    """Per engine, mean DSC and NSD against ground truth by modality (the challenge's file-name field) and over
    all cases."""
    print("\nagainst ground truth (mean DSC / NSD)")
    modalities = sorted({modality_of(r["case"]) for r in rows})
    print(f"{'engine':<24}" + "".join(f" {m[:15]:>15}" for m in modalities) + f" {'all cases':>15}")
    for engine in engines:
        mine = [r for r in rows if r["engine"] == engine]
        cells = [[r for r in mine if modality_of(r["case"]) == m] for m in modalities] + [mine]
        print(f"{engine:<24}" + "".join(f" {np.mean([r['gt_dsc'] for r in c]):>7.4f}/{np.mean([r['gt_nsd'] for r in c]):<7.4f}"
                                       for c in cells))


def _precision(engine) -> str:
    """The precision an engine runs at: the runtime's resolved one, the loop's hint, f32 for torch."""
    return getattr(getattr(engine, "__self__", engine), "precision", "f32")


def _floors(built: dict, cases: list) -> dict:
    """(case, engine) -> Floor for the engines that time their networks (measured once each, after the run)."""
    floors = {}
    for engine, segment in built.items():
        if hasattr(segment, "network_seconds"):
            network = segment.network_seconds()
            floors |= {(name, engine): case_floor(case, network) for name, case in cases}
    return floors
