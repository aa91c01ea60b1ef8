"""The data-set worker: `python -m cropper datasets worker`, a process Gunicorn's arbiter starts beside
its workers (as it starts the pruner), so jobs never run in a request's thread.

It runs Huey's consumer (DATASET_JOBS_RUNNING jobs at a time) and, beside it, housekeeping every
few seconds: it says it is alive (/readyz reads that), hands the queue again the jobs whose worker
died (their leases ran out), and removes finished data sets past DATASET_TTL or over
DATASET_MAX_BYTES, oldest first.
"""

import logging
import os
import signal
import threading
import time

from .. import metrics
from ..errors import CropperError
from .build import Builder, JobFailed, JobStopped
from .jobs import LEASE_SECONDS, worker_name
from .request import DatasetRequest

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 5
EVICT_EVERY = 12  # housekeeping turns between two looks at the data sets' age and size


class Worker:
    """Runs data-set jobs: what the queue's task calls, and the housekeeping beside it."""

    def __init__(self, settings, service, jobs, store):
        self.settings = settings
        self.jobs = jobs
        self.store = store
        self.builder = Builder(service, store, settings.dataset_workers, settings.fathomnet_api_url,
                               settings.dataset_shard_bytes)

    def run(self, job_id):
        """Run one job to its end, unless another worker has it or it was cancelled."""
        owner = worker_name()
        job = self.jobs.claim(job_id, owner)
        if job is None:
            return
        log.info("data-set job %s running", job_id)
        started = time.monotonic()
        request = DatasetRequest.from_dict(job.request)
        progress = {}

        def report(now):
            progress.update(now)
            return self.jobs.report(job_id, owner, **now)

        try:
            files, counts, done = self.builder.run(job_id, request, report)
        except JobStopped:  # counted where it was cancelled
            log.info("data-set job %s stopped: cancelled, or taken over", job_id)
            return
        except JobFailed as error:
            self.jobs.fail(job_id, owner, error.details.get("first_code", error.code), error.message, progress)
            metrics.dataset_job("failed", time.monotonic() - started)
            return
        except CropperError as error:  # FathomNet down while listing, a full disk, ...
            self.jobs.fail(job_id, owner, error.code, error.message, progress)
            metrics.dataset_job("failed", time.monotonic() - started)
            return
        except Exception:
            log.exception("data-set job %s failed", job_id)
            self.jobs.fail(job_id, owner, "internal_error", "Something went wrong on our side.", progress)
            metrics.dataset_job("failed", time.monotonic() - started)
            return
        if self.jobs.finish(job_id, owner, files, counts, done) is None:  # cancelled as it finished
            self.store.remove(job_id)
            return
        metrics.dataset_job("done", time.monotonic() - started, done["crops_done"], done["crops_failed"])

    def housekeeping(self, enqueue, stop, turn):
        """One turn: alive, orphans back to the queue, old data sets out."""
        self.jobs.store.beat()
        for job_id in self.jobs.recoverable(queued_too=turn == 0):
            log.info("data-set job %s handed to the queue again (its worker is gone, or the queue lost it)", job_id)
            enqueue(job_id)
        if turn % EVICT_EVERY == 0:
            self.evict(time.time())

    def evict(self, now):
        """Finished data sets past DATASET_TTL go, then the oldest until the rest fit DATASET_MAX_BYTES."""
        for job in self.jobs.expired(now, self.settings.dataset_ttl):
            self.store.remove(job.id)
            self.jobs.mark_removed(job.id, "expired")
        kept = self.jobs.finished_jobs()
        total = sum(file["size"] for job in kept for file in job.files)
        for job in kept:
            if total <= self.settings.dataset_max_bytes:
                break
            self.store.remove(job.id)  # a file being sent stays readable until it is closed
            self.jobs.mark_removed(job.id, "evicted")
            total -= sum(file["size"] for file in job.files)
        self.jobs.forget_old(now)


def run_worker(settings, worker, queue, parent_pid=None):
    """Run the consumer and the housekeeping until SIGTERM or SIGINT (or the parent's death)."""
    consumer = queue.consumer(settings.dataset_jobs_running)
    stop = threading.Event()

    def keep_house():
        turn = 0
        while not stop.wait(0 if turn == 0 else HOUSEKEEPING_SECONDS):
            try:
                worker.housekeeping(queue.enqueue, stop, turn)
            except CropperError as error:  # a full or read-only disk: said in a line, tried again next turn
                log.warning("data-set housekeeping: %s", error.message)
            except Exception:  # the worker must outlive any one bad turn
                log.exception("data-set housekeeping failed")
            turn += 1
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("the data-set worker's parent is gone; stopping")
                os.kill(os.getpid(), signal.SIGINT)  # Huey's graceful stop
                return

    threading.Thread(target=keep_house, name="dataset-housekeeping", daemon=True).start()
    log.info("data-set worker running %d job(s) at a time (pid %d); leases of %d s",
             settings.dataset_jobs_running, os.getpid(), LEASE_SECONDS)
    try:
        consumer.run()
    finally:
        stop.set()
