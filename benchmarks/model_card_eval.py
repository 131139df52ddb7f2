"""Accuracy of segmentation engines on the eval set, per source, the challenge's way (DSC/NSD through
`repmedsam_ov.metrics`, as `repmedsam-ov evaluate`), for the model card; plus each engine's label agreement
with a reference engine (e.g. auto precision against f32).

    python benchmarks/model_card_eval.py ../shared/data/eval --engines runtime-auto,runtime-f32,litemedsam-f32,box-fill \
        --agreement runtime-auto:runtime-f32 --ship-bar runtime-f32:litemedsam-f32 \
        --out /tmp/card --json benchmarks/results/model-card.jsonl

Engines are `repmedsam-ov bench`'s (`-m` / `--litemedsam` as there). Segmentations go to OUT/<engine>/, so a
second run can re-score them with `repmedsam-ov evaluate`. Prints a markdown table: per source the mean
case DSC / NSD of each engine, the per-case mean over all cases and the mean over sources, then each engine's
seconds over the set. Checks (exit status 1 when one fails): `--ship-bar C:T` issue 27's bar for shipping
candidate C instead of T (mean DSC over sources >= T's + 0.03, no 2D source more than 0.03 below T);
`--v1-bar C:T` issue 28's (mean >= T's + 0.05, 2D sources within 0.03, 3D sources within 0.02 below T);
`--precision-rule A:REF` issue 27's rule for a precision (every source's DSC and NSD within 0.01 of REF's).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from repmedsam_ov.bench import machine_facts
from repmedsam_ov.commands.evaluate import score_file
from repmedsam_ov.engines import make_engine
from repmedsam_ov.io import load_case, save_segs
from repmedsam_ov.metrics import label_agreement
from repmedsam_ov.model_marks import BF16_AGREEMENT_BOUND, mark_bf16


def source_of(name: str) -> str:
    """2DBox_Endoscopy_KvasirSEG_x -> Endoscopy/KvasirSEG; 3DBox_CT_biomedparse_AMOS_x -> CT/biomedparse."""
    parts = name.split("_")
    return f"{parts[1]}/{parts[2]}"


OVER_SOURCES = "all (mean over sources)"


def _scores(records: list[dict], key: str = "dsc") -> dict[tuple[str, str], float]:
    return {(r["engine"], r["source"]): r[key] for r in records if "engine" in r}


def ship_bar_failures(records: list[dict], candidate: str, teacher: str, mean_margin: float = 0.03,
                      margin_2d: float = 0.03, margin_3d: float | None = None) -> list[str]:
    """What keeps `candidate` from shipping instead of `teacher`, from the per-source records main() builds;
    [] when it may ship. Issue 27's bar (the defaults): its mean DSC over sources at least the teacher's +
    `mean_margin`, and no 2D source more than `margin_2d` below the teacher; `margin_3d` bounds 3D sources
    (CT, MR, PET) the same way (issue 28's bar: mean_margin 0.05, margin_3d 0.02)."""
    dsc = _scores(records)
    c, t = dsc[(candidate, OVER_SOURCES)], dsc[(teacher, OVER_SOURCES)]
    failures = []
    if c < t + mean_margin:
        failures.append(f"{OVER_SOURCES}: DSC {c:.3f} < {teacher} {t:.3f} + {mean_margin}")
    for (engine, source), t in sorted(dsc.items()):
        if engine != teacher or source.startswith("all"):
            continue
        margin = margin_3d if is_3d_source(source) else margin_2d
        c = dsc[(candidate, source)]
        if margin is not None and c < t - margin:
            failures.append(f"{source}: DSC {c:.3f} more than {margin} below {teacher} {t:.3f}")
    return failures


def is_3d_source(source: str) -> bool:
    return source.split("/")[0] in ("CT", "MR", "PET")


def precision_rule_failures(records: list[dict], candidate: str, reference: str, tolerance: float = 0.01) -> list[str]:
    """Issue 27's rule for a precision (or mix): every source's DSC and NSD within `tolerance` of the
    reference precision's (f32's) on the same model; [] when allowed."""
    failures = []
    for key in ("dsc", "nsd"):
        scores = _scores(records, key)
        for (engine, source), ref in sorted(scores.items()):
            if engine != reference or source.startswith("all"):
                continue
            value = scores[(candidate, source)]
            if abs(value - ref) > tolerance:
                failures.append(f"{source}: {key.upper()} {value:.3f} vs {reference} {ref:.3f} (over {tolerance})")
    return failures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("eval_dir", type=Path, help="folder with imgs/ and gts/")
    p.add_argument("--engines", default="runtime-auto,runtime-f32,box-fill")
    p.add_argument("--agreement", action="append", default=[], metavar="A:B",
                   help="also report the mean label Dice of engine A against engine B")
    p.add_argument("--ship-bar", metavar="C:T", help="check issue 27's bar for candidate C against teacher T")
    p.add_argument("--v1-bar", metavar="C:T", help="check issue 28's bar (3D sources too) for C against T")
    p.add_argument("--precision-rule", action="append", default=[], metavar="A:REF",
                   help="check that every source's DSC and NSD of engine A is within 0.01 of engine REF's")
    p.add_argument("-m", "--model", type=Path)
    p.add_argument("--litemedsam", type=Path)
    p.add_argument("-t", "--threads", type=int)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--json", type=Path, help="append one JSON line per engine and source")
    p.add_argument("--cases-json", type=Path, help="append one JSON line per case and engine (seconds, DSC, NSD)")
    p.add_argument("--mark-bf16", action="store_true",
                   help="record the measured runtime-bf16:runtime-f32 agreement in -m's encoder.xml; below "
                        f"{BF16_AGREEMENT_BOUND} the runtime's auto then avoids bf16 for this model")
    args = p.parse_args()

    engines = [e for e in args.engines.split(",") if e]
    pairs = {"--ship-bar": [args.ship_bar] if args.ship_bar else [], "--v1-bar": [args.v1_bar] if args.v1_bar else [],
             "--precision-rule": args.precision_rule, "--agreement": args.agreement}
    for flag, values in pairs.items():
        for value in values:
            if len(value.split(":")) != 2 or not set(value.split(":")) <= set(engines):
                p.error(f"{flag} {value}: expected A:B, two of --engines {args.engines}")
    bf16_pair = "runtime-bf16:runtime-f32"
    if args.mark_bf16 and (args.model is None or bf16_pair not in args.agreement):
        p.error(f"--mark-bf16 needs -m MODEL_DIR and --agreement {bf16_pair} (with both engines)")
    built = {e: make_engine(e, args.model, None, args.threads, args.litemedsam) for e in engines}
    cases = sorted((args.eval_dir / "imgs").glob("*.npz"))
    rows: dict[str, list] = {e: [] for e in engines}
    segs_of: dict[tuple[str, str], np.ndarray] = {}
    seconds = {e: 0.0 for e in engines}
    for i, path in enumerate(cases, 1):
        case = load_case(path)
        for engine, run in built.items():
            start = time.perf_counter()
            segs = run(case)
            elapsed = time.perf_counter() - start
            seconds[engine] += elapsed
            out = args.out / engine
            out.mkdir(parents=True, exist_ok=True)
            save_segs(out / path.name, segs)
            segs_of[(engine, path.name)] = segs
            row = score_file(path.name, out, args.eval_dir / "gts", args.eval_dir / "imgs")
            if row.error:
                raise SystemExit(row.error)
            rows[engine].append((source_of(path.stem), row.dsc, row.nsd, len(case.boxes)))
            if args.cases_json:
                with open(args.cases_json, "a") as f:
                    f.write(json.dumps({"case": path.stem, "engine": engine, "seconds": elapsed,
                                        "dsc": row.dsc, "nsd": row.nsd}) + "\n")
        print(f"[{i}/{len(cases)}] {path.stem}: " + ", ".join(f"{e} {rows[e][-1][1]:.3f}" for e in engines),
              flush=True)

    sources = sorted({r[0] for r in rows[engines[0]]})
    print(f"\n| source | cases | " + " | ".join(f"{e} DSC / NSD" for e in engines) + " |")
    print("|---|---|" + "---|" * len(engines))
    records = []
    for source in sources + ["all (per-case mean)"]:
        cells = []
        for e in engines:
            sel = [r for r in rows[e] if source.startswith("all") or r[0] == source]
            dsc, nsd = float(np.mean([r[1] for r in sel])), float(np.mean([r[2] for r in sel]))
            cells.append(f"{dsc:.3f} / {nsd:.3f}")
            records.append({"engine": e, "source": source, "cases": len(sel), "dsc": dsc, "nsd": nsd})
        print(f"| {source} | {len(sel)} | " + " | ".join(cells) + " |")
    cells = []
    for e in engines:
        by_source = [r for r in records if r["engine"] == e and not r["source"].startswith("all")]
        dsc, nsd = (float(np.mean([r[k] for r in by_source])) for k in ("dsc", "nsd"))
        cells.append(f"{dsc:.3f} / {nsd:.3f}")
        records.append({"engine": e, "source": OVER_SOURCES, "cases": len(cases), "dsc": dsc, "nsd": nsd})
    print(f"| {OVER_SOURCES} | {len(sources)} sources | " + " | ".join(cells) + " |")
    print("\nseconds over the set: " + ", ".join(f"{e} {s:.1f}" for e, s in seconds.items()))
    for pair in args.agreement:
        a, b = pair.split(":")
        dices = [float(np.mean(label_agreement(segs_of[(a, c.name)], segs_of[(b, c.name)],
                                               len(load_case(c).boxes)))) for c in cases]
        print(f"label Dice {a} vs {b}: mean {np.mean(dices):.5f}, min {np.min(dices):.5f}")
        records.append({"agreement": pair, "mean": float(np.mean(dices)), "min": float(np.min(dices))})
        if args.mark_bf16 and pair == bf16_pair:
            ok = mark_bf16(args.model, float(np.mean(dices)))
            print(f"marked {args.model / 'encoder.xml'}: bf16_accuracy_ok {str(ok).lower()}")
    facts = machine_facts(args.threads)
    print(f"{facts['cpu']}, {facts['threads']} threads, repmedsam-ov {facts['version']} commit {facts['commit']}")
    if args.json:
        with open(args.json, "a") as f:
            for r in records:
                f.write(json.dumps(r | facts | {"seconds": seconds.get(r.get("engine"))}) + "\n")
    checks = [(f"ship bar ({v})", ship_bar_failures(records, *v.split(":"))) for v in pairs["--ship-bar"]]
    checks += [(f"v1 bar ({v})", ship_bar_failures(records, *v.split(":"), mean_margin=0.05, margin_3d=0.02))
               for v in pairs["--v1-bar"]]
    checks += [(f"precision rule ({v})", precision_rule_failures(records, *v.split(":"))) for v in args.precision_rule]
    for title, failures in checks:
        print(f"{title}: " + ("met" if not failures else "NOT met\n  " + "\n  ".join(failures)))
    if any(failures for _, failures in checks):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
