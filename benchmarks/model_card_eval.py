"""Accuracy and time of segmentation engines on the eval set, per source, the challenge's way (DSC/NSD through
`repmedsam_ov.metrics`, as `repmedsam-ov evaluate`), for the model card; plus each engine's label agreement
with a reference engine, the shipping and precision checks, and the measured choice of `auto`.

    python benchmarks/model_card_eval.py ../shared/data/eval -m rep_medsam -t 2 --out /tmp/card \\
        --engines runtime-f32,runtime-bf16,runtime-bf16-encoder,litemedsam-f32,box-fill \\
        --ship-bar runtime-f32:litemedsam-f32 --precision-rule runtime-bf16-encoder:runtime-f32 \\
        --cases-json /tmp/card/cases.jsonl --mark-auto runtime

Engines are `repmedsam-ov bench`'s (`-m` / `--litemedsam` as there: a folder or a bundled model's name).
Segmentations go to OUT/<engine>/, so a second run can re-score them with `repmedsam-ov evaluate`;
`--from-cases FILE` re-judges a saved `--cases-json` file without running anything. Prints a markdown table
(per source the mean case DSC / NSD of each engine, the per-case mean, the mean over sources) and each
engine's seconds over the set. Checks (exit status 1 when one fails, card_rules.py): `--ship-bar C:T` issue
27's bar for shipping C instead of T; `--v1-bar C:T` issue 28's; `--precision-rule A:REF` issue 27's rule for
a precision. `--mark-auto PREFIX` (runtime: -m's folder; litemedsam: --litemedsam's) writes `auto`'s choice per
CPU class into the folder's encoder.xml: the fastest candidate (PREFIX-bf16, -bf16-encoder, their mix bf16-2d,
-int8) allowed by the precision rule against PREFIX-f32.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from card_rules import (OVER_SOURCES, auto_choices, precision_rule_failures, ship_bar_failures,  # noqa: F401
                        source_of, source_records)
from repmedsam_ov._core import native_bf16_units
from repmedsam_ov.bench import machine_facts
from repmedsam_ov.bundled import resolve_model_dir
from repmedsam_ov.commands.evaluate import score_file
from repmedsam_ov.engines import litemedsam_model_dir, make_engine
from repmedsam_ov.io import load_case, save_segs
from repmedsam_ov.metrics import label_agreement
from repmedsam_ov.model_marks import BF16_AGREEMENT_BOUND, mark_auto, mark_bf16


def run_engines(args, engines: list[str]) -> tuple[list[dict], dict]:
    """Each engine on each case: per-case rows (case, engine, seconds, dsc, nsd) and the segmentations."""
    model = resolve_model_dir(args.model, how="-m MODEL") if args.model else None
    built = {e: make_engine(e, model, None, args.threads, args.litemedsam) for e in engines}
    cases = sorted((args.eval_dir / "imgs").glob("*.npz"))
    rows, segs_of = [], {}
    for i, path in enumerate(cases, 1):
        case = load_case(path)
        for engine, run in built.items():
            start = time.perf_counter()
            segs = run(case)
            elapsed = time.perf_counter() - start
            out = args.out / engine
            out.mkdir(parents=True, exist_ok=True)
            save_segs(out / path.name, segs)
            segs_of[(engine, path.name)] = (segs, len(case.boxes))
            scored = score_file(path.name, out, args.eval_dir / "gts", args.eval_dir / "imgs")
            if scored.error:
                raise SystemExit(scored.error)
            rows.append({"case": path.stem, "engine": engine, "seconds": elapsed, "dsc": scored.dsc, "nsd": scored.nsd})
            if args.cases_json:
                with open(args.cases_json, "a") as f:
                    f.write(json.dumps(rows[-1]) + "\n")
        print(f"[{i}/{len(cases)}] {path.stem}: " + ", ".join(f"{r['engine']} {r['dsc']:.3f}" for r in rows[-len(built):]),
              flush=True)
    return rows, segs_of


def print_table(records: list[dict], engines: list[str]) -> None:
    cell = {(r["engine"], r["source"]): r for r in records}
    sources = [r["source"] for r in records if r["engine"] == engines[0]]
    print("\n| source | cases | " + " | ".join(f"{e} DSC / NSD" for e in engines) + " |")
    print("|---|---|" + "---|" * len(engines))
    for source in sources:
        cells = [f"{cell[(e, source)]['dsc']:.3f} / {cell[(e, source)]['nsd']:.3f}" for e in engines]
        print(f"| {source} | {cell[(engines[0], source)]['cases']} | " + " | ".join(cells) + " |")
    print("\nseconds over the set: " + ", ".join(f"{e} {cell[(e, OVER_SOURCES)]['seconds']:.1f}" for e in engines))


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
    p.add_argument("-m", "--model", help="model folder or bundled model name for the runtime-* engines")
    p.add_argument("--litemedsam", type=Path)
    p.add_argument("-t", "--threads", type=int)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--json", type=Path, help="append one JSON line per engine and source")
    p.add_argument("--cases-json", type=Path, help="append one JSON line per case and engine (seconds, DSC, NSD)")
    p.add_argument("--from-cases", type=Path, help="judge the rows of a saved --cases-json file instead of running")
    p.add_argument("--mark-auto", action="append", default=[], choices=("runtime", "litemedsam"),
                   help="write auto's measured choice per CPU class into that engine family's model folder")
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
    if args.from_cases and (args.agreement or args.mark_bf16):
        p.error("--from-cases has no segmentations: --agreement and --mark-bf16 need a run")
    for family in args.mark_auto:
        if not {f"{family}-f32", f"{family}-bf16", f"{family}-bf16-encoder"} <= set(engines):
            p.error(f"--mark-auto {family} needs the engines {family}-f32, {family}-bf16 and {family}-bf16-encoder")

    if args.from_cases:
        rows = [json.loads(line) for line in args.from_cases.read_text().splitlines() if line.strip()]
        rows, segs_of = [r for r in rows if r["engine"] in engines], {}
    else:
        rows, segs_of = run_engines(args, engines)
    records = source_records(rows, engines)
    print_table(records, engines)
    for pair in args.agreement:
        a, b = pair.split(":")
        names = sorted({name for _, name in segs_of})
        dices = [float(np.mean(label_agreement(segs_of[(a, n)][0], segs_of[(b, n)][0], segs_of[(a, n)][1])))
                 for n in names]
        print(f"label Dice {a} vs {b}: mean {np.mean(dices):.5f}, min {np.min(dices):.5f}")
        records.append({"agreement": pair, "mean": float(np.mean(dices)), "min": float(np.min(dices))})
        if args.mark_bf16 and pair == bf16_pair:
            ok = mark_bf16(resolve_model_dir(args.model), float(np.mean(dices)))
            print(f"marked {resolve_model_dir(args.model) / 'encoder.xml'}: bf16_accuracy_ok {str(ok).lower()}")
    facts = machine_facts(args.threads)
    print(f"{facts['cpu']}, {facts['threads']} threads, repmedsam-ov {facts['version']} commit {facts['commit']}")
    if args.json:
        with open(args.json, "a") as f:
            for r in records:
                f.write(json.dumps(r | facts) + "\n")
    for family in args.mark_auto:
        choices, report = auto_choices(rows, family)
        folder = resolve_model_dir(args.model) if family == "runtime" else litemedsam_model_dir(args.litemedsam)
        units = native_bf16_units() or "no native bf16"
        basis = (f"measured on {len({r['case'] for r in rows})} eval cases, {facts['threads']} threads, {facts['cpu']} "
                 f"({units}), commit {facts['commit']}; AMX ranked as AVX512-BF16, int8 only where it passed")
        mark_auto(folder, choices, basis)
        print(f"auto for {family} ({folder}): {choices}\n  " + "\n  ".join(report))
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
