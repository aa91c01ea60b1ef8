"""The service as it runs in production: real Gunicorn workers over real sockets, FathomNet played by the stand-in."""

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from devtools import servers
from devtools.servers import wait_until
from tests.images import (
    assert_image_equal,
    assert_image_similar,
    expected_crop,
    open_bytes,
)


def post_crop(server, record, box, **extra):
    x1, y1, x2, y2 = box
    body = {"uuid": record.uuid, "x1": x1, "y1": y1, "x2": x2, "y2": y2, **extra}
    return requests.post(f"{server.url}/cropper/", json=body, timeout=30)


def cache_files(server, uuid=None):
    """Every file below the cache's crops/ and sources/ (optionally only one image's)."""
    found = []
    for folder in ("crops", "sources"):
        for dirpath, _, names in os.walk(server.cache_dir / folder):
            found += [os.path.join(dirpath, n) for n in names if uuid is None or uuid in os.path.join(dirpath, n)]
    return found


def forget_image(server, uuid):
    """Remove everything cached about an image, so the next request starts from FathomNet."""
    servers.forget_image(server.cache_dir, uuid)


@pytest.mark.parametrize("name", ["framegrab", "jpeg", "rgba", "gray", "palette", "palette-transparent", "gray16"])
@pytest.mark.parametrize("fmt", ["png", "webp", "jpeg"])
def test_served_crop_shows_the_source_region(gunicorn, standin, name, fmt):
    record = standin.image(name)
    box = (37, 21, 237, 171)
    response = post_crop(gunicorn, record, box, format=fmt)
    assert response.status_code == 200, response.text
    served = requests.get(response.json()["url"], timeout=10)
    assert served.status_code == 200
    assert served.headers["Content-Type"] == f"image/{fmt}"
    crop, expected = open_bytes(served.content), expected_crop(record, box)
    if fmt == "png":
        assert_image_equal(crop, expected)
    else:
        assert crop.mode in (("RGB", "L") if fmt == "jpeg" else ("RGB", "RGBA"))
        assert_image_similar(crop, expected)


def test_gray16_is_scaled_not_clipped(gunicorn, standin):
    record = standin.image("gray16")
    response = post_crop(gunicorn, record, (0, 0, 640, 480), format="png")
    crop = open_bytes(requests.get(response.json()["url"], timeout=10).content)
    low, high = crop.getextrema()
    assert low < 10 and high > 245  # the full range survives; clipping would make nearly all 255


def test_cached_repeat_makes_zero_upstream_calls(gunicorn, standin):
    record = standin.image("framegrab")
    assert post_crop(gunicorn, record, (1, 1, 101, 101)).json()["cached"] is False
    standin.reset()
    for _ in range(5):  # spread over the workers
        response = post_crop(gunicorn, record, (1, 1, 101, 101))
        assert response.json()["cached"] is True
    assert standin.counts()["api"] == 0 and standin.downloads() == 0


def test_second_box_downloads_nothing(gunicorn, standin):
    record = standin.image("framegrab-1")
    post_crop(gunicorn, record, (0, 0, 50, 50))
    assert standin.downloads(record.uuid) == 1
    standin.reset()
    for box in [(100, 100, 300, 300), (1000, 500, 1920, 1080)]:
        response = post_crop(gunicorn, record, box, format="png")
        assert response.json()["cached"] is False
        assert_image_equal(open_bytes(requests.get(response.json()["url"], timeout=10).content),
                           expected_crop(record, box))
    assert standin.downloads() == 0 and standin.api_calls() == 0


def test_32_identical_cold_requests_do_the_work_once(gunicorn, standin):
    record = standin.image("large")
    standin.latency = 0.05  # a remote-like upstream widens the window for duplicate work
    barrier = threading.Barrier(32)

    def one(_):
        barrier.wait()
        return post_crop(gunicorn, record, (640, 360, 1280, 720))

    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(one, range(32)))
    assert [r.status_code for r in responses] == [200] * 32
    bodies = [r.json() for r in responses]
    assert len({b["url"] for b in bodies}) == 1
    assert sum(not b["cached"] for b in bodies) == 1  # exactly one request made the crop
    assert standin.downloads(record.uuid) == 1
    assert standin.api_calls(record.uuid) == 1


@pytest.mark.parametrize(
    "body, status",
    [
        ({"uuid": "../../etc/passwd", "x1": 0, "y1": 0, "x2": 1, "y2": 1}, 422),
        ({"uuid": "00000000-0000-4000-8000-000000000000", "x1": 0, "y1": 0, "x2": 1, "y2": 1}, 404),
        ({"uuid": "9d90edb1-c7de-5f3e-89e9-3084aba433fd", "x1": 0, "y1": 0, "x2": 641, "y2": 1}, 422),
        ({"uuid": "9d90edb1-c7de-5f3e-89e9-3084aba433fd", "x1": "a", "y1": 0, "x2": 1, "y2": 1}, 422),
    ],
    ids=["traversal", "unknown-image", "outside", "not-a-number"],
)
def test_bad_input_over_http_and_the_service_stays_up(gunicorn, body, status):
    response = requests.post(f"{gunicorn.url}/cropper/", json=body, timeout=10)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert "error" in response.json() and "Traceback" not in response.text
    assert requests.get(f"{gunicorn.url}/healthz", timeout=5).status_code == 200


def test_raw_garbage_gets_json_errors(gunicorn):
    for data, headers, status in [
        (b"{", {"Content-Type": "application/json"}, 400),
        (b"\xff\xfe\x00", {"Content-Type": "application/json"}, 400),
        (b"x=1", {"Content-Type": "text/plain"}, 415),
        (b"[" + b"1," * 600_000 + b"1]", {"Content-Type": "application/json"}, 413),
    ]:
        response = requests.post(f"{gunicorn.url}/cropper", data=data, headers=headers, timeout=10)
        assert response.status_code == status
        assert response.json()["error"]["code"]


@pytest.mark.parametrize(
    "kind, target, status",
    [("500", "api", 502), ("slow", "api", 504), ("500", "image", 502), ("truncated", "image", 502),
     ("html", "image", 502), ("trickle", "image", 504), ("corrupt", "image", 502),
     ("bomb", "image", 502)],  # a bomb in place of the listed image fails its sha256 first
)
def test_upstream_faults_over_http(gunicorn, standin, kind, target, status):
    record = standin.image("gray")
    box = (3, 3, 63, 63)
    forget_image(gunicorn, record.uuid)
    standin.slow_seconds = 4.0
    standin.set_fault(kind, target=target, uuid=record.uuid)
    response = post_crop(gunicorn, record, box, format="png")
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"]
    standin.clear_faults()
    again = post_crop(gunicorn, record, box, format="png")  # failures are never cached
    assert again.status_code == 200


def test_a_listed_bomb_is_refused_with_422(gunicorn, standin):
    response = post_crop(gunicorn, standin.image("bomb"), (0, 0, 10, 10))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "image_too_large"


def test_worker_killed_mid_crop_leaves_no_partial_file(gunicorn, standin):
    record = standin.image("framegrab-2")
    standin.set_fault("hold", target="image", uuid=record.uuid, times=1)
    outcome = {}

    def doomed():
        try:
            outcome["status"] = post_crop(gunicorn, record, (10, 10, 300, 300)).status_code
        except requests.RequestException as error:
            outcome["error"] = error

    thread = threading.Thread(target=doomed)
    thread.start()
    assert standin.wait_until_held(1)  # half the image is in: the worker is mid-download
    killed = gunicorn.worker_pids()
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    thread.join(15)
    standin.release()
    assert "error" in outcome or outcome.get("status", 200) >= 500
    # Only the metadata, complete before the download began, may be there: no crop, no pixels, no temp file.
    assert [os.path.basename(p) for p in cache_files(gunicorn, record.uuid)] == [f"{record.uuid}.json"]
    # The lock the dead worker held is gone with it: the next request does the work at once.
    assert wait_until(lambda: len(set(gunicorn.worker_pids()) - set(killed)) == gunicorn.workers)  # replaced
    started = time.monotonic()
    response = post_crop(gunicorn, record, (10, 10, 300, 300), format="png")
    assert response.status_code == 200
    assert time.monotonic() - started < 10
    assert_image_equal(open_bytes(requests.get(response.json()["url"], timeout=10).content),
                       expected_crop(record, (10, 10, 300, 300)))


def test_a_batch_of_100_crops_over_10_images_downloads_each_image_once(gunicorn, standin):
    records = [standin.image(f"framegrab-{i}") for i in range(10)]
    for record in records:
        forget_image(gunicorn, record.uuid)
    body = [{"uuid": r.uuid, "x1": 17 * j, "y1": 9 * j, "x2": 17 * j + 150, "y2": 9 * j + 100, "format": "png"}
            for r in records for j in range(10)]
    response = requests.post(f"{gunicorn.url}/cropper-list/", json=body, timeout=60)
    assert response.status_code == 200
    answers = response.json()
    assert [a["box"] for a in answers] == [[b["x1"], b["y1"], b["x2"], b["y2"]] for b in body]
    assert all(a["cached"] is False for a in answers)
    assert standin.api_calls() == 1 and standin.downloads() == 10
    pixel_files = [p for p in cache_files(gunicorn) if p.endswith(".pix") and any(r.uuid in p for r in records)]
    assert len(pixel_files) == 10  # one decode per image: pixels are written only right after a download
    sample = answers[37]
    assert_image_equal(open_bytes(requests.get(sample["url"], timeout=10).content),
                       expected_crop(records[3], sample["box"]))
