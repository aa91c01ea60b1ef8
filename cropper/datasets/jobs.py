"""Data-set jobs: their records, and the one place that moves a job from one status to the next.

A job is queued by a request, claimed by a worker, runs under a lease the worker renews as it
reports progress, and ends done, failed or cancelled. Every change is made under the job's lock,
read-modify-write, so the web workers (which submit and cancel) and the data-set worker (which
claims, reports and finishes) never overwrite each other. A worker that dies leaves a lease that
runs out: its job is taken up again (`recoverable`), and finds the crops it made in the crop cache.

Records live in a `storage.JobStore`: `FileJobStore` keeps them in the cache folder, one file per
job, written whole.
"""

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field

from .. import metrics
from ..errors import DatasetGoneError, DatasetNotFoundError, QueueUnavailableError, TooManyJobsError

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
LEASE_SECONDS = 30  # a worker that has not reported for this long is taken for dead
RECORDS_KEPT_SECONDS = 30 * 24 * 3600  # a removed job's record (so its URL answers 410, not 404) goes after this


@dataclass
class Job:
    """A data-set job's record."""

    id: str
    key: str  # the fingerprint of its normalised request: identical requests share a job
    request: dict  # the request as understood (DatasetRequest.to_dict)
    status: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    progress: dict = field(default_factory=lambda: {"boxes_total": None, "crops_done": 0, "crops_failed": 0,
                                                    "images_downloaded": 0})
    files: list = field(default_factory=list)  # [{"name", "size", "sha256", ...}] once done
    counts: dict = field(default_factory=dict)  # split -> label -> crops, once done
    error: dict | None = None  # {"code", "message"} of a failed job
    removed: str | None = None  # why its files are gone: cancelled, removed, expired, evicted
    lease_owner: str | None = None
    lease_until: float = 0.0

    @classmethod
    def from_dict(cls, data):
        return cls(**data)

    def to_dict(self):
        return asdict(self)


def worker_name():
    """Who holds a lease: this host, process and thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def _owner_is_gone(owner):
    """True if a lease's owner is a process of this host that no longer runs (killed, restarted)."""
    host, _, rest = (owner or "").partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it runs, as another user
        return False
    return False


class Jobs:
    """The lifecycle of data-set jobs over a JobStore, and the queue the worker takes them from."""

    def __init__(self, store, enqueue, queue_max):
        self.store = store  # a storage.JobStore
        self.enqueue = enqueue  # enqueue(job_id): hands a job to the worker's queue
        self.queue_max = queue_max

    def _get(self, job_id):
        record = self.store.get(job_id)
        return Job.from_dict(record) if record is not None else None

    def _put(self, job):
        self.store.put(job.id, job.to_dict())

    def _all(self):
        return (Job.from_dict(record) for record in self.store.all())

    # -- what the web API asks

    def submit(self, request):
        """(the job for a DatasetRequest, whether it is new): an identical queued, running or done job is
        shared; after a failed or cancelled one, a new job starts."""
        key = request.key
        with self.store.lock(f"request:{key}"):
            existing = self.store.job_of(key)
            job = self._get(existing) if existing else None
            if job and job.removed is None and job.status in ("queued", "running", "done"):
                return job, False
            waiting = sum(1 for other in self._all() if other.status == "queued")
            if waiting >= self.queue_max:
                raise TooManyJobsError(f"{waiting} data-set jobs are waiting already; try again later.",
                                       waiting=waiting)
            job = Job(uuid.uuid4().hex, key, request.to_dict())
            self._put(job)
            self.store.remember(key, job.id)
        metrics.dataset_job("queued")
        try:
            self.enqueue(job.id)
        except QueueUnavailableError:  # recorded as queued: a worker hands it to the queue when it can
            log.warning("data-set job %s recorded but not yet in the queue (it cannot be reached)", job.id)
        log.info("data-set job %s queued: %s", job.id, ", ".join(request.concepts))
        return job, True

    def get(self, job_id):
        """A job's record; DatasetNotFoundError if there never was one, DatasetGoneError if it was removed."""
        job = self._get(job_id) if _is_job_id(job_id) else None
        if job is None:
            raise DatasetNotFoundError(f"There is no data set with id {job_id[:64]!r}.")
        if job.removed:
            raise DatasetGoneError(f"This data set was {job.removed}.", status=job.status, removed=job.removed)
        return job

    def cancel(self, job_id, remove_files):
        """Cancel a queued or running job, or remove a finished one (remove_files(job) deletes its files)."""
        with self.store.lock(job_id):
            job = self.get(job_id)
            if job.status in ACTIVE:
                job.status, job.removed, job.finished = "cancelled", "cancelled", time.time()
                metrics.dataset_job("cancelled")
            else:
                job.removed = "removed"
            self._put(job)
        remove_files(job)  # a running job's worker sees the cancel and leaves off; what it wrote goes now
        log.info("data-set job %s %s", job.id, job.removed)
        return job

    # -- what the worker does

    def claim(self, job_id, owner):
        """Take a queued job (or one whose worker died) to run: its record, or None if it is not to be run."""
        with self.store.lock(job_id):
            job = self._get(job_id)
            if job is None or job.removed or not self._runnable(job):
                return None
            job.status, job.lease_owner, job.lease_until = "running", owner, time.time() + LEASE_SECONDS
            job.started = job.started or time.time()
            self._put(job)
            return job

    @staticmethod
    def _runnable(job):
        if job.status == "queued":
            return True
        return job.status == "running" and (job.lease_until < time.time() or _owner_is_gone(job.lease_owner))

    def report(self, job_id, owner, **progress):
        """Record progress and renew the lease; False if the job is no longer this worker's to run."""
        with self.store.lock(job_id):
            job = self._get(job_id)
            if job is None or job.status != "running" or job.lease_owner != owner:
                return False
            job.progress.update(progress)
            job.lease_until = time.time() + LEASE_SECONDS
            self._put(job)
            return True

    def finish(self, job_id, owner, files, counts, progress):
        return self._end(job_id, owner, status="done", files=files, counts=counts, progress=progress)

    def fail(self, job_id, owner, code, message, progress=None):
        return self._end(job_id, owner, status="failed", error={"code": code, "message": message},
                         progress=progress or {})

    def _end(self, job_id, owner, status, progress, **fields):
        with self.store.lock(job_id):
            job = self._get(job_id)
            if job is None or job.status != "running" or job.lease_owner != owner:
                return None
            job.progress.update(progress)
            job.progress.pop("eta_seconds", None)  # nothing is left to wait for
            job.status, job.finished, job.lease_owner, job.lease_until = status, time.time(), None, 0.0
            for name, value in fields.items():
                setattr(job, name, value)
            self._put(job)
        log.info("data-set job %s %s", job_id, status if status == "done" else f"{status}: {job.error}")
        return job

    def recoverable(self, in_queue):
        """Ids of the jobs to hand to the queue again: running ones whose worker died, and queued ones the
        queue does not hold (in_queue: the ids it holds), which it lost or never got (a claim is idempotent,
        so a job in the queue twice runs once)."""
        return [job.id for job in self._all() if job.removed is None and self._runnable(job)
                and (job.status == "running" or job.id not in in_queue)]

    def expired(self, now, ttl):
        """Finished jobs whose files are older than ttl, oldest first."""
        return sorted((job for job in self._all() if job.removed is None and job.status == "done"
                       and job.finished and now - job.finished > ttl), key=lambda job: job.finished)

    def finished_jobs(self):
        """Done jobs whose files are kept, oldest first."""
        return sorted((job for job in self._all() if job.removed is None and job.status == "done"),
                      key=lambda job: job.finished or 0)

    def mark_removed(self, job_id, why):
        with self.store.lock(job_id):
            job = self._get(job_id)
            if job is not None and job.removed is None:
                job.removed = why
                self._put(job)

    def forget_old(self, now):
        """Drop the records of jobs removed long ago (their URLs become 404s)."""
        for job in self._all():
            if job.removed and now - (job.finished or job.created) > RECORDS_KEPT_SECONDS:
                self.store.delete(job.id)


def _is_job_id(text):
    return isinstance(text, str) and len(text) == 32 and all(c in "0123456789abcdef" for c in text)


