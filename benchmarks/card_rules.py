"""The rules the model card's numbers are judged by, on per-case rows (dicts with case, engine, seconds, dsc,
nsd): per-source records, issue 27's ship bar and precision rule, issue 28's bar, and the measured choice of
`auto` per CPU class. Pure functions (numpy only), used by model_card_eval.py and tested on hand-made rows."""

from __future__ import annotations

import numpy as np

from repmedsam_ov.floor import source_of  # one naming of sources for the card and bench --profile

__all__ = ["OVER_SOURCES", "source_of", "is_3d", "source_records", "ship_bar_failures", "precision_rule_failures",
           "with_bf16_2d", "auto_choices"]

OVER_SOURCES = "all (mean over sources)"
PER_CASE = "all (per-case mean)"


def is_3d(source_or_case: str) -> bool:
    """A 3D source ("CT/...", "MR/...", "PET/...") or case ("3DBox_...")."""
    return source_or_case.startswith("3DBox_") or source_or_case.split("/")[0] in ("CT", "MR", "PET")


def source_records(rows: list[dict], engines: list[str]) -> list[dict]:
    """Per engine: each source's mean case DSC/NSD, the per-case mean, and the mean over sources."""
    records = []
    for e in engines:
        mine = [r for r in rows if r["engine"] == e]
        by_source: dict[str, list[dict]] = {}
        for r in mine:
            by_source.setdefault(source_of(r["case"]), []).append(r)
        for source, sel in sorted(by_source.items()) + [(PER_CASE, mine)]:
            records.append({"engine": e, "source": source, "cases": len(sel), "seconds": sum(r["seconds"] for r in sel),
                            "dsc": float(np.mean([r["dsc"] for r in sel])),
                            "nsd": float(np.mean([r["nsd"] for r in sel]))})
        per_source = [r for r in records if r["engine"] == e and not r["source"].startswith("all")]
        records.append({"engine": e, "source": OVER_SOURCES, "cases": len(mine),
                        "seconds": sum(r["seconds"] for r in mine),
                        "dsc": float(np.mean([r["dsc"] for r in per_source])),
                        "nsd": float(np.mean([r["nsd"] for r in per_source]))})
    return records


def _scores(records: list[dict], key: str = "dsc") -> dict[tuple[str, str], float]:
    return {(r["engine"], r["source"]): r[key] for r in records if "engine" in r}


def ship_bar_failures(records: list[dict], candidate: str, teacher: str, mean_margin: float = 0.03,
                      margin_2d: float = 0.03, margin_3d: float | None = None) -> list[str]:
    """What keeps `candidate` from shipping instead of `teacher`; [] when it may ship. Issue 27's bar (the
    defaults): its mean DSC over sources at least the teacher's + `mean_margin`, and no 2D source more than
    `margin_2d` below the teacher; `margin_3d` bounds 3D sources the same way (issue 28's bar: mean_margin
    0.05, margin_3d 0.02)."""
    dsc = _scores(records)
    c, t = dsc[(candidate, OVER_SOURCES)], dsc[(teacher, OVER_SOURCES)]
    failures = []
    if c < t + mean_margin:
        failures.append(f"{OVER_SOURCES}: DSC {c:.3f} < {teacher} {t:.3f} + {mean_margin}")
    for (engine, source), t in sorted(dsc.items()):
        if engine != teacher or source.startswith("all"):
            continue
        margin = margin_3d if is_3d(source) else margin_2d
        c = dsc[(candidate, source)]
        if margin is not None and c < t - margin:
            failures.append(f"{source}: DSC {c:.3f} more than {margin} below {teacher} {t:.3f}")
    return failures


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


def with_bf16_2d(rows: list[dict], prefix: str) -> list[dict]:
    """rows plus the engine PREFIX-bf16-2d: its 2D cases are PREFIX-bf16's, its 3D cases PREFIX-bf16-encoder's,
    which is what the runtime's bf16-2d computes, bit for bit (tests/python/test_runtime_api.py)."""
    take = {True: f"{prefix}-bf16-encoder", False: f"{prefix}-bf16"}
    mixed = [r | {"engine": f"{prefix}-bf16-2d"} for r in rows if r["engine"] == take[is_3d(r["case"])]]
    return rows + mixed


def auto_choices(rows: list[dict], prefix: str) -> tuple[dict[str, str], list[str]]:
    """`auto`'s precision per CPU class for engines PREFIX-*, from one run on a CPU with native bf16: among the
    candidates measured that pass the precision rule against PREFIX-f32, the fastest over the set for CPUs
    with native bf16 (AMX taken to rank as AVX512-BF16 does); for CPUs without, where bf16 is emulated, int8
    when it passes, else f32. -> (choices per CPU class, one report line per candidate)."""
    rows = with_bf16_2d(rows, prefix) if {f"{prefix}-bf16", f"{prefix}-bf16-encoder"} <= {r["engine"] for r in rows} \
        else rows
    engines = sorted({r["engine"] for r in rows if r["engine"].startswith(prefix + "-")})
    records = source_records(rows, engines)
    seconds = {r["engine"]: r["seconds"] for r in records if r["source"] == OVER_SOURCES}
    reference = f"{prefix}-f32"
    allowed, report = [], []
    for e in sorted(engines, key=seconds.get):
        failures = [] if e == reference else precision_rule_failures(records, e, reference)
        report.append(f"{e}: {seconds[e]:.1f} s, " + ("allowed" if not failures else "not allowed: " + "; ".join(failures)))
        if not failures:
            allowed.append(e.removeprefix(prefix + "-"))
    other = "int8" if "int8" in allowed else "f32"  # f32 is always allowed
    return {"amx": allowed[0], "avx512_bf16": allowed[0], "other": other}, report
