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
from ..errors import CropperError, QueueUnavailableError
from .build import Builder, JobFailed, JobStopped
from .jobs import LEASE_SECONDS, worker_name
from .request import DatasetRequest

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 5
QUEUE_PAUSES = (0.5, 5.0)  # a job waiting for its queue asks again after this long, doubling up to the last
EVICT_EVERY = 12  # housekeeping turns between two looks at the data sets' age and size


class Worker:
    """Runs data-set jobs: what the queue's task calls, and the housekeeping beside it."""

    def __init__(self, settings, service, jobs, store):
        self.settings = settings
        self.jobs = jobs
        self.store = store
        self.builder = Builder(service, store, settings.dataset_workers, settings.fathomnet_api_url,
                               settings.dataset_shard_bytes)
        self.stopping = threading.Event()  # set as the worker stops: a job paused on its queue gives up

    def run(self, job_id):
        """Run one job to its end, unless another worker has it or it was cancelled."""
        owner = worker_name()
        try:
            job = self._paused_while_unreachable(self.jobs.claim, job_id, owner)
        except JobStopped:
            return
        if job is None:
            return
        log.info("data-set job %s running", job_id)
        started = time.monotonic()
        request = DatasetRequest.from_dict(job.request)
        progress = {}

        def report(now):
            progress.update(now)
            return self._paused_while_unreachable(self.jobs.report, job_id, owner, **now)

        try:
            files, counts, done = self.builder.run(job_id, request, report)
        except JobStopped:  # counted where it was cancelled
            log.info("data-set job %s stopped: cancelled, or taken over", job_id)
            return
        except JobFailed as error:
            self._fail(job_id, owner, error.details.get("first_code", error.code), error.message, progress, started)
            return
        except CropperError as error:  # FathomNet down while listing, a full disk, ...
            self._fail(job_id, owner, error.code, error.message, progress, started)
            return
        except Exception:
            log.exception("data-set job %s failed", job_id)
            self._fail(job_id, owner, "internal_error", "Something went wrong on our side.", progress, started)
            return
        if self._paused_while_unreachable(self.jobs.finish, job_id, owner, files, counts, done) is None:
            # cancelled as it finished, or taken over by another worker while this one was paused
            self.store.remove(job_id)
            return
        metrics.dataset_job("done", time.monotonic() - started, done["crops_done"], done["crops_failed"])

    def _fail(self, job_id, owner, code, message, progress, started):
        self._paused_while_unreachable(self.jobs.fail, job_id, owner, code, message, progress)
        metrics.dataset_job("failed", time.monotonic() - started)

    def _paused_while_unreachable(self, call, *args, **kwargs):
        """call(), waiting (and asking again) while the job's queue cannot be reached: a job pauses through a Redis
        outage and goes on when it is back, instead of failing. JobStopped if the worker stops meanwhile."""
        pause = QUEUE_PAUSES[0]
        while True:
            try:
                return call(*args, **kwargs)
            except QueueUnavailableError as error:
                log.warning("data-set job paused: %s (asking again in %.0f s)", error.message, pause)
                if self.stopping.wait(pause):
                    raise JobStopped() from None
                pause = min(pause * 2, QUEUE_PAUSES[1])

    def housekeeping(self, queue, turn):
        """One turn: alive, orphans back to the queue, old data sets out."""
        self.jobs.store.beat()
        for job_id in self.jobs.recoverable(in_queue=queue.pending()):
            log.info("data-set job %s handed to the queue again (its worker is gone, or the queue lost it)", job_id)
            queue.enqueue(job_id)
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
                worker.housekeeping(queue, turn)
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
        worker.stopping.set()
