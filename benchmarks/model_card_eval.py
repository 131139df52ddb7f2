"""Accuracy of segmentation engines on the eval set, per source, the challenge's way (DSC/NSD through
`repmedsam_ov.metrics`, as `repmedsam-ov evaluate`), for the model card; plus each engine's label agreement
with a reference engine (e.g. auto precision against f32).

    python benchmarks/model_card_eval.py ../shared/data/eval --engines runtime-auto,runtime-f32,litemedsam-f32,box-fill \
        --agreement runtime-auto:runtime-f32 --ship-bar runtime-f32:litemedsam-f32:box-fill \
        --out /tmp/card --json benchmarks/results/model-card.jsonl

Engines are `repmedsam-ov bench`'s (`-m` / `--litemedsam` as there). Segmentations go to OUT/<engine>/, so a
second run can re-score them with `repmedsam-ov evaluate`. Prints a markdown table: per source the mean
case DSC / NSD of each engine, then the per-case mean over all cases. `--ship-bar C:T:B` checks issue 11's bar
for candidate C against teacher T and baseline B (exit status 1 when it fails): C's per-case mean DSC at least
T's - 0.01, no source more than 0.05 below T, and above B on every source where T is above B.
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


def ship_bar_failures(records: list[dict], candidate: str, teacher: str, baseline: str,
                      mean_margin: float = 0.01, source_margin: float = 0.05) -> list[str]:
    """What keeps `candidate` from shipping, from the per-source records main() builds; [] when it may ship."""
    dsc = {(r["engine"], r["source"]): r["dsc"] for r in records if "engine" in r}
    failures = []
    for (engine, source), t in sorted(dsc.items()):
        if engine != teacher:
            continue
        c, b = dsc[(candidate, source)], dsc[(baseline, source)]
        if source.startswith("all"):
            if c < t - mean_margin:
                failures.append(f"{source}: DSC {c:.3f} < {teacher} {t:.3f} - {mean_margin}")
            continue
        if c < t - source_margin:
            failures.append(f"{source}: DSC {c:.3f} more than {source_margin} below {teacher} {t:.3f}")
        if t > b and c <= b:
            failures.append(f"{source}: DSC {c:.3f} not above {baseline} {b:.3f}, which {teacher} beats ({t:.3f})")
    return failures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("eval_dir", type=Path, help="folder with imgs/ and gts/")
    p.add_argument("--engines", default="runtime-auto,runtime-f32,box-fill")
    p.add_argument("--agreement", action="append", default=[], metavar="A:B",
                   help="also report the mean label Dice of engine A against engine B")
    p.add_argument("--ship-bar", metavar="C:T:B", help="check candidate C against teacher T and baseline B")
    p.add_argument("-m", "--model", type=Path)
    p.add_argument("--litemedsam", type=Path)
    p.add_argument("-t", "--threads", type=int)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--json", type=Path, help="append one JSON line per engine and source")
    p.add_argument("--mark-bf16", action="store_true",
                   help="record the measured runtime-bf16:runtime-f32 agreement in -m's encoder.xml; below "
                        f"{BF16_AGREEMENT_BOUND} the runtime's auto then avoids bf16 for this model")
    args = p.parse_args()

    engines = [e for e in args.engines.split(",") if e]
    bar = args.ship_bar.split(":") if args.ship_bar else []
    if bar and (len(bar) != 3 or not set(bar) <= set(engines)):
        p.error(f"--ship-bar {args.ship_bar}: expected CANDIDATE:TEACHER:BASELINE, three of --engines {args.engines}")
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
            seconds[engine] += time.perf_counter() - start
            out = args.out / engine
            out.mkdir(parents=True, exist_ok=True)
            save_segs(out / path.name, segs)
            segs_of[(engine, path.name)] = segs
            row = score_file(path.name, out, args.eval_dir / "gts", args.eval_dir / "imgs")
            if row.error:
                raise SystemExit(row.error)
            rows[engine].append((source_of(path.stem), row.dsc, row.nsd, len(case.boxes)))
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
    if bar:
        failures = ship_bar_failures(records, *bar)
        print(f"ship bar ({args.ship_bar}): " + ("met" if not failures else "NOT met\n  " + "\n  ".join(failures)))
        if failures:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
