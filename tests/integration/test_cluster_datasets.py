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
from devtools.redis import RedisServer, find_redis
from devtools.standin import BENCH_DATASET_CONCEPT, DATASET_GENUS, DATASET_OUTSIDE_BOXES, find_boxes
from devtools.servers import wait_until
from tests.integration.test_cluster import store  # noqa: F401  (the module's SeaweedFS)

TIMEOUT = 30


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    if not find_redis():
        pytest.skip("redis-server is not installed (apt-get install redis-server): .ci/setup installs it")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(store, redis, standin, tmp_path_factory):  # noqa: F811
    env = {"DATASET_QUEUE": redis.url, "DATASET_WORKERS": "2"}
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


def job_at(base, job_id):
    return requests.get(f"{base}/datasets/{job_id}", timeout=TIMEOUT).json()


def finished(base, job_id, timeout=240):
    answer = {}

    def ended():
        nonlocal answer
        answer = job_at(base, job_id)
        return answer.get("status") not in ("queued", "running")

    assert wait_until(ended, timeout=timeout), answer
    return answer


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
    done = finished(cluster.front_url, job["id"])
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
    assert len({cluster.owner_of(uuid) for uuid in images}) == 3
    assert crops_cut(cluster) == made
    # The same answer from every host, and the same bytes of every file from each one's nginx.
    answers = [job_at(host.url, job["id"]) for host in cluster.hosts]
    assert all(answer == answers[0] for answer in answers) and answers[0]["files"] == done["files"]
    for file in done["files"]:
        for base in [cluster.front_url, *(host.url for host in cluster.hosts)]:
            got = requests.get(base + path_of(file["url"]), timeout=TIMEOUT)
            assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == file["sha256"], base
