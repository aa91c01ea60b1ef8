"""The queue data-set jobs wait in for the worker: Huey, with its SQLite storage (DATASET_QUEUE).

Huey, because it is a small, well-kept task queue whose one API has an embedded storage that needs
no server (SQLite: one host needs nothing more) and a Redis storage (several
hosts share one queue: the same code with another storage). Its consumer runs the jobs in threads
of the worker process, DATASET_JOBS_RUNNING at a time. What it does not give, a job taken up again
after its worker died, the job records' leases do (jobs.py): a dequeued task whose worker is killed
is gone from the queue, and the worker hands such jobs to the queue again.
"""

from pathlib import Path

from huey import RedisHuey, SqliteHuey

from ..errors import QueueUnavailableError

TASK = "cropper.dataset_job"


def is_shared(queue):
    """Whether a DATASET_QUEUE names a queue every host shares (Redis), not a file of this host's."""
    return queue.startswith(("redis://", "rediss://", "unix://"))


def queue_storage(settings):
    """The Huey instance the settings name: Redis (redis://host:port/db, shared by every host), else a SQLite
    file (DATASET_QUEUE). Opened when first used: the app factory writes nothing. Not in CACHE_DIR: an open
    database would keep that disk from being remounted read-only (an operator's way to stop new work and keep
    serving)."""
    if is_shared(settings.dataset_queue):
        return RedisHuey("cropper-datasets", url=settings.dataset_queue, results=False, utc=True, read_timeout=1)
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
        try:
            self._task(job_id)
        except Exception as error:  # Redis (or the SQLite file) cannot take it: the job waits, said in words
            raise QueueUnavailableError(f"The data-set queue cannot take the job now ({type(error).__name__}); "
                                        "it will be handed to the queue again.") from None

    def pending(self):
        """The ids of the jobs waiting in the queue (a worker hands the queue again any queued job not there)."""
        return {task.args[0] for task in self.huey.pending() if task.args}

    def consumer(self, workers):
        """Huey's consumer of this queue: worker threads that run the jobs as they come.

        It polls the SQLite queue; at most 50 ms apart, a job waits at most that long to start (a poll costs a
        read of a small table)."""
        return self.huey.create_consumer(workers=workers, worker_type="thread", periodic=False,
                                         initial_delay=0.02, backoff=1.15, max_delay=0.05)


def _run_elsewhere(job_id):
    raise RuntimeError("data-set jobs run in the data-set worker (python -m cropper datasets worker)")
