"""Many machines: `infer`'s cases segmented by a pool of Ray actors (Ray Data), one `Segmenter` per actor.

The driver builds the case list once with `infer`'s rules (`cases.plan_cases`), reports the outputs that
already exist as skipped, and streams the other cases to an actor pool: one case per block and one task in flight
per actor, so cases leave the driver only as actors free up (backpressure) and a dead actor takes only its own
case down. Each actor compiles the model once and runs `infer`'s per-case step (`segment_case`): the same
readers, writers and atomic writes, so outputs are byte for byte those of a plain `infer`. A bad input comes
back as a failed outcome (the run goes on); an actor process that dies is replaced by Ray and its case retried
on the new one, at most `retries` times, then reported failed; a re-run skips what is done.

Imports ray only inside functions (the `[cluster]` extra), so `import repmedsam_ov` and plain `infer` never
load it; never imports torch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from .cases import Outcome, plan_cases, segment_case
from .errors import ModelError

__all__ = ["INSTALL", "Outcome", "RayMissing", "quiet_console", "segment_files"]

INSTALL = "pip install 'repmedsam-ov[cluster]'"

log = logging.getLogger("repmedsam_ov")


class RayMissing(ImportError):
    """Ray (the `[cluster]` extra) is not installed; the message says how to install it."""


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (the actor pool)
    except ImportError as e:
        raise RayMissing(f"--ray needs Ray, which is not installed ({e.name} is missing): {INSTALL}") from None
    return ray


def _state(target: Path) -> str:
    """The file at `target` as the planning driver saw it ("" when absent): size and modification time (both
    kept by the file server, unlike inode numbers on some network file systems). An atomic write gives a
    new file, so a changed state tells an actor that an earlier attempt of this run already wrote it."""
    try:
        st = target.stat()
    except OSError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"


def _remove_parts(target: Path) -> None:
    """Temporary files (`atomic.atomic_path`) left beside `target` by an attempt whose process died."""
    for part in target.parent.glob(f".{target.name}.*.part*"):
        part.unlink(missing_ok=True)


class _Attempts:
    """A Ray actor counting the attempts at each case: Ray replaces a dead actor and retries its task without
    end, and this count, kept outside the actors, is what bounds it."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def begin(self, index: int) -> int:
        self.counts[index] = self.counts.get(index, 0) + 1
        return self.counts[index]


class _CaseActor:
    """A Ray actor: the model compiled once (`threads` threads, the CPUs Ray reserved for it), then one case
    per call. A row is {"index", "path", "target", "state"}; the result is {"index"} + the Outcome's fields."""

    def __init__(self, model: str | None, precision: str, threads: int, options, cwd: str, attempts,
                 retries: int) -> None:
        if os.path.isdir(cwd):  # relative paths mean what they meant to the driver (shared folders)
            os.chdir(cwd)
        from .engines import make_engine

        self.options, self.attempts, self.retries = options, attempts, retries
        try:
            self.segment = make_engine(f"runtime-{precision}", model and Path(model), None, threads)
            self.model_error = ""
        except ModelError as e:  # returned with the first case: the driver stops the run with this message
            self.segment, self.model_error = None, str(e)

    def __call__(self, row: dict) -> dict:
        import ray

        path, target = row["path"], Path(row["target"])
        attempt = 0 if self.model_error else ray.get(self.attempts.begin.remote(row["index"]))
        if self.model_error:
            outcome = Outcome(path, row["target"], "model-error", message=self.model_error)
        elif attempt > self.retries + 1:  # each attempt so far took its actor process down with it
            _remove_parts(target)
            outcome = Outcome(path, row["target"], "failed", message=(
                f"{path}: the Ray actor segmenting it died {attempt - 1} time{'s' if attempt > 2 else ''} (killed, "
                "out of memory, or a crash in native code); nothing was written. Ray's logs: "
                "/tmp/ray/session_latest/logs on the node that ran it."))
        elif _state(target) != row["state"]:  # the process of an earlier attempt died after writing it
            outcome = Outcome(path, row["target"], "done", message="written by an earlier attempt")
        else:
            _remove_parts(target)
            outcome = segment_case(Path(path), target, self.segment, self.options, overwrite=True)
        return {"index": row["index"], **asdict(outcome)}


def _pool_size(ray, threads: int | None, actors: tuple[int, int] | None) -> tuple[int, int, int]:
    """(threads per actor, min actors, max actors): threads default to the CPUs of the smallest node, actors to
    1 .. cluster CPUs // threads."""
    cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    cpus = [c for c in cpus if c > 0] or [1]
    threads = threads or min(cpus)
    low, high = actors or (1, max(1, sum(cpus) // threads))
    if threads > max(cpus) or low * threads > sum(cpus):  # Ray waits for CPUs that may never come
        log.warning("%d actor%s x %d threads: the Ray cluster now has %d CPUs (at most %d on a node); actors wait "
                    "until it has them (pass fewer --actors or -t)", low, "" if low == 1 else "s", threads,
                    sum(cpus), max(cpus))
    return threads, low, high


@contextlib.contextmanager
def _ray_data_settings(verbose: bool):
    """Ray Data's logs and progress bars on the console only when verbose (they stay in Ray's log folder), and
    a failed block reported as a failed case rather than ending the run; restored afterwards."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    data_log = logging.getLogger("ray.data")
    saved = ctx.max_errored_blocks, ctx.enable_progress_bars, data_log.level
    ctx.max_errored_blocks = -1
    ctx.enable_progress_bars = verbose
    data_log.setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    try:
        yield
    finally:
        ctx.max_errored_blocks, ctx.enable_progress_bars, _ = saved
        data_log.setLevel(saved[2])


@contextlib.contextmanager
def quiet_console(verbose: bool):
    """For the CLI: what Ray prints on its own, off the console unless verbose — its driver's copies of error
    events (on stdout) and its C++ core's lines (on descriptor 2; the CLI writes through a duplicate). Ray's
    log folder keeps them all."""
    from .medical_io import _native_stderr_muted

    if verbose:
        yield
        return
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), _native_stderr_muted():
        yield


def segment_files(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, address: str | None = None, *,
                  model: str | os.PathLike | None = None, precision: str = "auto", threads: int | None = None,
                  actors: int | tuple[int, int] | None = None, overwrite: bool = False, retries: int = 2,
                  boxes: str | os.PathLike | None = None, box_space: str | None = None, modality: str = "auto",
                  window: str = "soft-tissue", overlay: str | os.PathLike | None = None, max_voxels: int | None = None,
                  on_start: Callable[[int], None] | None = None, on_case: Callable[[Outcome], None] | None = None,
                  verbose: bool = False) -> list[Outcome]:
    """`repmedsam-ov infer INPUTS -o OUTPUT --ray [ADDRESS]` from Python: segment files on a Ray cluster.

    Args:
        inputs, output: as `infer`'s INPUT and -o (files, DICOM series folders, folders of them; an output
            folder, or for one volume or image an output file). Every node must read and write them at the
            same path (a shared file system); relative paths are taken from this process's working folder.
        address: None starts a local Ray instance (or joins the one $RAY_ADDRESS or a `ray start` on this
            machine names); "auto" or "HOST:6379" an existing cluster, "ray://HOST:10001" one through Ray Client
            (the pool is then driven by a task on the cluster). When this process is already
            connected (`ray.init` was called), that connection is used and left open.
        model, precision: as `Segmenter` (model None: the bundled model of each node's installation).
        threads: threads per actor, and the CPUs Ray reserves for each; None: the CPUs of the smallest node.
        actors: N actors, or (MIN, MAX) for a pool that grows with the work; None: 1 .. cluster CPUs // threads.
        overwrite: segment cases whose output exists (default: report them skipped).
        retries: how many times a case is retried on a replacement actor when its actor process dies
            (killed, out of memory, a crash in native code); then it is reported failed.
        boxes, box_space, modality, window, overlay, max_voxels: as `infer`'s options of those names.
        on_start: called once with the number of cases, before any outcome.
        on_case: called with each case's Outcome as it arrives (skipped ones first), e.g. to show progress.
        verbose: let Ray and Ray Data print their logs and progress bars (default: they stay in Ray's log
            folder; `quiet_console` also keeps Ray's own prints off the console).

    Returns:
        One `Outcome` per case ("done", "skipped" or "failed" with the one-line message `infer`
        prints), in the order they finished. Bad cases do not raise.

    Raises:
        RayMissing (an ImportError) without the `[cluster]` extra; InputError or UsageError when there are no
        cases or the options do not fit (before Ray starts); ModelError when no actor can load the model.
    """
    ray = _import_ray()
    cases, targets, options = plan_cases(inputs, output, boxes=boxes, box_space=box_space, modality=modality,
                                         window=window, overlay=overlay, max_voxels=max_voxels)
    if isinstance(actors, int):
        actors = (actors, actors)
    outcomes: list[Outcome] = []

    def report(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if on_case is not None:
            on_case(outcome)

    if on_start is not None:
        on_start(len(cases))
    todo = []
    for index, (path, target) in enumerate(zip(cases, targets)):
        if target.exists() and not overwrite:
            report(Outcome(str(path), str(target), "skipped"))
        else:
            todo.append({"index": index, "path": str(path), "target": str(target), "state": _state(target)})
    if not todo:
        return outcomes
    connected_here = not ray.is_initialized()
    with warnings.catch_warnings():
        # Ray warns about its own deprecated settings when it builds its defaults; not ours to act on
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
        if connected_here:
            ray.init(address=address, include_dashboard=False, log_to_driver=verbose,
                     logging_level=logging.INFO if verbose else logging.ERROR)
        try:
            finished = _run_pool(ray, todo, report, model=model, precision=precision, threads=threads,
                                 actors=actors, retries=retries, options=options, cwd=os.getcwd(), verbose=verbose)
        finally:
            if connected_here:
                ray.shutdown()
    for item in todo:
        if item["index"] not in finished:  # not expected: a task that failed in Ray itself
            report(Outcome(item["path"], item["target"], "failed", message=(
                f"{item['path']}: its Ray task failed (see Ray's logs: /tmp/ray/session_latest/logs); nothing "
                "was written.")))
    return outcomes


def _run_pool(ray, todo: list[dict], report, **pool) -> set[int]:
    """Stream `todo` through the actor pool, reporting each outcome; returns the indices that came back. Through
    Ray Client (a ray:// address) the pool is driven by a task on the cluster, whose rows stream back: Ray Data
    does not run from a Ray Client process, nor do streaming generators, so the rows come through a queue."""
    rows = _client_rows(ray, todo, pool) if ray.util.client.ray.is_connected() else _pool_rows(todo, **pool)
    finished: set[int] = set()
    for row in rows:
        if row["status"] == "model-error":  # as plain infer, which stops before its first case
            raise ModelError(str(row["message"]))
        finished.add(int(row["index"]))
        report(Outcome(path=str(row["path"]), target=str(row["target"]), status=str(row["status"]),
                       boxes=int(row["boxes"]), seconds=float(row["seconds"]), message=str(row["message"]),
                       details=str(row["details"])))
    return finished


def _pool_rows(todo: list[dict], *, model, precision, threads, actors, retries, options, cwd, verbose):
    """The actor pool over `todo`, in a process connected to the cluster as a driver: yields each result row
    (a dict) as it arrives."""
    import ray
    from ray.data import ActorPoolStrategy

    with _ray_data_settings(verbose):
        threads, low, high = _pool_size(ray, threads, actors)
        attempts = ray.remote(num_cpus=0)(_Attempts).remote()
        log.debug("Ray: %d..%d actors x %d threads, %d cases", low, high, threads, len(todo))
        dataset = ray.data.from_items(todo, override_num_blocks=len(todo)).map(
            _CaseActor, compute=ActorPoolStrategy(min_size=low, max_size=high, max_tasks_in_flight_per_actor=1),
            fn_constructor_kwargs=dict(model=None if model is None else str(model), precision=precision,
                                       threads=threads, options=options, cwd=cwd, attempts=attempts,
                                       retries=retries),
            num_cpus=threads)  # Ray Data's actor defaults: dead actors restarted, their tasks retried
        for row in dataset.iter_rows():
            yield dict(row)


def _rows_into(queue, todo: list[dict], pool: dict) -> None:
    """On the cluster, for a Ray Client driver: the pool's rows into `queue`, then None."""
    try:
        for row in _pool_rows(todo, **pool):
            queue.put(row)
    finally:
        queue.put(None)


def _client_rows(ray, todo: list[dict], pool: dict):
    from ray.util.queue import Empty, Queue

    queue = Queue(actor_options={"num_cpus": 0})
    task = ray.remote(num_cpus=0)(_rows_into).remote(queue, todo, pool)
    while True:
        try:
            row = queue.get(timeout=1.0)
        except Empty:
            if ray.wait([task], timeout=0)[0]:  # ended without its None: its error, if any, is raised below
                break
            continue
        if row is None:
            break
        yield row
    ray.get(task)
