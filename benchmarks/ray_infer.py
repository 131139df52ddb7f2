"""What Ray costs: the eval set through plain `repmedsam-ov infer` and through `--ray` with 1 and 2 actors, at equal
total threads, on this machine.

Each configuration is the CLI in a fresh process (as a user runs it), into a fresh output folder: `plain` (-t T),
`ray-1x{T}` (--ray --actors 1 -t T) and `ray-2x{T/2}` (--ray --actors 2 -t T/2), interleaved when --rounds > 1.
Per run: wall seconds, seconds per case, the overhead against plain in the same round (% and seconds per case),
the time to the first finished case less that case's own seconds (start-up: imports, Ray, model compile), the
seconds per case spent outside segmenting after start-up ((wall - start-up - case seconds / actors) / cases: what
Ray's dispatch costs, free of the case times' noise on a shared machine), and
peak RSS sampled every 0.1 s over the process tree, split into the driver, the actors (Ray's MapWorker processes),
Ray's other processes (GCS, raylet, agents, idle workers) and their sum at one instant. RSS counts shared pages
(libraries, Ray's object store) once per process, so the sums overstate what the machine holds. Outputs of all
configurations are compared byte for byte. Ray starts its workers at niceness 15 (its `worker_niceness`); the
local instances here run them at --ray-niceness (default 0, plain `infer`'s), so that on a machine shared with
other jobs both sides compete alike. Prints one table and appends JSON lines.

    python benchmarks/ray_infer.py [CASES_DIR] [--limit N] [-t 2] [--rounds 1] [-m MODEL_DIR] [--ray-niceness 0]
                                   [--json out.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from repmedsam_ov.bench import machine_facts

_LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+): (\d+) box(?:es)?, ([\d.]+) s -> ")


def pick(cases: list[Path], limit: int | None) -> list[Path]:
    """`limit` cases spread evenly over the sorted list (so every source keeps a share), or all."""
    if not limit or limit >= len(cases):
        return cases
    return [cases[round(i * (len(cases) - 1) / (limit - 1))] for i in range(limit)] if limit > 1 else cases[:1]


class TreeRSS:
    """Samples RSS of a process and all its descendants every `period` s: peak of the driver, of the Ray actors,
    of Ray's other processes, and of their sum at one instant, in bytes."""

    def __init__(self, pid: int, period: float = 0.1) -> None:
        self.root, self.period = psutil.Process(pid), period
        self.peak = {"driver": 0, "actors": 0, "ray": 0, "total": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = {"driver": 0, "actors": 0, "ray": 0}
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    name = " ".join(p.cmdline()[:1]) or p.name()
                except psutil.Error:
                    continue
                kind = "driver" if p.pid == self.root.pid else "actors" if "MapWorker" in name else "ray"
                now[kind] += rss
            for kind, value in now.items():
                self.peak[kind] = max(self.peak[kind], value)
            self.peak["total"] = max(self.peak["total"], sum(now.values()))
            self._stop.wait(self.period)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_config(name: str, extra: list[str], inputs: Path, out: Path, common: list[str], niceness: int) -> dict:
    cmd = [sys.executable, "-m", "repmedsam_ov", "infer", str(inputs), "-o", str(out), *common, *extra]
    env = {**os.environ, "RAY_worker_niceness": str(niceness)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    rss = TreeRSS(proc.pid)
    cases, first, lines = [], None, []
    for line in proc.stderr:
        lines.append(line)
        m = _LINE.match(line)
        if m:
            cases.append((m.group(3), float(m.group(5))))
            if first is None:
                first = time.perf_counter() - start - float(m.group(5))
    code = proc.wait()
    wall = time.perf_counter() - start
    peak = rss.stop()
    if code != 0:
        sys.exit(f"{name}: exit {code}\n{''.join(lines[-20:])}")
    return {"config": name, "wall_s": wall, "cases": len(cases), "case_s": sum(s for _, s in cases),
            "startup_s": first, "peak_rss_mb": {k: v / 2**20 for k, v in peak.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="?", default="../shared/data/eval/imgs", help="folder of npz cases")
    ap.add_argument("--limit", type=int, help="run this many cases, spread over the sorted list (default: all)")
    ap.add_argument("-t", "--threads", type=int, default=2, help="total threads of every configuration (even)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds of the three configurations")
    ap.add_argument("-m", "--model", help="model folder (default: the bundled model)")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--ray-niceness", type=int, default=0, help="niceness of Ray's workers (Ray's default: 15)")
    ap.add_argument("--json", metavar="FILE", help="append one JSON line per run")
    args = ap.parse_args()

    cases = pick(sorted(Path(args.cases).glob("*.npz")), args.limit)
    half = max(1, args.threads // 2)
    configs = [("plain", ["-t", str(args.threads)]),
               (f"ray-1x{args.threads}", ["--ray", "--actors", "1", "-t", str(args.threads)]),
               (f"ray-2x{half}", ["--ray", "--actors", "2", "-t", str(half)])]
    common = ["--precision", args.precision] + (["-m", args.model] if args.model else [])
    facts = machine_facts(args.threads)
    print(f"{facts['cpu']} | {facts['cores']} cores | OpenVINO {facts['openvino']} | {len(cases)} cases | "
          f"{args.threads} threads in total | commit {facts['commit']}", flush=True)
    print(f"{'round':>5} {'config':>10} {'wall s':>8} {'s/case':>7} {'overhead':>9} {'s/case over':>11} "
          f"{'start-up s':>10} {'idle s/case':>11} {'RSS MB: driver':>14} {'actors':>7} {'ray':>6} {'sum':>6}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="ray_infer_") as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        for case in cases:
            (inputs / case.name).symlink_to(case.resolve())
        reference = None
        for round_ in range(1, args.rounds + 1):
            plain_wall = None
            for name, extra in configs:
                out = Path(tmp) / f"{name}-{round_}"
                result = run_config(name, extra, inputs, out, common, args.ray_niceness)
                files = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
                reference = reference or files
                result["identical_outputs"] = files == reference
                plain_wall = plain_wall or result["wall_s"]
                n = max(1, result["cases"])
                result["overhead_pct"] = 100 * (result["wall_s"] - plain_wall) / plain_wall
                result["overhead_s_per_case"] = (result["wall_s"] - plain_wall) / n
                actors = int(extra[extra.index("--actors") + 1]) if "--actors" in extra else 1
                result["idle_s_per_case"] = (result["wall_s"] - (result["startup_s"] or 0)
                                             - result["case_s"] / actors) / n
                rss = result["peak_rss_mb"]
                print(f"{round_:>5} {name:>10} {result['wall_s']:>8.1f} {result['wall_s'] / n:>7.2f} "
                      f"{result['overhead_pct']:>8.1f}% {result['overhead_s_per_case']:>11.2f} "
                      f"{result['startup_s'] or 0:>10.1f} {result['idle_s_per_case']:>11.3f} {rss['driver']:>14.0f} {rss['actors']:>7.0f} "
                      f"{rss['ray']:>6.0f} {rss['total']:>6.0f}{'' if result['identical_outputs'] else '  DIFFERENT'}",
                      flush=True)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(result | {"round": round_, "precision": args.precision,
                                                     "ray_niceness": args.ray_niceness} | facts) + "\n")
                for path in out.iterdir():
                    path.unlink()


if __name__ == "__main__":
    main()
