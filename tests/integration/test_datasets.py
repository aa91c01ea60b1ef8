"""Data-set jobs over real Gunicorn, nginx and the data-set worker, against the stand-in's data-set family.

Each finished data set is downloaded through nginx, unpacked and loaded with Hugging Face's `datasets`
package, as its users load it; what it holds is checked against what the stand-in says FathomNet has.
"""

import csv
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests
from PIL import Image

from cropper.datasets.build import split_of
from cropper.datasets.request import FATHOMNET_FILTERS
from devtools.servers import Gunicorn, NginxServer, find_nginx_or_skip, service_env, wait_until
from devtools.standin import (
    BENCH_DATASET_CONCEPT,
    BENCH_NAMES,
    DATASET_CONCEPTS,
    DATASET_GENUS,
    DATASET_NAMES,
    DATASET_OUTSIDE_BOXES,
    concepts,
    find_boxes,
    image_fields,
    taxon_descendants,
    uuid_for,
)
from tests.jobs import finished_job

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # the loader must read the folder, never a hub
datasets = pytest.importorskip("datasets")
SHARD_BYTES = 150_000  # small shards, so a data set has several
SPECIES = [name for name in DATASET_CONCEPTS if name.startswith(f"{DATASET_GENUS} ")]
IMAGES = {uuid_for(name): image_fields(name) for name in DATASET_NAMES}  # the family's image records


@pytest.fixture(scope="module")
def service(standin, tmp_path_factory):
    """Gunicorn (its arbiter starting the data-set worker), and nginx in front, sharing a cache folder."""
    find_nginx_or_skip()
    for name in [*DATASET_NAMES, *BENCH_NAMES[:40]]:  # made once, now: a cold stand-in's first answer is slow
        standin.image(name)
    run_dir = tmp_path_factory.mktemp("datasets")
    env = service_env(standin, run_dir / "cache", DATASET_WORKERS="2", DATASET_QUEUE_MAX="3",
                      DATASET_SHARD_BYTES=str(SHARD_BYTES))
    with Gunicorn(env, cwd=run_dir, workers=2) as gunicorn:
        with NginxServer(gunicorn, run_dir / "cache", tmp_path_factory.mktemp("nginx")) as nginx:
            nginx.gunicorn, nginx.cache_dir = gunicorn, run_dir / "cache"
            yield nginx


def start(service, **body):
    answer = requests.post(f"{service.url}/datasets", json=body, timeout=30)
    assert answer.status_code in (200, 202), answer.text
    return answer.json()


def finished(service, job, timeout=120):
    """The job's answer once it is no longer queued or running."""
    return finished_job(service.url, job["id"], timeout)


def unpacked(service, job, folder):
    """The job's zip, fetched through nginx (its sha256 checked) and unpacked into folder."""
    (file,) = job["files"]
    answer = requests.get(file["url"].replace(file["url"].split("/datasets/")[0], service.url), timeout=60)
    assert answer.status_code == 200 and answer.headers["Content-Disposition"].startswith("attachment")
    assert len(answer.content) == file["size"]
    import hashlib

    assert hashlib.sha256(answer.content).hexdigest() == file["sha256"]
    zipfile.ZipFile(io.BytesIO(answer.content)).extractall(folder)
    return folder


def manifest(folder):
    with open(folder / "manifest.csv", newline="") as file:
        return list(csv.DictReader(file))


def expected_boxes(**constraints):
    return {box["uuid"]: box for box in find_boxes(**constraints)}


def test_a_data_set_loads_with_its_splits_labels_and_counts_and_no_image_in_two_splits(service, standin, tmp_path):
    job = finished(service, start(service, concepts=[DATASET_GENUS], descendants=True, label="asked",
                                  split={"train": 0.5, "validation": 0.25, "test": 0.25}, seed=7,
                                  crop={"format": "png"}))
    assert job["status"] == "done", job
    folder = unpacked(service, job, tmp_path / "data")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(folder))
    rows = manifest(folder)
    assert set(loaded) == {row["split"] for row in rows} <= {"train", "validation", "test"}
    for split in loaded:
        in_split = [row for row in rows if row["split"] == split]
        assert loaded[split].num_rows == len(in_split) == sum(job["counts"][split].values())
        by_box = {row["box_uuid"]: row["label"] for row in in_split}
        assert {row["box_uuid"]: row["label"] for row in loaded[split]} == by_box
    images_by_split = {}
    for row in rows:
        images_by_split.setdefault(row["image_uuid"], set()).add(row["split"])
        assert row["split"] == split_of(row["image_uuid"], {"train": 0.5, "validation": 0.25, "test": 0.25}, 7)
    assert all(len(splits) == 1 for splits in images_by_split.values())
    assert len(set(images_by_split)) > 3  # several images, so the check meant something
    # Every descendant of the genus rolled up to the label asked.
    assert {row["label"] for row in rows} == {DATASET_GENUS}
    assert {row["concept"] for row in rows} == set(taxon_descendants(DATASET_GENUS, "fathomnet")) & \
        {box["concept"] for box in find_boxes(concept=DATASET_GENUS, taxaProviderName="fathomnet")}
    assert (folder / "labels.txt").read_text() == f"{DATASET_GENUS}\n"
    card = (folder / "README.md").read_text()
    assert "load_dataset" in card and DATASET_GENUS in card


def test_crops_equal_the_source_region_pixel_for_pixel(service, standin, tmp_path):
    job = finished(service, start(service, concepts=SPECIES[:1], crop={"format": "png"}))
    folder = unpacked(service, job, tmp_path / "data")
    rows = manifest(folder)
    assert rows
    for row in rows[:5]:
        region = json.loads(row["region"])
        source = Image.open(io.BytesIO(requests.get(row["image_url"], timeout=30).content)).convert("RGB")
        crop = Image.open(folder / row["split"] / row["label"] / f"{row['box_uuid']}.png").convert("RGB")
        assert crop.tobytes() == source.crop(tuple(region)).tobytes()
        assert row["image_sha256"] == image_fields_sha(row["image_uuid"], standin)


def image_fields_sha(image_uuid, standin):
    return requests.get(f"{standin.api_url}/images/{image_uuid}", timeout=10).json()["sha256"]


def test_label_concept_keeps_each_boxs_own_concept(service, tmp_path):
    job = finished(service, start(service, concepts=[DATASET_GENUS], descendants=True, crop={"format": "png"}))
    rows = manifest(unpacked(service, job, tmp_path / "data"))
    assert all(row["label"] == row["concept"] for row in rows)
    assert len({row["label"] for row in rows}) > 1


@pytest.mark.parametrize("filters, keep", [
    ({"min_side": 16}, lambda box, image: min(box["width"], box["height"]) >= 16),
    ({"exclude_occluded": True}, lambda box, image: not box["occluded"]),
    ({"exclude_truncated": True}, lambda box, image: not box["truncated"]),
    ({"minDepth": 1000}, lambda box, image: image.get("depthMeters") is not None and image["depthMeters"] >= 1000),
    ({"maxLatitude": 30}, lambda box, image: image.get("latitude") is not None and image["latitude"] <= 30),
    ({"startTimestamp": "2020-01-01T00:00:00Z"},
     lambda box, image: image.get("timestamp") is not None and image["timestamp"] >= "2020-01-01"),
    ({"includeVerified": False}, lambda box, image: box["reviewState"] != "VERIFIED"),
    ({"includeRejected": True}, lambda box, image: True),
])
def test_each_filter_drops_what_it_says(service, tmp_path, filters, keep):
    job = finished(service, start(service, concepts=[DATASET_GENUS], descendants=True, filters=filters,
                                  crop={"format": "png"}))
    assert job["status"] == "done", job
    made = {row["box_uuid"] for row in manifest(unpacked(service, job, tmp_path / "data"))}
    unfiltered = find_boxes(concept=DATASET_GENUS, taxaProviderName="fathomnet")
    # FathomNet's constraints are FathomNet's to apply (the stand-in's reading); the rest the service applies.
    fathomnet = {name: value for name, value in filters.items() if name in FATHOMNET_FILTERS}
    answered = find_boxes(concept=DATASET_GENUS, taxaProviderName="fathomnet", **fathomnet)
    wanted = {box["uuid"] for box in answered if keep(box, IMAGES[box["imageUuid"]])}
    assert made == wanted - set(DATASET_OUTSIDE_BOXES)
    assert job["progress"]["crops_failed"] == len(wanted & set(DATASET_OUTSIDE_BOXES))
    assert made and wanted != {box["uuid"] for box in unfiltered}  # the filter changed what is in it


def test_a_job_with_bad_boxes_lists_them_in_failures_and_succeeds(service, tmp_path):
    job = finished(service, start(service, concepts=[DATASET_GENUS], descendants=True, crop={"format": "png"}))
    assert job["status"] == "done"
    folder = unpacked(service, job, tmp_path / "data")
    with open(folder / "failures.csv", newline="") as file:
        failures = list(csv.DictReader(file))
    outside = set(DATASET_OUTSIDE_BOXES) & {box["uuid"] for box in
                                             find_boxes(concept=DATASET_GENUS, taxaProviderName="fathomnet")}
    assert outside and {row["box_uuid"] for row in failures} == outside
    assert {row["code"] for row in failures} == {"box_outside_image"}
    assert job["progress"]["crops_failed"] == len(outside)
    assert not outside & {row["box_uuid"] for row in manifest(folder)}


def test_identical_bodies_share_one_job_and_a_job_after_a_cancelled_one_is_new(service):
    body = {"concepts": SPECIES[::-1], "crop": {"width": 64, "height": 64, "fit": "cover"}}
    first = start(service, **body)
    again = requests.post(f"{service.url}/datasets/", json={**body, "concepts": SPECIES, "seed": 0,
                                                          "label": "concept"}, timeout=10)
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    finished(service, first)
    removed = requests.delete(first["url"], timeout=10)
    assert removed.status_code == 200
    assert requests.get(first["url"], timeout=10).status_code == 410
    fresh = start(service, **body)
    assert fresh["id"] != first["id"] and fresh["status"] == "queued"
    finished(service, fresh)


def test_a_cancelled_job_stops_and_its_partial_files_go(service, standin):
    standin.latency = 0.3  # slow enough to cancel mid-way
    try:
        job = start(service, concepts=[BENCH_DATASET_CONCEPT], max_boxes=400, crop={"format": "jpeg"})
        assert wait_until(lambda: requests.get(job["url"], timeout=10).json()["progress"]["crops_done"] > 0,
                          timeout=60)
        cancelled = requests.delete(job["url"], timeout=10)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    finally:
        standin.latency = 0.0
    gone = requests.get(job["url"], timeout=10)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "dataset_gone"
    assert gone.json()["error"]["details"]["status"] == "cancelled"
    folder = Path(service.cache_dir) / "datasets" / "files" / job["id"]
    record = Path(service.cache_dir) / "datasets" / "jobs" / f"{job['id']}.json"
    crops_done = json.loads(record.read_text())["progress"]["crops_done"]
    time.sleep(4)  # the worker's round ends: it stops, and writes nothing after the cancel
    assert not folder.exists()
    after = json.loads(record.read_text())
    assert after["status"] == "cancelled" and after["progress"]["crops_done"] == crops_done
    assert crops_done < after["progress"]["boxes_total"]


@pytest.mark.parametrize("body, field", [
    ({}, "concepts"),
    ({"concepts": []}, "concepts"),
    ({"concepts": ["a"] * 21}, "concepts"),
    ({"concepts": [DATASET_GENUS], "split": {"train": 0.5, "test": 0.4}}, "split"),
    ({"concepts": [DATASET_GENUS], "split": {"train": 0.9, "holdout": 0.1}}, "split"),
    ({"concepts": [DATASET_GENUS], "label": "kingdom"}, "label"),
    ({"concepts": [DATASET_GENUS], "max_boxes": 10_001}, "max_boxes"),
    ({"concepts": [DATASET_GENUS], "crop": {"fit": "cover"}}, "crop"),
    ({"concepts": [DATASET_GENUS], "filters": {"minDepth": "deep"}}, "filters"),
    ({"concepts": [DATASET_GENUS], "filters": {"sharpness": 3}}, "filters"),
    ({"concepts": [DATASET_GENUS], "colour": "red"}, "colour"),
])
def test_invalid_bodies_are_422s_naming_the_field(service, body, field):
    answer = requests.post(f"{service.url}/datasets", json=body, timeout=10)
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "validation_error"
    assert field in answer.json()["error"]["details"]


def test_an_unknown_concept_is_a_422_naming_it_with_close_names_before_any_work(service, standin):
    answer = requests.post(f"{service.url}/datasets", json={"concepts": [DATASET_GENUS.lower(), "Atola wyvillei"]},
                           timeout=10)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "unknown_concept" and set(error["details"]["unknown"]) == {DATASET_GENUS.lower(),
                                                                                      "Atola wyvillei"}
    assert error["details"]["suggestions"][DATASET_GENUS.lower()][0] == DATASET_GENUS
    assert "Atolla wyvillei" in error["details"]["suggestions"]["Atola wyvillei"]
    assert standin.count("/api/boundingboxes/query") == 0  # no work started


def test_unknown_ids_are_json_404s(service):
    for path in ("/datasets/" + "0" * 32, "/datasets/nope", "/datasets/" + "0" * 32 + "/files/imagefolder.zip"):
        answer = requests.get(f"{service.url}{path}", timeout=10)
        assert answer.status_code == 404 and answer.headers["Content-Type"].startswith("application/json"), path


def test_past_dataset_queue_max_waiting_a_new_job_is_a_429_with_retry_after(service, standin):
    """DATASET_QUEUE_MAX=3 here: a slow job runs, three wait, the next is told to come back."""
    standin.latency = 0.5
    started, refused = [], None
    try:
        for seed in range(100, 106):
            answer = requests.post(f"{service.url}/datasets", json={"concepts": [DATASET_GENUS], "seed": seed},
                                   timeout=30)
            if answer.status_code == 429:
                refused = answer
                break
            started.append(answer.json())
    finally:
        for job in started:
            requests.delete(job["url"], timeout=10)
        standin.latency = 0.0
    assert refused is not None and refused.json()["error"]["code"] == "too_many_jobs"
    assert int(refused.headers["Retry-After"]) > 0 and 3 <= len(started) <= 4


def test_the_worker_is_reported_by_readyz_and_jobs_are_counted_in_metrics(service):
    checks = requests.get(f"{service.url}/readyz", timeout=10).json()["checks"]
    assert checks["datasets"] == {"ok": True}
    metrics = requests.get(f"{service.url}/metrics", timeout=10).text
    assert 'cropper_dataset_jobs_total{status="done"}' in metrics


# -- a worker killed mid-job


@pytest.fixture
def without_worker(standin, tmp_path):
    """Gunicorn with no data-set worker of its own (the test runs one itself, to kill it)."""
    env = service_env(standin, tmp_path / "cache", DATASET_WORKER="false", DATASET_WORKERS="1")
    with Gunicorn(env, cwd=tmp_path, workers=1) as gunicorn:
        gunicorn.env_for_worker, gunicorn.cache_dir = {**gunicorn.env}, tmp_path / "cache"
        yield gunicorn


def run_worker(gunicorn):
    return subprocess.Popen([sys.executable, "-m", "cropper", "datasets", "worker"], env=gunicorn.env_for_worker,
                            cwd=gunicorn.cwd, stdout=subprocess.DEVNULL, stderr=open(gunicorn.cwd / "worker.log", "ab"))


def test_a_worker_killed_mid_job_is_taken_over_and_no_image_is_downloaded_twice(without_worker, standin):
    """SIGKILLed while the tenth image is half downloaded (the stand-in holds it there), the worker leaves
    nine images whose crops or pixels are in the cache; a new worker takes the job over at once (its lease's
    owner is gone) and finishes with none of those nine downloaded again. The tenth, whose bytes never
    arrived, is the one image asked for twice."""
    images = list(dict.fromkeys(box["imageUuid"] for box in find_boxes(concept=BENCH_DATASET_CONCEPT)))[:20]
    cut_off = images[9]
    standin.set_fault("hold", target="image", uuid=cut_off, times=1)
    job = start(without_worker, concepts=[BENCH_DATASET_CONCEPT], max_boxes=200, crop={"format": "png", "pad": 8})
    worker = run_worker(without_worker)
    sources = Path(without_worker.cache_dir) / "sources"
    try:
        assert standin.wait_until_held(1, timeout=120)
        url = f"{without_worker.url}/datasets/{job['id']}"
        # The nine images before it are whole in the cache (their pixels stored), and the crops of the first
        # round reported, before the kill.
        assert wait_until(lambda: len(list(sources.rglob("*.pix"))) == 9, timeout=30)
        assert wait_until(lambda: requests.get(url, timeout=10).json()["progress"]["crops_done"] > 0, timeout=30)
        worker.kill()
        worker.wait()
        standin.release()
        before = requests.get(url, timeout=10).json()
        assert before["status"] == "running" and 0 < before["progress"]["crops_done"] < 200
        worker = run_worker(without_worker)
        answer = finished(without_worker, job, timeout=180)
    finally:
        standin.release()
        worker.kill()
        worker.wait()
    assert answer["status"] == "done" and answer["progress"]["crops_done"] == 200, answer
    assert {image: standin.downloads(image) for image in images} == {
        image: 2 if image == cut_off else 1 for image in images}


def test_concept_names_are_fathomnets_with_a_prefix_in_any_case(service, standin):
    every = requests.get(f"{service.url}/concepts", timeout=10).json()
    assert every["concepts"] == concepts() and every["total"] == len(concepts())
    some = requests.get(f"{service.url}/concepts", params={"prefix": DATASET_GENUS.lower(), "limit": 2},
                        timeout=10).json()
    assert some["concepts"] == [name for name in concepts() if name.lower().startswith(DATASET_GENUS.lower())][:2]
    assert some["total"] >= 2
    for bad in ({"limit": "0"}, {"limit": "01"}, {"limit": "1001"}, {"prefix": "x" * 257}):
        answer = requests.get(f"{service.url}/concepts", params=bad, timeout=10)
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "validation_error", bad
    assert standin.count("/api/boundingboxes/list/concepts") <= 1  # remembered


def test_webdataset_shards_hold_every_sample_with_its_image_record_and_class(service, tmp_path, standin):
    """Small shards (DATASET_SHARD_BYTES here): several per split, an image's samples never across two."""
    job = finished(service, start(service, concepts=[DATASET_GENUS], descendants=True, formats=["webdataset",
                                  "imagefolder"], crop={"format": "png"}, split={"train": 0.5, "test": 0.5}))
    assert job["status"] == "done", job
    shards = [file for file in job["files"] if file["format"] == "webdataset"]
    folder = unpacked(service, {"files": [f for f in job["files"] if f["format"] == "imagefolder"]}, tmp_path / "zip")
    rows = {row["box_uuid"]: row for row in manifest(folder)}
    labels = (folder / "labels.txt").read_text().splitlines()
    assert len(shards) > 2 and {shard["split"] for shard in shards} == {row["split"] for row in rows.values()}
    import hashlib

    import webdataset as wds

    seen, images_in = {}, {}
    for shard in shards:
        data = requests.get(shard["url"].replace(shard["url"].split("/datasets/")[0], service.url), timeout=30).content
        assert hashlib.sha256(data).hexdigest() == shard["sha256"] and len(data) == shard["size"]
        path = tmp_path / shard["name"]
        path.write_bytes(data)
        samples = list(wds.WebDataset(str(path), shardshuffle=False).decode("pil"))
        assert len(samples) == shard["samples"]
        for sample in samples:
            record = sample["json"]
            assert record["box_uuid"] == sample["__key__"] and record["split"] == shard["split"]
            assert labels[sample["cls"]] == record["label"] == rows[record["box_uuid"]]["label"]
            region = record["region"]
            assert sample["png"].size == (region[2] - region[0], region[3] - region[1])
            seen[record["box_uuid"]] = shard["name"]
            images_in.setdefault(record["image_uuid"], set()).add(shard["name"])
    assert set(seen) == set(rows)  # as many samples as the manifest has rows, each once
    assert all(len(names) == 1 for names in images_in.values())  # an image's samples in one shard
    for shard in shards:  # within its size, unless one image's samples alone are more
        images = {image for image, names in images_in.items() if shard["name"] in names}
        assert shard["size"] <= SHARD_BYTES or len(images) == 1, shard


def test_fathomnet_failing_once_to_describe_the_images_costs_a_call_not_the_data_set(standin, tmp_path):
    """An image FathomNet fails to describe in time is asked for again as its crops are made (the failure is not
    remembered), so a passing hiccup costs one more call, not the image's boxes. (A service of its own: the
    module's has these images' records already.)"""
    first_image = find_boxes(concept=SPECIES[0])[0]["imageUuid"]
    standin.set_fault("slow", target="api", uuid=first_image, times=1)
    with Gunicorn(service_env(standin, tmp_path / "cache"), cwd=tmp_path, workers=1) as fresh:
        job = finished(fresh, start(fresh, concepts=SPECIES[:1], crop={"format": "jpeg"}))
    assert job["status"] == "done" and job["progress"]["crops_failed"] == 0, job
    assert standin.count("/api/images/query/uuids") == 2
