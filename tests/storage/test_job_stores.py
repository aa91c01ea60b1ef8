"""The job-record stores' contract: the file store (one host) and Redis (several hosts) keep data-set job
records, their locks and the worker's heartbeat alike; Redis out of reach is said in words."""

import pytest

from cropper.errors import BusyError, QueueUnavailableError
from cropper.storage.files import FileJobStore
from cropper.storage.locks import Locks
from tests.processes import HeldInChild

JOB = "0123456789abcdef0123456789abcdef"


@pytest.fixture(params=["file", "redis"])
def store(request, tmp_path):
    if request.param == "file":
        return FileJobStore(tmp_path / "cache", Locks(tmp_path / "cache" / "locks", timeout=0.3))
    from cropper.storage.redis import RedisJobStore

    server = request.getfixturevalue("redis_server")
    store = RedisJobStore(server.url, f"host-{tmp_path.name}", lock_timeout=0.3)
    store.redis.flushdb()
    return store


def test_records_are_kept_whole_listed_and_forgotten(store):
    assert store.get(JOB) is None and list(store.all()) == []
    store.put(JOB, {"id": JOB, "status": "queued"})
    store.put(JOB, {"id": JOB, "status": "running"})
    assert store.get(JOB) == {"id": JOB, "status": "running"} and list(store.all()) == [store.get(JOB)]
    store.delete(JOB)
    assert store.get(JOB) is None and list(store.all()) == []


def test_a_requests_fingerprint_names_its_latest_job(store):
    assert store.job_of("f" * 64) is None
    store.remember("f" * 64, JOB)
    assert store.job_of("f" * 64) == JOB


def test_a_lock_is_held_by_one_at_a_time(store):
    with HeldInChild(lambda: store.lock(JOB)):
        with pytest.raises(BusyError):
            with store.lock(JOB):
                pass
    with store.lock(JOB):  # free once its holder let go
        pass


def test_the_workers_heartbeat_is_read_back_and_the_store_is_ready(store):
    assert store.heartbeat_age() is None
    store.beat()
    assert 0 <= store.heartbeat_age() < 5 and store.readiness_problem() is None


def test_redis_out_of_reach_is_a_queue_unavailable_error_in_words_and_not_ready(redis_server, tmp_path):
    from cropper.storage.redis import RedisJobStore

    gone = RedisJobStore("redis://:secret@127.0.0.1:1/0", "h", lock_timeout=0.3, timeout=0.5)
    with pytest.raises(QueueUnavailableError) as error:
        gone.get(JOB)
    assert error.value.status == 503 and error.value.retry_after and "secret" not in error.value.message
    assert "cannot be reached" in gone.readiness_problem()
