"""The queue data-set jobs wait in for the worker: Huey, with its SQLite storage (DATASET_QUEUE).

Huey, because it is a small, well-kept task queue whose one API has an embedded storage that needs
no server (SQLite: one host needs nothing more) and a Redis storage (several
hosts share one queue: the same code with another storage). Its consumer runs the jobs in threads
of the worker process, DATASET_JOBS_RUNNING at a time. What it does not give, a job taken up again
after its worker died, the job records' leases do (jobs.py): a dequeued task whose worker is killed
is gone from the queue, and the worker hands such jobs to the queue again.
"""

from pathlib import Path

from huey import SqliteHuey

TASK = "cropper.dataset_job"


def queue_storage(settings):
    """The Huey instance the settings name: a SQLite file (DATASET_QUEUE). Opened when first used: the app
    factory writes nothing. Not in CACHE_DIR: an open database would keep that disk from being remounted
    read-only (an operator's way to stop new work and keep serving)."""
    path = Path(settings.dataset_queue).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey("cropper-datasets", filename=str(path), results=False, utc=True, timeout=10)


class DatasetQueue:
    """Hands job ids to whichever worker takes them; the worker's side runs them with run(job_id)."""

    def __init__(self, huey, run=None):
        self.huey = huey
        run = run or _run_elsewhere

        # Huey finds a task by its module and name: the web's side and the worker's must name the same one.
        def dataset_job(job_id):
            return run(job_id)

        self._task = huey.task(name=TASK, retries=0)(dataset_job)

    def enqueue(self, job_id):
        self._task(job_id)

    def consumer(self, workers):
        """Huey's consumer of this queue: worker threads that run the jobs as they come."""
        return self.huey.create_consumer(workers=workers, worker_type="thread", periodic=False,
                                         initial_delay=0.05, backoff=1.15, max_delay=0.25)


def _run_elsewhere(job_id):
    raise RuntimeError("data-set jobs run in the data-set worker (python -m cropper datasets worker)")
