"""Index jobs submitted through the owner's API (`POST /index`), run one at a time in submission order."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_JOBS_KEPT = 100  # finished jobs remembered for GET /jobs/{id}; older ones are forgotten


@dataclasses.dataclass
class Job:
    id: str
    paths: list[str]
    state: str = "queued"  # queued | running | done | failed
    report: dict[str, Any] | None = None  # RunReport as a dict once done
    error: str | None = None
    submitted: float = dataclasses.field(default_factory=time.time)
    finished: float | None = None


class JobRunner:
    """Runs `service.scan` for submitted folders, one job at a time in submission order.

    One at a time because scans serialise on the service's work lock anyway, and a single worker keeps a burst of
    requests from piling threads onto the model.
    """

    def __init__(self, service):
        self.service = service
        self._jobs: dict[str, Job] = {}  # in submission order
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="loupe-index-job")
        self._lock = threading.Lock()

    def submit(self, roots: tuple[Path, ...]) -> Job:
        job = Job(uuid.uuid4().hex[:12], [str(r) for r in roots])
        with self._lock:
            self._jobs[job.id] = job
            finished = [j.id for j in self._jobs.values() if j.state in ("done", "failed")]
            for old in finished[: max(0, len(self._jobs) - MAX_JOBS_KEPT)]:
                del self._jobs[old]
        self._pool.submit(self._run, job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def busy(self) -> bool:
        """A job is queued or running (a worker does not go to sleep under it)."""
        with self._lock:
            return any(j.state in ("queued", "running") for j in self._jobs.values())

    def close(self) -> None:
        """Drop queued jobs; the one in hand finishes (a running scan stops early only with `service.stop`)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, job: Job) -> None:
        job.state = "running"
        try:
            report = self.service.scan(tuple(Path(p) for p in job.paths))
            job.report, job.state = dataclasses.asdict(report), "done"
        except Exception as err:  # a failed job is reported to whoever polls it; the owner keeps serving
            log.exception("index job %s failed", job.id)
            job.error, job.state = f"{type(err).__name__}: {err}", "failed"
        job.finished = time.time()
