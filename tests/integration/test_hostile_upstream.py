"""A hostile or broken upstream against the running service: every call bounded in size, time and place.

FathomNet is the stand-in, misbehaving on purpose: endless and gzip-bombed answers, JSON nested
100,000 deep, bytes trickled slower than any read timeout notices, redirects to other ports,
metadata that points where images must not come from. Each answer must come within its deadline,
as JSON, in words, and leave the workers small and the next request unharmed.
"""

import socket
import statistics
import threading
import time
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from devtools import servers
from devtools.servers import Gunicorn
from devtools.standin import _gzip_bomb
from tests.fakeservers import JSONHandler, serving
from tests.integration.conftest import service_env

API_TIMEOUT, DOWNLOAD_TIMEOUT = 2, 3


@pytest.fixture(scope="module")
def app(standin, tmp_path_factory):
    """Per-read timeouts longer than the trickles' gaps: only the total deadlines can stop them."""
    run_dir = tmp_path_factory.mktemp("hostile")
    env = service_env(standin, run_dir / "cache", READ_TIMEOUT="5", API_TIMEOUT=str(API_TIMEOUT),
                      DOWNLOAD_TIMEOUT=str(DOWNLOAD_TIMEOUT), MAX_API_BYTES=str(256 * 1024),
                      GUNICORN_THREADS="8", MISS_SLOTS="2", MISS_QUEUE="4", LOCK_TIMEOUT="10")
    with Gunicorn(env, cwd=run_dir, workers=2) as server:
        server.cache_dir = run_dir / "cache"
        yield server


def crop(app, record, box=(0, 0, 64, 64), **extra):
    x1, y1, x2, y2 = box
    body = {"uuid": record.uuid, "x1": x1, "y1": y1, "x2": x2, "y2": y2, **extra}
    return requests.post(f"{app.url}/cropper/", json=body, timeout=60)


def forget(app, record):
    """Drop everything the cache holds of an image (crops, metadata, pixels): its next crop is cold."""
    servers.forget_image(app.cache_dir, record.uuid)


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def assert_upstream_error(answer, statuses=(502,)):
    assert answer.status_code in statuses, answer.text
    error = answer.json()["error"]
    for leak in ("HTTPConnectionPool", "Max retries", "Errno", "object at 0x", "Traceback"):
        assert leak not in answer.text
    return error


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.parametrize("kind, options, statuses", [
    ("endless", {"gap": 0.01}, (502, 504)),   # capped by size or by time, whichever comes first
    ("gzip_bomb", {}, (502,)),                # 1 MB on the wire, 1 GiB inflated
    ("deep_json", {}, (502,)),                # 100,000 levels of [
    ("trickle", {"gap": 1.0}, (504,)),        # a byte a second: no read ever times out
])
def test_a_hostile_api_answer_is_bounded_and_answered_within_the_deadline(app, standin, kind, options, statuses):
    _gzip_bomb()  # built once per process (about a second): not inside the time measured
    record = standin.image("framegrab-6")
    forget(app, record)
    standin.set_fault(kind, target="api", uuid=record.uuid, **options)
    answer, seconds = timed(lambda: crop(app, record))
    assert_upstream_error(answer, statuses)
    assert seconds < API_TIMEOUT + 1.5
    standin.clear_faults()
    assert crop(app, record).status_code == 200  # nothing of it was kept


def test_an_image_trickled_slower_than_the_download_deadline_is_cut_off(app, standin):
    record = standin.image("framegrab-7")
    forget(app, record)
    standin.set_fault("trickle", target="image", uuid=record.uuid, gap=0.5)  # 1 byte every 0.5 s
    answer, seconds = timed(lambda: crop(app, record))
    error = assert_upstream_error(answer, (504,))
    assert error["code"] == "upstream_timeout" and seconds < DOWNLOAD_TIMEOUT + 1.5


class Listener:
    """A port that counts who connects to it (and answers nothing)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port, self.connections = self.sock.getsockname()[1], 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
            except socket.timeout:
                continue

    def close(self):
        self.stopped.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def listener():
    port = Listener()
    yield port
    port.close()


def test_an_api_redirect_leaving_its_origin_is_not_followed(app, standin, listener):
    record = standin.image("framegrab-8")
    forget(app, record)
    standin.set_fault("redirect", target="api", uuid=record.uuid, location=f"http://127.0.0.1:{listener.port}/x")
    answer = crop(app, record)
    assert "away from its own address" in assert_upstream_error(answer)["message"]
    assert listener.connections == 0


def test_an_image_on_an_allowed_host_but_another_port_is_not_fetched(app, standin, listener):
    record = standin.image("framegrab-9")
    forget(app, record)
    standin.set_fault("forbidden_url", target="api", uuid=record.uuid, url=f"http://127.0.0.1:{listener.port}/a.png")
    error = assert_upstream_error(crop(app, record))
    assert error["details"]["port"] == listener.port and listener.connections == 0


def test_metadata_that_led_to_no_image_is_not_kept(app, standin, listener):
    """FathomNet fixed: the next crop must not fail on the poisoned metadata of the last one."""
    record = standin.image("jpeg")
    forget(app, record)
    standin.set_fault("forbidden_url", target="api", uuid=record.uuid, times=1,
                      url=f"http://127.0.0.1:{listener.port}/a.jpg")
    assert_upstream_error(crop(app, record))
    assert crop(app, record).status_code == 200
    assert standin.api_calls(record.uuid) == 2


def test_one_images_bad_metadata_fails_only_its_own_batch_items(app, standin):
    records = [standin.image(name) for name in ("framegrab-3", "framegrab-4", "framegrab-5")]
    for record in records:
        forget(app, record)
    standin.set_fault("bad_metadata", target="api", uuid=records[1].uuid)
    body = [{"uuid": r.uuid, "x1": 0, "y1": 0, "x2": 32 + i, "y2": 32} for r in records for i in range(2)]
    answers = requests.post(f"{app.url}/cropper-list/", json=body, timeout=60).json()
    codes = [a.get("error", {}).get("code") for a in answers]
    assert codes == [None, None, "upstream_error", "upstream_error", None, None]


def test_an_unreachable_fathomnet_is_told_in_words(standin, tmp_path, listener):
    dead = f"http://127.0.0.1:{listener.port + 0}/api"
    listener.close()  # nothing listens there now
    with Gunicorn(service_env(standin, tmp_path / "cache", FATHOMNET_API_URL=dead), cwd=tmp_path, workers=1) as app:
        error = assert_upstream_error(crop(app, standin.image("gray")))
    assert error["message"] == "FathomNet could not be reached, or broke off its answer about image " \
                               f"{standin.image('gray').uuid}."


def test_a_stalled_download_blocks_no_other_image(app, standin):
    """Per-key locks: nothing waits on an unrelated image's work, however many keys are in use."""
    stalled, other = standin.image("large"), standin.image("rgba")
    forget(app, stalled)
    assert crop(app, other, (0, 0, 8, 8)).status_code == 200  # its pixels are kept from now on
    standin.set_fault("hold", target="image", uuid=stalled.uuid)
    with ThreadPoolExecutor(1) as background:
        held = background.submit(crop, app, stalled)
        assert standin.wait_until_held(1)
        boxes = [(x, y, x + 9, y + 7) for x in range(0, 790, 79) for y in range(0, 590, 59)]  # 100 new crops
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda box: timed(lambda: crop(app, other, box)), boxes))
        standin.release()
        assert held.result().status_code == 200
    assert [answer.status_code for answer, _ in answers] == [200] * 100
    assert max(seconds for _, seconds in answers) < 2


def test_cached_crops_stay_fast_while_every_thread_could_be_waiting_on_a_slow_host(app, standin):
    """As many crop-making requests as the service has threads wait on a held download; hits stay under 1 s."""
    hit = standin.image("gray")
    assert crop(app, hit, (1, 1, 9, 9)).status_code == 200
    slow = [standin.image(f"framegrab-{i}") for i in range(8)]
    for record in slow:
        forget(app, record)
    standin.set_fault("hold", target="image")
    threads = 2 * 8  # 2 workers x GUNICORN_THREADS
    with ThreadPoolExecutor(threads) as waiting:
        slow_answers = [waiting.submit(crop, app, slow[i % 8], (i, i, i + 50, i + 50)) for i in range(threads)]
        assert standin.wait_until_held(2)
        with ThreadPoolExecutor(4) as clients:
            hits = list(clients.map(lambda _: timed(lambda: crop(app, hit, (1, 1, 9, 9))), range(200)))
        standin.release()
        statuses = sorted(answer.result().status_code for answer in slow_answers)
    assert all(answer.status_code == 200 for answer, _ in hits)
    latencies = sorted(seconds for _, seconds in hits)
    assert latencies[int(0.99 * len(latencies))] < 1.0, statistics.median(latencies)
    assert set(statuses) <= {200, 503}  # past a worker's queue: "busy, come back", at once
    assert statuses.count(200) >= 2 * (2 + 4) - 4


def test_a_hostile_upstream_leaves_the_workers_small(app, standin):
    record = standin.image("framegrab-2")
    peak, stop = {}, threading.Event()

    def sample():
        while not stop.wait(0.05):
            for pid in app.worker_pids():
                try:
                    peak[pid] = max(peak.get(pid, 0.0), rss_mib(pid))
                except OSError:
                    pass

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for kind, options in (("gzip_bomb", {}), ("endless", {"gap": 0}), ("deep_json", {}), ("trickle", {"gap": 1})):
            forget(app, record)
            standin.set_fault(kind, target="api", uuid=record.uuid, **options)
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda i: crop(app, record, (i, 0, i + 8, 8)), range(4)))
            standin.clear_faults()
        standin.set_fault("gzip_bomb", target="image", uuid=record.uuid)
        forget(app, record)
        crop(app, record)
    finally:
        stop.set()
        sampler.join()
    assert peak and max(peak.values()) < 300, peak


def test_a_null_answer_from_fathomnet_is_unusable_not_missing(tmp_path):
    """FathomNet answering 200 with JSON null has answered nothing usable (502), not "there is none" (404)."""
    servers.find_nginx_or_skip()
    image, box, unknown = (str(uuidlib.uuid4()) for _ in range(3))
    with serving(JSONHandler) as fathomnet:
        for path in (f"/api/images/{image}", f"/api/boundingboxes/{box}"):
            fathomnet.routes[("GET", path)] = lambda sent: (200, b"null")
        env = {"CACHE_DIR": tmp_path / "cache", "FATHOMNET_API_URL": f"{fathomnet.url}/api",
               "ALLOWED_IMAGE_HOSTS": fathomnet.url.removeprefix("http://"), "UPSTREAM_RETRIES": "0"}
        with Gunicorn(env, cwd=tmp_path, workers=1) as app, \
                servers.NginxServer(app, tmp_path / "cache", tmp_path / "nginx") as nginx:
            asked = [
                requests.post(f"{nginx.url}/cropper/", json={"uuid": image, "x1": 0, "y1": 0, "x2": 8, "y2": 8},
                              timeout=30),
                requests.post(f"{nginx.url}/cropper/", json={"box_uuid": box}, timeout=30),
                requests.get(f"{nginx.url}/boxes/{box}.webp", timeout=30, allow_redirects=False),
                requests.get(f"{nginx.url}/images/{image}/boxes", timeout=30),
                requests.get(f"{nginx.url}/iiif/3/{image}/info.json", timeout=30),
                requests.get(f"{nginx.url}/iiif/3/{image}/0,0,8,8/8,8/0/default.jpg", timeout=30),
            ]
            for answer in asked:
                assert assert_upstream_error(answer)["code"] == "upstream_error"
            # What FathomNet has not (its 404) is still not found.
            missing = requests.post(f"{nginx.url}/cropper/", json={"uuid": unknown, "x1": 0, "y1": 0, "x2": 8,
                                                                   "y2": 8}, timeout=30)
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "image_not_found"
        assert "Traceback" not in app.log()
