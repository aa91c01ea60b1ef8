"""Data-set jobs across three hosts, a front, SeaweedFS and Redis, all real, on loopback (#24).

Every host's data-set worker takes jobs from one Redis (DATASET_QUEUE=redis://...), where the jobs'
records also live; each image's crops are made by its owner, as a POST's are; the data sets' files go
to the shared bucket and every host's nginx serves them. "No crop made twice" is read from the hosts'
own metrics: the crops each host cut (cropper_encode_seconds), counted in its metrics folder, which a
host SIGKILLed leaves behind. The tests share one cluster and run in this order: the kill comes last.
"""

import csv
import hashlib
import io
import time
import zipfile
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from cropper.storage.redis import RedisJobStore
from devtools.cluster import LocalCluster
from devtools.servers import wait_until
from devtools.standin import BENCH_DATASET_CONCEPT, DATASET_GENUS, DATASET_OUTSIDE_BOXES, find_boxes
from tests.jobs import finished_job, job_answer

TIMEOUT = 30


@pytest.fixture(scope="module")
def cluster(store, redis_server, standin, tmp_path_factory):  # noqa: F811
    # Downloads the stand-in holds half-way (to catch a job mid-way) wait for the test, not for a timeout.
    env = {"DATASET_QUEUE": redis_server.url, "DATASET_WORKERS": "2", "READ_TIMEOUT": "60", "DOWNLOAD_TIMEOUT": "60"}
    with LocalCluster(tmp_path_factory.mktemp("cluster"), standin, store, hosts=3, env=env) as running:
        assert wait_until(lambda: all(worker_ready(host) for host in running.hosts), timeout=60)
        yield running


def worker_ready(host):
    answer = requests.get(f"{host.url}/readyz", timeout=TIMEOUT).json()
    return answer["checks"]["datasets"]["ok"]


def crops_cut(cluster):
    """Crops cut by every host (killed ones too), from the metrics their processes left in their folders."""
    total = 0
    for host in cluster.hosts:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(host.folder / "var" / "metrics"))
        total += sum(sample.value for metric in registry.collect() if metric.name == "cropper_encode_seconds"
                     for sample in metric.samples if sample.name == "cropper_encode_seconds_count")
    return total


def start(base, **body):
    answer = requests.post(f"{base}/datasets", json=body, timeout=TIMEOUT)
    assert answer.status_code in (200, 202), answer.text
    return answer.json()


def images_of(concept, **constraints):
    return list(dict.fromkeys(box["imageUuid"] for box in find_boxes(concept=concept, **constraints)))


def listed_in(base, job, name):
    """The rows of a CSV file in a finished ImageFolder data set's zip (fetched from base)."""
    (file,) = job["files"]
    archive = zipfile.ZipFile(io.BytesIO(requests.get(base + path_of(file["url"]), timeout=TIMEOUT).content))
    return list(csv.DictReader(io.TextIOWrapper(archive.open(name), encoding="utf-8")))


def path_of(url):
    return urlsplit(url).path


def test_a_job_through_the_front_downloads_each_image_once_and_every_host_serves_it(cluster, standin):
    job = start(cluster.front_url, concepts=[DATASET_GENUS], descendants=True, split={"train": 0.8, "test": 0.2},
                crop={"format": "png"})
    done = finished_job(cluster.front_url, job["id"])
    assert done["status"] == "done", done
    made = done["progress"]["crops_done"]
    failed = listed_in(cluster.front_url, done, "failures.csv")
    assert made > 0 and done["progress"]["crops_failed"] == len(failed)
    assert {row["box_uuid"] for row in failed} <= set(DATASET_OUTSIDE_BOXES)  # nothing to crop there
    images = {row["image_uuid"] for row in listed_in(cluster.front_url, done, "manifest.csv")}
    assert {uuid: standin.downloads(uuid) for uuid in images} == dict.fromkeys(images, 1)  # once in the cluster
    assert standin.downloads() == len(images)
    # Each image's pixels are with its owner alone: its crops were made there, wherever the job ran.
    for uuid in images:
        assert [host for host in cluster.hosts if host.pixels_stored(uuid)] == [cluster.owner_of(uuid)], uuid
    assert len({cluster.owner_of(uuid) for uuid in images}) > 1  # (ports, so the ring, differ from run to run)
    assert crops_cut(cluster) == made
    # The same answer from every host, and the same bytes of every file from each one's nginx.
    answers = [job_answer(host.url, job["id"]) for host in cluster.hosts]
    assert all(answer == answers[0] for answer in answers) and answers[0]["files"] == done["files"]
    for file in done["files"]:
        for base in [cluster.front_url, *(host.url for host in cluster.hosts)]:
            got = requests.get(base + path_of(file["url"]), timeout=TIMEOUT)
            assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == file["sha256"], base


def bench_images(first, last):
    """The bench family's images first..last (their depths are 300 + 7 n metres), and the filters that ask for
    just them: each test takes images no host has downloaded yet."""
    filters = {"minDepth": 300 + 7 * first - 1, "maxDepth": 300 + 7 * last + 1}
    images = images_of(BENCH_DATASET_CONCEPT)[first:last + 1]
    return images, filters


def held_job(cluster, standin, images, filters, held, **body):
    """A job over images whose download of images[held] the stand-in holds half-way: running, not done."""
    standin.set_fault("hold", target="image", uuid=images[held], times=1)
    job = start(cluster.front_url, concepts=[BENCH_DATASET_CONCEPT], filters=filters, **body)
    assert standin.wait_until_held(1, timeout=120), job_answer(cluster.front_url, job["id"])
    return job


def test_any_host_answers_for_a_job_and_cancels_it(cluster, standin):
    images, filters = bench_images(70, 79)
    job = held_job(cluster, standin, images, filters, held=2, crop={"format": "png", "pad": 2})
    try:
        answers = [job_answer(host.url, job["id"]) for host in cluster.hosts]
        assert {answer["status"] for answer in answers} <= {"queued", "running"}
        assert all(answer["request"] == answers[0]["request"] for answer in answers)
        cancelled = requests.delete(f"{cluster.hosts[1].url}/datasets/{job['id']}", timeout=TIMEOUT)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    finally:
        standin.release()
    for host in cluster.hosts:
        gone = requests.get(f"{host.url}/datasets/{job['id']}", timeout=TIMEOUT)
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "dataset_gone", host
    settled(lambda: crops_cut(cluster))  # the round under way when it was cancelled ends (its crops are kept)


def test_redis_stopped_mid_job_delays_it_and_loses_nothing(cluster, standin, redis_server):
    """While Redis is down: every host says so in /readyz, a new job is a 503 with Retry-After, crops are
    made as ever; the job pauses, and finishes once Redis is back, with every box."""
    images, filters = bench_images(40, 59)
    cut_before = settled(lambda: crops_cut(cluster))
    job = held_job(cluster, standin, images, filters, held=3, crop={"format": "png", "pad": 4})
    redis_server.stop()
    try:
        for host in cluster.hosts:
            ready = requests.get(f"{host.url}/readyz", timeout=TIMEOUT).json()
            assert not ready["checks"]["datasets"]["ok"] and "Redis" in ready["checks"]["datasets"]["error"]
        refused = requests.post(f"{cluster.front_url}/datasets", json={"concepts": [BENCH_DATASET_CONCEPT],
                                                                       "max_boxes": 5}, timeout=TIMEOUT)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "queue_unavailable"
        assert int(refused.headers["Retry-After"]) > 0
        other = images_of(BENCH_DATASET_CONCEPT)[99]
        crop = requests.post(f"{cluster.front_url}/cropper/", json={"uuid": other, "x1": 0, "y1": 0, "x2": 64,
                                                                    "y2": 64}, timeout=TIMEOUT)
        assert crop.status_code == 200, crop.text
        standin.release()
        time.sleep(5)  # the job's crops go on; its reports wait for Redis
    finally:
        standin.release()
        redis_server.start()
    done = finished_job(cluster.front_url, job["id"])
    assert done["status"] == "done" and done["progress"]["crops_done"] == 10 * len(images), done
    assert crops_cut(cluster) - cut_before == 1 + 10 * len(images)  # the crop asked for meanwhile, and the job's


def settled(count, pause=1.0, timeout=30):
    """count() once it stays the same for pause seconds."""
    deadline, last = time.monotonic() + timeout, count()
    while time.monotonic() < deadline:
        time.sleep(pause)
        before, last = last, count()
        if before == last:
            return last
    raise AssertionError(f"still changing after {timeout} s")


def runner_of(cluster, redis_server, job_id):
    """The host whose data-set worker holds the job's lease (a worker names itself host:pid:thread)."""
    record = RedisJobStore(redis_server.url, "test", lock_timeout=5).get(job_id)
    assert record["lease_owner"], record
    pid = int(record["lease_owner"].split(":")[1])
    return next(host for host in cluster.hosts if pid in host.processes())


def test_a_host_killed_mid_job_leaves_it_to_another_worker_and_no_crop_is_made_twice(cluster, standin, redis_server):
    images, filters = bench_images(0, 29)
    cut_before = settled(lambda: crops_cut(cluster))
    job = held_job(cluster, standin, images, filters, held=20, crop={"format": "png", "pad": 8})
    try:
        assert wait_until(lambda: job_answer(cluster.front_url, job["id"])["progress"].get("crops_done", 0) > 0,
                          timeout=60)
        settled(lambda: crops_cut(cluster))  # a crop under way when its host dies would be cut again: let them end
        victim = runner_of(cluster, redis_server, job["id"])
        cluster.kill(victim)
    finally:
        standin.release()
    done = finished_job(cluster.front_url, job["id"])
    assert done["status"] == "done" and done["progress"]["crops_done"] == 10 * len(images), done
    assert crops_cut(cluster) - cut_before == 10 * len(images)  # each crop once, across the hosts and the kill
    for host in cluster.hosts:
        if host is not victim:
            assert job_answer(host.url, job["id"]) == done
