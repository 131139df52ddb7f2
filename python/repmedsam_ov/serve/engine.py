"""The one model of a `serve` process: a `Segmenter` behind a single worker thread that runs jobs in order.

Requests never run the model on their own thread: they submit a job and await its future, so the event loop
stays free while slices are encoded. A job may carry a key (a case and an object): a newer job with the same
key supersedes the older one — dropped if it has not started, cancelled before its next decoder step if it
has. Jobs report progress (decoder steps done of `total`) and can be cancelled. Imports the runtime only;
never Starlette, never torch.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..errors import Cancelled
from ..session import Progress

__all__ = ["Engine", "Job", "Superseded"]

log = logging.getLogger("repmedsam_ov")

_KEEP_FINISHED = 200  # finished jobs kept for polling


class Superseded(Exception):
    """A newer request for the same object replaced this one before it finished."""


@dataclass
class Job:
    """One unit of model work. run(progress) does it (on the engine thread) and returns its result; state:
    queued, running, done, failed, cancelled or superseded; message: the error of a failed job."""

    id: str
    key: Hashable | None
    total: int
    run: Callable[[Progress], Any]
    progress: Progress = field(default_factory=Progress)
    future: Future = field(default_factory=Future)
    state: str = "queued"
    message: str = ""
    superseded: bool = False

    def snapshot(self) -> dict:
        """JSON-ready: id, state, steps done, total, message."""
        steps = self.total if self.state == "done" else min(self.progress.steps, self.total)
        return {"id": self.id, "state": self.state, "steps": steps, "total": self.total, "message": self.message}


class Engine:
    """Runs jobs one at a time on a worker thread (the Segmenter serialises its calls anyway, each using all
    its threads). `close()` stops the thread after the running job; queued jobs are cancelled."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._queue: deque[Job] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._running: Job | None = None
        self._ids = itertools.count(1)
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="repmedsam-engine", daemon=True)
        self._thread.start()

    def submit(self, run: Callable[[Progress], Any], *, key: Hashable | None = None, total: int = 1) -> Job:
        """Queue `run`; with a key, supersede the queued or running job of that key."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the engine is closed")
            job = Job(id=str(next(self._ids)), key=key, total=total, run=run)
            if key is not None:
                for other in [*self._queue, self._running]:
                    if other is not None and other.key == key:
                        self._stop(other, superseded=True)
            self._queue.append(job)
            self._jobs[job.id] = job
            self._trim()
            self._lock.notify_all()
        return job

    def job(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued or running job (a finished one is left as it is); None when there is no such job."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                self._stop(job, superseded=False)
            return job

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for job in list(self._queue):
                self._stop(job, superseded=False)
            if self._running is not None:
                self._running.progress.cancel()
            self._lock.notify_all()
        self._thread.join()

    def _stop(self, job: Job, *, superseded: bool) -> None:
        """Under the lock: drop a queued job (its future fails now) or cancel a running one (it fails when the
        model stops, at its next step)."""
        if job.state == "queued":
            self._queue.remove(job)
            self._finish(job, "superseded" if superseded else "cancelled",
                         error=Superseded() if superseded else Cancelled("cancelled before it started"))
        elif job.state == "running":
            job.superseded = superseded
            job.progress.cancel()

    def _finish(self, job: Job, state: str, result: Any = None, error: BaseException | None = None) -> None:
        job.state = state
        if error is None:
            job.future.set_result(result)
        else:
            job.message = str(error) if state == "failed" else state
            job.future.set_exception(error)

    def _trim(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.state not in ("queued", "running")]
        for k in finished[:max(0, len(finished) - _KEEP_FINISHED)]:
            del self._jobs[k]

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                job = self._running = self._queue.popleft()
                job.state = "running"
            try:
                result = job.run(job.progress)
            except Cancelled as e:
                state, error = ("superseded", Superseded()) if job.superseded else ("cancelled", e)
            except BaseException as e:  # reported to whoever awaits the job; the engine goes on
                state, error = "failed", e
                if not isinstance(e, ValueError):
                    log.debug("job %s failed", job.id, exc_info=True)
            else:
                state, error = "done", None
            with self._lock:
                self._running = None
                self._finish(job, state, result if error is None else None, error)
