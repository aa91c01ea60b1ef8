"""Data-set job records in Redis (`DATASET_QUEUE=redis://...`): a `storage.JobStore` every host shares.

With several hosts, any host accepts a job, any host's worker may run it, and every host answers
for it alike, so the records are where the queue is. Keys, under `cropper:dataset:`:

    job:<id>            a job's record (JSON)
    jobs                the set of every job's id
    request:<key>       the latest job of a request's fingerprint
    lock:<name>         a lock (SET NX with an expiry, so a dead holder's lock goes by itself)
    worker:<host>       when a host's worker last said it was alive (it expires: a dead host's goes)

Redis that cannot be reached is a `QueueUnavailableError` (503, Retry-After): new jobs wait for it,
crops never need it.
"""

import json
import logging
import time
import uuid
from contextlib import contextmanager

import redis

from ..errors import BusyError, QueueUnavailableError

log = logging.getLogger(__name__)

PREFIX = "cropper:dataset:"
LOCK_SECONDS = 30  # a lock's expiry: a holder that dies (or is cut off) loses it by then
HEARTBEAT_KEPT = 60  # a host's heartbeat outlives its worker this long


class RedisJobStore:
    """Job records, their locks and every host's worker heartbeat in one Redis database."""

    def __init__(self, url, host, lock_timeout, timeout=2.0):
        self.url = url
        self.host = host  # this host's name among the workers' heartbeats
        self.lock_timeout = lock_timeout
        self.redis = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)

    @contextmanager
    def _reaching(self, doing):
        try:
            yield
        except redis.RedisError as error:
            log.warning("the data-set queue (Redis at %s) failed to %s: %r", _safe(self.url), doing, error)
            raise QueueUnavailableError(
                f"The data-set queue (Redis at {_safe(self.url)}) cannot be reached; try again shortly.") from None

    def get(self, job_id):
        with self._reaching("read a job"):
            data = self.redis.get(f"{PREFIX}job:{job_id}")
        return json.loads(data) if data else None

    def put(self, job_id, record):
        with self._reaching("write a job"):
            self.redis.pipeline().set(f"{PREFIX}job:{job_id}", json.dumps(record)).sadd(
                f"{PREFIX}jobs", job_id).execute()

    def delete(self, job_id):
        with self._reaching("forget a job"):
            self.redis.pipeline().delete(f"{PREFIX}job:{job_id}").srem(f"{PREFIX}jobs", job_id).execute()

    def all(self):
        with self._reaching("list the jobs"):
            ids = sorted(member.decode() for member in self.redis.smembers(f"{PREFIX}jobs"))
            records = self.redis.mget([f"{PREFIX}job:{job_id}" for job_id in ids]) if ids else []
        return [json.loads(record) for record in records if record]

    @contextmanager
    def lock(self, name):
        """A lock every host respects, tried for LOCK_TIMEOUT; it expires by itself if its holder dies."""
        key, token = f"{PREFIX}lock:{name}", uuid.uuid4().hex
        deadline = time.monotonic() + self.lock_timeout
        with self._reaching("take a lock"):
            while not self.redis.set(key, token, nx=True, ex=LOCK_SECONDS):
                if time.monotonic() > deadline:
                    raise BusyError("Another request is changing this data set; try again shortly.")
                time.sleep(0.02)
        try:
            yield
        finally:
            with self._reaching("let go of a lock"):
                # Only our own: compare and delete in one step (a lock that expired may be another's now).
                self.redis.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
                                "end return 0", 1, key, token)

    def job_of(self, key):
        with self._reaching("read a request"):
            found = self.redis.get(f"{PREFIX}request:{key}")
        return found.decode() if found else None

    def remember(self, key, job_id):
        with self._reaching("write a request"):
            self.redis.set(f"{PREFIX}request:{key}", job_id)

    def beat(self):
        with self._reaching("say the worker is alive"):
            self.redis.set(f"{PREFIX}worker:{self.host}", repr(time.time()), ex=HEARTBEAT_KEPT)

    def heartbeat_age(self):
        with self._reaching("read the worker's heartbeat"):
            beat = self.redis.get(f"{PREFIX}worker:{self.host}")
        return max(0.0, time.time() - float(beat)) if beat else None

    def readiness_problem(self):
        """None if Redis answers, else why not (for /readyz)."""
        try:
            with self._reaching("answer a ping"):
                self.redis.ping()
        except QueueUnavailableError as error:
            return error.message
        return None


def _safe(url):
    """A Redis URL as it may be logged and said: without its password."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}" if "@" in rest else url
