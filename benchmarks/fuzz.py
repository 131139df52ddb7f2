"""The long fuzz run: up to 100,000 generated hostile inputs through `repmedsam-ov infer`, the Python readers and
the C++ runtime, with the invariants of tests/fuzz/harness.py, and one report table.

    python benchmarks/fuzz.py [--cases 100000] [--jobs 2] [--budget-s 1200] [--json out.jsonl]

Cases go out in chunks to child processes (a crash kills a chunk, never the run, and is counted): each reader
chunk draws random (not derandomized) cases from tests/fuzz/gen.py strategies and runs them in-process through
the CLI; `core` chunks run tests/fuzz/core_worker.py; `batch` chunks run 50 cases through one real CLI child.
The split follows tests/fuzz/test_fuzz_readers.py's ci counts. --budget-s stops starting chunks when the time is
spent (the report says how many ran). Failing cases are saved under $REPMEDSAM_FUZZ_FAILURES for the corpus.
Prints per reader: cases, exits 0/1/2, crashes, hangs, partial outputs, writes outside -o, other invariant
failures, slowest case; and the peak RSS of any child. No torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHUNK = 250
CORE_SHARE, BATCH_SHARE = 0.08, 0.02
MEMORY_BOUND_MB = 6144  # the documented peak at the default voxel limit (limits.py): past it, a chunk broke the bound


def _kind(problem: str) -> str:
    for key, word in (("crash", "crash"), ("hang", "hang"), ("partial", "partial"), ("left outputs", "partial"),
                      ("outside -o", "outside"), ("uncaught", "crash"), ("memory", "memory:")):
        if word in problem or key in problem:
            return key
    return "other"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(reader: str, cases: int, seed: int, model: str) -> None:
    """One chunk in this (child) process; prints one JSON summary line."""
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("HYPOTHESIS_PROFILE", "dev")
    from hypothesis import HealthCheck, given, settings, seed as hseed

    from tests.fuzz.corpus import failures_folder, save_case
    from tests.fuzz.gen import READERS
    from tests.fuzz.harness import run_batch_subprocess, run_core_worker, run_in_process

    summary = {"reader": reader, "cases": 0, "exits": {}, "problems": {}, "examples": [], "slowest": [0.0, ""],
               "by_reader": {}}
    root = Path(tempfile.mkdtemp(prefix="fuzz-chunk-"))
    if reader == "core":
        problems, stats = run_core_worker(Path(model), seed, cases, timeout=30 + cases)
        summary.update(cases=stats["cases"], slowest=[stats["slowest"][0], json.dumps(stats["slowest"][1])[:300]])
        summary["exits"] = {"ok": stats["ok"], "rejected": stats["rejected"]}
        for p in problems:
            summary["problems"][_kind(p)] = summary["problems"].get(_kind(p), 0) + 1
            summary["examples"].append(p[:1000])
    else:
        index = iter(range(10**9))

        @hseed(seed)
        @settings(max_examples=cases if reader != "batch" else max(1, cases // 50), deadline=None, database=None,
                  derandomize=False, suppress_health_check=list(HealthCheck))
        @given(data=__import__("hypothesis").strategies.data())
        def run(data):
            if reader == "batch":
                from hypothesis import strategies as st

                batch = [data.draw(st.one_of(*[s() for s in READERS.values()])) for _ in range(50)]
                folder = root / f"b{next(index)}"
                start = time.perf_counter()
                problems, stats = run_batch_subprocess(batch, folder, Path(model), timeout=600)
                seconds = time.perf_counter() - start
                summary["cases"] += len(batch)
                summary["exits"]["batch"] = summary["exits"].get("batch", 0) + 1
                label = "batch of 50"
            else:
                case = data.draw(READERS[reader]())
                inflight = save_case(case, failures_folder() / f"inflight-{os.getpid()}")  # kept if we crash
                peak_before = _peak_rss_mb()
                outcome = run_in_process(case, root, Path(model), next(index))
                shutil.rmtree(inflight, ignore_errors=True)
                problems, seconds, label = outcome.problems, outcome.seconds, repr(case)[:300]
                if _peak_rss_mb() > MEMORY_BOUND_MB >= peak_before:  # this case took the process past the bound
                    problems = [*problems, f"memory: peak RSS {_peak_rss_mb():.0f} MB > {MEMORY_BOUND_MB} MB"]
                summary["cases"] += 1
                summary["exits"][str(outcome.rc)] = summary["exits"].get(str(outcome.rc), 0) + 1
                summary["by_reader"][case.reader] = summary["by_reader"].get(case.reader, 0) + 1
                if problems:
                    save_case(case, failures_folder() / f"long-{case.reader}-{seed}-{summary['cases']}")
            if seconds > summary["slowest"][0]:
                summary["slowest"] = [seconds, label]
            for p in problems:
                summary["problems"][_kind(p)] = summary["problems"].get(_kind(p), 0) + 1
                if len(summary["examples"]) < 5:
                    summary["examples"].append(p[:1000])
            for child in list(root.iterdir()):
                shutil.rmtree(child, ignore_errors=True)

        run()
    summary["peak_rss_mb"] = _peak_rss_mb()
    summary["children_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("SUMMARY " + json.dumps(summary), flush=True)


def plan(total: int) -> list[tuple[str, int]]:
    sys.path.insert(0, str(REPO))
    from tests.fuzz.test_fuzz_readers import CI_COUNTS

    weights = dict(CI_COUNTS)
    reader_total = total * (1 - CORE_SHARE - BATCH_SHARE)
    shares = {name: reader_total * w / sum(weights.values()) for name, w in weights.items()}
    shares["core"], shares["batch"] = total * CORE_SHARE, total * BATCH_SHARE
    queues = {}
    for name, share in shares.items():
        size, left = (CHUNK if name != "batch" else 100), int(round(share))
        queues[name] = [min(size, left - at) for at in range(0, left, size)]
    chunks = []  # round robin, so that a budget cut leaves every reader sampled
    while any(queues.values()):
        chunks += [(name, queue.pop(0)) for name, queue in queues.items() if queue]
    return chunks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="start no chunk after this many seconds")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--json", help="append the report as JSON lines")
    parser.add_argument("--worker", nargs=4, metavar=("READER", "CASES", "SEED", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), int(args.worker[2]), args.worker[3])
        return 0

    sys.path.insert(0, str(REPO))
    from tests.python.conftest import build_toy_model

    model = build_toy_model(Path(tempfile.mkdtemp(prefix="fuzz-model-")) / "model")
    chunks = plan(args.cases)
    start = time.perf_counter()
    results, skipped = [], 0

    def one(item):
        nonlocal skipped
        i, (reader, n) = item
        if time.perf_counter() - start > args.budget_s:
            skipped += n
            return None
        cmd = [sys.executable, __file__, "--worker", reader, str(n), str(args.seed + i), str(model)]
        from tests.fuzz.corpus import failures_folder

        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                errors="replace")

        def kept():  # this chunk's in-flight case, not the other job's
            return sorted(failures_folder().glob(f"inflight-{proc.pid}"))

        try:  # a case runs in well under a second: a chunk past 60 s + 2 s per case holds a hang
            stdout, stderr = proc.communicate(timeout=60 + 2 * n)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            for folder in kept():
                folder.rename(folder.with_name(f"hang-{reader}-{i}-{folder.name}"))
            return {"reader": reader, "cases": n, "problems": {"hang": 1},
                    "examples": [f"chunk timed out (in-flight case kept in {failures_folder()})"]}
        line = next((l for l in stdout.splitlines() if l.startswith("SUMMARY ")), None)
        if proc.returncode != 0 or line is None:
            inflight = kept()
            for folder in inflight:
                folder.rename(folder.with_name(f"crash-{reader}-{i}-{folder.name}"))
            killed = " (SIGKILL: the kernel's out-of-memory killer, see dmesg)" if proc.returncode == -9 else ""
            return {"reader": reader, "cases": n, "problems": {"crash": 1},
                    "examples": [f"chunk exited {proc.returncode}{killed} ({len(inflight)} in-flight case(s) kept "
                                 f"in {failures_folder()}): {stderr[-1500:]}"]}
        summary = json.loads(line[len("SUMMARY "):])
        peak = max(summary.get("peak_rss_mb", 0), summary.get("children_peak_rss_mb", 0))
        if peak > MEMORY_BOUND_MB and not summary["problems"].get("memory"):  # not already pinned on a case
            summary["problems"]["memory"] = summary["problems"].get("memory", 0) + 1
            summary["examples"].append(f"chunk peak RSS {peak:.0f} MB > {MEMORY_BOUND_MB} MB")
        return summary

    with ThreadPoolExecutor(args.jobs) as pool:
        for result in pool.map(one, enumerate(chunks)):
            if result is not None:
                results.append(result)
                done = sum(r["cases"] for r in results)
                print(f"  {done} cases, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    report(results, time.perf_counter() - start, skipped, args)
    return 1 if any(r["problems"] for r in results) else 0


def report(results, seconds, skipped, args) -> None:
    rows = {}
    for r in results:
        readers = r.get("by_reader") or {r["reader"]: r["cases"]}
        for name, n in readers.items():
            row = rows.setdefault(name, {"cases": 0, "exits": {}, "problems": {}, "slowest": [0.0, ""]})
            row["cases"] += n
        row = rows.setdefault(r["reader"], {"cases": 0, "exits": {}, "problems": {}, "slowest": [0.0, ""]})
        for k, v in r.get("exits", {}).items():
            row["exits"][k] = row["exits"].get(k, 0) + v
        for k, v in r.get("problems", {}).items():
            row["problems"][k] = row["problems"].get(k, 0) + v
        if r.get("slowest", [0])[0] > row["slowest"][0]:
            row["slowest"] = r["slowest"]
    cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if l.startswith("Model name")), platform.processor())
    peak = max([r.get("peak_rss_mb", 0) for r in results] + [r.get("children_peak_rss_mb", 0) for r in results] + [0])
    total = sum(r["cases"] for r in results)
    print(f"fuzz: {total} cases in {seconds:.0f} s ({skipped} not started: budget), {args.jobs} jobs, seed {args.seed}, "
          f"{cpu}, {os.cpu_count()} CPUs; peak RSS of any process {peak:.0f} MB")
    print(f"{'reader':12} {'cases':>7} {'exits/outcomes':34} {'crash':>5} {'hang':>5} {'partial':>7} {'outside':>7} "
          f"{'memory':>6} {'other':>5}  slowest")
    for name in sorted(rows):
        row = rows[name]
        p = row["problems"]
        exits = ", ".join(f"{k}: {v}" for k, v in sorted(row["exits"].items()))
        slowest = re.sub(r"\s+", " ", str(row["slowest"][1]))[:90]
        print(f"{name:12} {row['cases']:7d} {exits:34} {p.get('crash', 0):5d} {p.get('hang', 0):5d} "
              f"{p.get('partial', 0):7d} {p.get('outside', 0):7d} {p.get('memory', 0):6d} {p.get('other', 0):5d}  "
              f"{row['slowest'][0]:.2f} s {slowest}")
    for r in results:
        for example in r.get("examples", [])[:3]:
            print(f"  [{r['reader']}] {example[:600]}")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"total": total, "seconds": seconds, "skipped": skipped, "cpu": cpu, "peak_rss_mb": peak,
                                "readers": rows, "seed": args.seed}) + "\n")


if __name__ == "__main__":
    sys.exit(main())
