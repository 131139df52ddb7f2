"""Run one fuzz case through `repmedsam-ov infer` and the Python readers, and check the invariants.

Invariants (issue #13): exit code 0, 1 or 2 only; a failure is one readable error line naming a file of the
case (or the argument); no traceback without -v; no partial or temporary file in the output folder, and no
label output for a failed single input; nothing written outside -o (the case's sandbox and its parent are
compared before and after, so `../` and absolute names that became paths would show); no hang (a soft
per-case limit here, a hard timeout in the subprocess runs). The Python readers (`load_case`, `read_volume`,
`read_image_2d`, `load_boxes`) must return or raise `InputError`, never another exception.

In-process runs share one compiled model per (folder, precision, threads) so that a case costs what its reading
costs; `run_batch_subprocess` runs the real CLI in a child process with a timeout (crashes, aborts, hangs and
stray output on the C-level stderr show only there). No torch.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from repmedsam_ov.errors import InputError

from .gen import Hostile

SOFT_LIMIT_S = 30.0  # a case taking longer is reported as a hang
MAX_LINE = 1500      # an error line longer than this is not readable
SUMMARY = re.compile(r"^\d+ done, \d+ skipped, \d+ failed$")


@dataclass
class Outcome:
    reader: str
    rc: int | None
    seconds: float
    err: str = ""
    problems: list[str] = field(default_factory=list)


def materialise(case: Hostile, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in case.files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) of everything under root, except under `skip`."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = here / name
            if path == skip:
                continue
            try:
                st = path.lstat()
            except OSError:
                continue
            found[str(path.relative_to(root))] = (st.st_size if path.is_file() else 0, st.st_mtime_ns if
                                                  path.is_file() else 0)
    return found


# every SAMPLE_EVERY-th case run in-process, kept for the child-process batch test (test_fuzz_subprocess.py):
# Hypothesis cannot draw 50 whole cases in one example (its choice buffer overruns), so the batch reuses these
SAMPLE_EVERY = 17
SAMPLED: list[Hostile] = []
_ENGINES: dict = {}


def _cached_make_backend(args):
    """infer.make_backend with one compiled model per (model, precision, threads, cache folder): a case costs its
    I/O. The patch outlives the fuzz tests, so the key holds every option that changes the backend."""
    key = (args.model, args.precision, args.threads, args.backend, args.cache_dir)
    if key not in _ENGINES:
        _ENGINES[key] = _ORIGINAL_MAKE_BACKEND(args)
    return _ENGINES[key]


_ORIGINAL_MAKE_BACKEND = None


def use_cached_engines() -> None:
    global _ORIGINAL_MAKE_BACKEND
    from repmedsam_ov.commands import infer

    if _ORIGINAL_MAKE_BACKEND is None:
        _ORIGINAL_MAKE_BACKEND = infer.make_backend
        infer.make_backend = _cached_make_backend


def names_of(case: Hostile) -> set[str]:
    """Every path component of the case's files: an error line must name one of them."""
    names = set()
    for rel in list(case.files) + case.inputs:
        names.update(part for part in Path(rel).parts if part)
    return names


def check_output_folder(out: Path, case: Hostile, rc: int) -> list[str]:
    problems = []
    if not out.exists():
        return problems
    for path in out.rglob("*"):
        if path.name.startswith(".") or ".part" in path.name:
            problems.append(f"partial/temporary file left in the output folder: {path.name}")
    labels = [p for p in out.iterdir() if p.is_file()]
    if rc != 0 and len(case.inputs) == 1 and labels:
        problems.append(f"a failed input left outputs: {[p.name for p in labels]}")
    if rc == 0 and not labels:
        problems.append("exit 0 but no output written")
    return problems


def check_stderr(err: str, case: Hostile, rc: int, verbose: bool = False) -> list[str]:
    problems = []
    if "Traceback" in err and not verbose:
        problems.append("traceback without -v")
    lines = [line for line in err.splitlines() if "error:" in line]
    if rc != 0:
        if not lines:
            problems.append(f"exit {rc} without an error line")
        names = names_of(case)
        for line in lines:
            if not any(name in line for name in names) and "-o" not in line and "--" not in line:
                problems.append(f"error line names no file of the case: {line[:300]!r}")
            if len(line) > MAX_LINE:
                problems.append(f"error line of {len(line)} characters: {line[:200]!r}...")
        if rc == 1 and len(case.inputs) == 1 and len(lines) != 1:
            problems.append(f"{len(lines)} error lines for one input: {lines[:3]!r}")
    return problems


@contextlib.contextmanager
def _chdir(path: Path):  # contextlib.chdir is Python 3.11+
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_in_process(case: Hostile, root: Path, model: Path, index: int) -> Outcome:
    """The case through `repmedsam_ov.cli.main` in this process (cwd = its input folder), invariants checked."""
    from repmedsam_ov.cli import main

    use_cached_engines()
    if index % SAMPLE_EVERY == 0:
        SAMPLED.append(case)
    sandbox = root / f"case{index:06d}"
    inputs, out = sandbox / "in", sandbox / "out"
    materialise(case, inputs)
    before_root = set(os.listdir(root))
    before = snapshot(sandbox, skip=out)
    argv = ["infer", *case.inputs, "-o", str(out), "-m", str(model), *case.args]
    err, rc, problems = io.StringIO(), None, []
    start = time.perf_counter()
    try:
        with _chdir(inputs), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(argv)
    except SystemExit as e:  # argparse usage errors
        rc = e.code if isinstance(e.code, int) else 2
    except BaseException as e:  # noqa: BLE001 -- anything escaping main is a defect
        problems.append(f"uncaught {type(e).__name__} from main: {e}\n{traceback.format_exc()}")
    seconds = time.perf_counter() - start
    text = err.getvalue()
    if rc not in (0, 1, 2):
        problems.append(f"exit code {rc!r}")
    if seconds > SOFT_LIMIT_S:
        problems.append(f"hang: {seconds:.1f} s")
    problems += check_stderr(text, case, rc or 0)
    problems += check_output_folder(out, case, rc or 0)
    after = snapshot(sandbox, skip=out)
    changed = sorted(k for k in set(after) | set(before) if after.get(k) != before.get(k))
    new_root = set(os.listdir(root)) - before_root - {sandbox.name}
    if changed or new_root:
        problems.append(f"written outside -o: {changed[:5]} {sorted(new_root)[:5]}")
    problems += check_api(case, inputs)
    return Outcome(case.reader, rc, seconds, text, problems)


def check_api(case: Hostile, folder: Path) -> list[str]:
    """The readers called directly: success or InputError, nothing else."""
    from repmedsam_ov.boxes_file import load_boxes
    from repmedsam_ov.io import load_case
    from repmedsam_ov.medical_io import kind_of, read_image_2d, read_volume, split_ext

    problems = []
    for rel in case.inputs:
        path = folder / rel
        kind = kind_of(path) or "npz"
        calls = [(load_case if kind == "npz" else read_image_2d if kind == "image" else read_volume, path)]
        stem = path.name if path.is_dir() else split_ext(path)[0]
        for box in (folder / f"{stem}.boxes.json", folder / f"{stem}.boxes.csv"):
            if box.is_file():
                calls.append((lambda p, c=6 if kind != "image" else 4: load_boxes(p, path, c), box))
        for call, arg in calls:
            try:
                call(arg)
            except InputError as e:
                if "\n" in str(e):
                    problems.append(f"API: multi-line InputError from {getattr(call, '__name__', 'load_boxes')}: {e!s:.300}")
            except Exception as e:  # noqa: BLE001
                problems.append(f"API: {getattr(call, '__name__', 'load_boxes')}({arg.name}) raised "
                                f"{type(e).__name__}: {e!s:.300}")
    return problems


def run_batch_subprocess(cases: list[Hostile], root: Path, model: Path, timeout: float) -> tuple[list[str], dict]:
    """All cases through ONE real `python -m repmedsam_ov infer` child (each in its own sub-folder, given as
    one input list, as a user's batch): the child must end by itself within `timeout` with exit 0 or 1, its
    summary must count every case, each failure line must name its file, and nothing may be left behind."""
    inputs, out = root / "in", root / "out"
    argv = []
    for i, case in enumerate(cases):
        # a unique name per case (its files' first path component prefixed), so outputs never collide
        renamed = Hostile(case.reader, {f"c{i:04d}_{rel}": data for rel, data in case.files.items()},
                          [f"c{i:04d}_{rel}" for rel in case.inputs], case.args, case.note)
        materialise(renamed, inputs)
        argv += [str(inputs / rel) for rel in renamed.inputs]
    before = snapshot(root, skip=out)
    start = time.perf_counter()
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    cmd = [sys.executable, "-m", "repmedsam_ov", "infer", *argv, "-o", str(out), "-m", str(model)]
    problems, stats = [], {"cases": len(argv)}  # inputs given (folders count once)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, errors="replace")
    except subprocess.TimeoutExpired:
        return [f"hang: the batch of {len(argv)} did not finish in {timeout} s"], stats
    stats["seconds"] = time.perf_counter() - start
    err = proc.stderr
    if proc.returncode not in (0, 1):
        problems.append(f"exit code {proc.returncode} (negative = killed by a signal: a crash)\n{err[-3000:]}")
    if "Traceback" in err:
        problems.append(f"traceback without -v:\n{err[-3000:]}")
    summary = [line for line in err.splitlines() if SUMMARY.match(line.strip())]
    if not summary:
        problems.append(f"no summary line:\n{err[-2000:]}")
    else:
        done, skipped, failed = map(int, re.findall(r"\d+", summary[-1]))
        stats.update(done=done, failed=failed)
        from repmedsam_ov.cases import collect_inputs

        expected = len(collect_inputs(argv))  # a folder that is not a DICOM series expands to its files
        if done + skipped + failed != expected:
            problems.append(f"summary {summary[-1]!r} does not count the {expected} inputs")
    ours = re.compile(r"^(repmedsam-ov|\[\d+/\d+\]|\s+failed: |\d+ done|.*: (CT window|intensities|[A-Z]+: 0\.5))")
    stray = [line for line in err.splitlines() if line.strip() and not ours.match(line)]
    if stray:
        problems.append(f"{len(stray)} stray stderr lines (not ours), e.g. {stray[:3]!r}")
    for path in out.rglob("*") if out.exists() else []:
        if path.name.startswith(".") or ".part" in path.name:
            problems.append(f"partial/temporary file left: {path}")
    after = snapshot(root, skip=out)
    changed = sorted(k for k in set(after) | set(before) if after.get(k) != before.get(k))
    if changed:
        problems.append(f"written outside -o: {changed[:5]}")
    return problems, stats


_INTERNAL = re.compile(r"std::|bad_alloc|_M_|vector::|basic_string|Unable to cast|nullptr|pybind11|Exception from src/|\.cpp:\d+")


def run_core_worker(model: Path, seed: int, cases: int, timeout: float) -> tuple[list[str], dict]:
    """`core_worker` in a child process: it must exit 0 within `timeout` after every case; every rejection must
    be an exception with a user-readable message (no empty text, no C++ internals such as std::bad_alloc)."""
    repo = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "tests.fuzz.core_worker", str(model), "--seed", str(seed), "--cases", str(cases)]
    stats: dict = {"cases": 0, "ok": 0, "rejected": 0, "types": {}, "slowest": (0.0, None)}
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=repo, errors="replace")
        out, rc = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""), None
    stats["seconds"] = time.perf_counter() - started
    problems, last_case, cases_by_i = [], None, {}
    for line in out.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "case" in record:
            last_case = record
            cases_by_i[record["i"]] = record["case"]
            continue
        stats["cases"] += 1
        stats[record["outcome"]] += 1
        if record["seconds"] > stats["slowest"][0]:
            stats["slowest"] = (record["seconds"], cases_by_i.get(record["i"]))
        if record["outcome"] == "rejected":
            kind = f"{record['op']}: {record['type']}"
            stats["types"][kind] = stats["types"].get(kind, 0) + 1
            if not record["message"].strip() or _INTERNAL.search(record["message"]):
                problems.append(f"rejection without a user message: {record['type']}: {record['message']!r} for "
                                f"{json.dumps(cases_by_i.get(record['i']))[:600]}")
    if rc is None:
        problems.append(f"hang: the worker did not finish {cases} cases in {timeout} s; last case "
                        f"{json.dumps(last_case)[:800]}")
    elif rc != 0:
        problems.append(f"crash: the worker exited with {rc} (negative: killed by signal {-rc}) during case "
                        f"{json.dumps(last_case)[:800]}\n{proc.stderr[-2000:]}")
    return problems, stats
