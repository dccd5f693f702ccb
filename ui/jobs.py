"""Background work with progress (indexing, tagging, tuning), shared by every browser tab of one UI process.

Streamlit reruns a page's script on every click, so long work cannot live in it: a `Task` runs in a daemon thread,
reports progress into a plain object, and any rerun (of any session) reads it. The board keeps finished tasks so a
page can still show how the last run ended.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
POLL_SECONDS = 0.3
KEPT = 20  # finished tasks remembered per board


@dataclass
class Task:
    kind: str  # 'index' | 'tag' | 'train'
    label: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    state: str = "running"  # running | done | failed
    progress: float = 0.0  # 0..1 (best estimate)
    message: str = ""
    points: list[dict] = field(default_factory=list)  # a live series, e.g. one dict per epoch
    result: Any = None
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False)
    started: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def update(self, progress: float | None = None, message: str | None = None) -> None:
        if progress is not None:
            self.progress = min(1.0, max(0.0, float(progress)))
        if message is not None:
            self.message = message


class TaskBoard:
    def __init__(self):
        self._tasks: list[Task] = []
        self._lock = threading.Lock()

    def start(self, kind: str, label: str, work: Callable[[Task], Any],
              on_done: Callable[[Task], None] | None = None) -> Task:
        """Run `work(task)` in a daemon thread; its return value becomes `task.result`."""
        task = Task(kind, label)
        with self._lock:
            self._tasks.append(task)
            finished = [t for t in self._tasks if not t.running]
            for old in finished[: max(0, len(finished) - KEPT)]:
                self._tasks.remove(old)
        threading.Thread(target=self._run, args=(task, work, on_done), name=f"loupe-ui-{kind}", daemon=True).start()
        return task

    def _run(self, task: Task, work: Callable[[Task], Any], on_done: Callable[[Task], None] | None) -> None:
        try:
            task.result = work(task)
            task.progress, task.state = 1.0, "done"
        except Exception as err:  # reported on the page that started it; the UI keeps serving
            log.exception("%s task %r failed", task.kind, task.label)
            task.error, task.exception, task.state = f"{type(err).__name__}: {err}", err, "failed"
        task.finished = time.time()
        if on_done is not None:
            try:
                on_done(task)
            except Exception:  # a failing refresh must not hide the task's own outcome
                log.exception("after %s task %r", task.kind, task.label)

    def get(self, task_id: str) -> Task | None:
        with self._lock:
            return next((t for t in self._tasks if t.id == task_id), None)

    def of_kind(self, kind: str) -> list[Task]:
        """Newest first."""
        with self._lock:
            return [t for t in reversed(self._tasks) if t.kind == kind]

    def running(self, kind: str) -> list[Task]:
        return [t for t in self.of_kind(kind) if t.running]


def index_work(services, folders: list[str]) -> Callable[[Task], dict]:
    """Submit an index job (to the owner, or to the UI's own job runner) and follow it until it ends."""

    def work(task: Task) -> dict:
        return follow_job(services, services.index(folders))(task)

    return work


def job_summary(report: dict) -> str:
    """'3 new · 2 unchanged · 1 failed', or what an empty folder deserves: 'no photos found there'."""
    parts = [(report.get("embedded", 0), "new"), (report.get("reused", 0), "already indexed elsewhere"),
             (report.get("unchanged", 0), "unchanged"), (report.get("failed", 0), "failed"),
             (report.get("deleted", 0), "gone")]
    said = " · ".join(f"{n} {label}" for n, label in parts if n)
    return said or "no photos found there"


def follow_job(services, job_id: str | None) -> Callable[[Task], dict]:
    """Follow an index job until it ends, reporting progress into the task.

    Progress is "pending files left" against the most ever seen pending during the job: the scan first discovers
    files (pending grows), then the pipeline works them off; the same numbers exist in both modes.
    """

    def work(task: Task) -> dict:
        peak = 0
        while job_id is not None:
            job = services.job(job_id)
            files = services.status().get("files", {})
            pending = int(files.get("pending", 0))
            peak = max(peak, pending)
            if job["state"] == "queued":
                task.update(0.0, "waiting for the job before it…")
            else:
                task.update(1 - pending / peak if peak else 0.0,
                            f"{files.get('indexed', 0)} indexed · {pending} pending · {files.get('failed', 0)} failed")
            if job["state"] == "failed":
                raise RuntimeError(job.get("error") or "the index job failed")
            if job["state"] == "done":  # what this job did, not the library's totals
                report = job.get("report") or {}
                task.update(1.0, job_summary(report))
                return report
            time.sleep(POLL_SECONDS)
        return {}

    return work
