"""Checks that the FathomNet stand-in behaves as the other tests assume."""
import concurrent.futures
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from devtools.standin import CATALOG_NAMES, FathomNetStandIn, uuid_for

ROOT = Path(__file__).resolve().parent.parent
UNKNOWN = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def server():
    with FathomNetStandIn(latency=0.0) as s:
        yield s


@pytest.fixture
def s(server):
    server.reset()
    server.latency, server.slow_seconds = 0.0, 5.0
    yield server
    server.reset()


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def test_image_json_shape_and_case_insensitive_uuid(s, http):
    u = uuid_for("framegrab")
    body = http.get(f"{s.api_url}/images/{u.upper()}", timeout=5).json()
    for key in ("id", "uuid", "url", "width", "height", "sha256", "contentType", "imagingType", "valid",
                "timestamp", "createdTimestamp", "lastUpdatedTimestamp", "depthMeters", "latitude",
                "longitude", "tags", "boundingBoxes"):
        assert key in body
    assert (body["uuid"], body["width"], body["height"]) == (u, 1920, 1080)
    assert body["contentType"] == "image/png" and body["valid"] is True and isinstance(body["id"], int)
    assert body["url"].startswith(f"http://127.0.0.1:{s.port}/images/") and "%20" in body["url"]


def test_unknown_image_and_path_are_json_404(s, http):
    r = http.get(f"{s.api_url}/images/{UNKNOWN}", timeout=5)
    assert r.status_code == 404 and r.json()["status"] == 404 and r.json()["path"].endswith(UNKNOWN)
    r = http.get(f"{s.base_url}/nope", timeout=5)
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"


def test_query_uuids_keeps_known_in_order(s, http):
    a, b = uuid_for("gray"), uuid_for("jpeg")
    r = http.post(f"{s.api_url}/images/query/uuids", json=[b, UNKNOWN, a], timeout=5)
    assert [i["uuid"] for i in r.json()] == [b, a]
    bad = http.post(f"{s.api_url}/images/query/uuids", data=b"[not json",
                    headers={"Content-Type": "application/json"}, timeout=5)
    assert bad.status_code == 400


def test_bounding_boxes_lie_inside_their_images(s, http):
    for name, u in CATALOG_NAMES.items():
        img = http.post(f"{s.api_url}/images/query/uuids", json=[u], timeout=5).json()[0]
        assert 2 <= len(img["boundingBoxes"]) <= 4
        for box in img["boundingBoxes"]:
            assert box["image"] == u and box["width"] > 0 and box["height"] > 0
            assert 0 <= box["x"] and box["x"] + box["width"] <= img["width"]
            assert 0 <= box["y"] and box["y"] + box["height"] <= img["height"]
    box = img["boundingBoxes"][0]
    assert http.get(f"{s.api_url}/boundingboxes/{box['uuid']}", timeout=5).json() == box
    assert http.get(f"{s.api_url}/boundingboxes/{UNKNOWN}", timeout=5).status_code == 404


@pytest.mark.parametrize("name", ["framegrab", "jpeg", "rgba", "gray", "palette", "palette-transparent",
                                  "gray16", "large", "offhost"])
def test_served_bytes_decode_and_match_sha256(s, http, name):
    meta = http.get(f"{s.api_url}/images/{uuid_for(name)}", timeout=5).json()
    r = http.get(meta["url"], timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == meta["contentType"]
    assert hashlib.sha256(r.content).hexdigest() == meta["sha256"] == s.image(name).sha256
    im = Image.open(io.BytesIO(r.content))
    assert im.size == (meta["width"], meta["height"]) and im.mode == s.image(name).mode
    if name == "gray16":
        assert im.getextrema() == (0, 65535)
    if name == "rgba":
        hist = im.getchannel("A").histogram()
        assert hist[0] and hist[128] and hist[255]
    if name == "offhost":
        assert meta["url"].startswith(f"http://localhost:{s.port}/")


def test_content_is_position_dependent_and_distinct(s):
    im = Image.open(io.BytesIO(s.image("framegrab").data))
    assert im.crop((0, 0, 64, 64)).tobytes() != im.crop((8, 4, 72, 68)).tobytes()
    assert len({s.image(f"framegrab-{i}").sha256 for i in range(10)} | {s.image("framegrab").sha256}) == 11


def test_generation_is_deterministic_across_processes(s):
    names = ["framegrab-3", "jpeg", "palette-transparent", "gray16", "bomb"]
    code = ("from devtools.standin import _data; import hashlib\n"
            f"for n in {names!r}: print(hashlib.sha256(_data(n)).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [s.image(n).sha256 for n in names]


def test_bomb_and_huge_records(s, http):
    bomb = http.get(f"{s.api_url}/images/{uuid_for('bomb')}", timeout=5).json()
    assert (bomb["width"], bomb["height"]) == (1920, 1080)
    data = http.get(bomb["url"], timeout=5).content
    assert len(data) < 10_000
    try:
        assert Image.open(io.BytesIO(data)).size == (30000, 30000)
    except Image.DecompressionBombError:
        pass
    huge = http.get(f"{s.api_url}/images/{uuid_for('huge')}", timeout=5).json()
    assert (huge["width"], huge["height"]) == (40000, 30000)
    assert Image.open(io.BytesIO(http.get(huge["url"], timeout=5).content)).size == (320, 240)


@pytest.mark.parametrize("kind", ["404", "500", "503"])
@pytest.mark.parametrize("target", ["api", "image"])
def test_status_fault_once_then_recovery(s, http, kind, target):
    rec = s.image("gray")
    url = f"{s.api_url}/images/{rec.uuid}" if target == "api" else rec.url
    s.set_fault(kind, target=target, uuid=rec.uuid, times=1)
    first = http.get(url, timeout=5)
    assert first.status_code == int(kind)
    assert first.headers["Content-Type"].startswith("application/json" if target == "api" else "text/html")
    assert http.get(url, timeout=5).status_code == 200


def test_fault_targets_only_its_uuid(s, http):
    s.set_fault("500", target="image", uuid=uuid_for("gray"))
    assert http.get(s.image("gray").url, timeout=5).status_code == 500
    assert http.get(s.image("gray").url, timeout=5).status_code == 500  # times=None: forever
    assert http.get(s.image("jpeg").url, timeout=5).status_code == 200
    s.set_fault("503", target="api")
    assert http.post(f"{s.api_url}/images/query/uuids", json=[UNKNOWN], timeout=5).status_code == 503
    s.clear_faults()
    assert http.get(s.image("gray").url, timeout=5).status_code == 200


def test_slow_and_trickle(s, http):
    rec = s.image("gray")
    s.slow_seconds = 1.0
    s.set_fault("slow", target="image", times=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(rec.url, timeout=0.3)
    s.set_fault("trickle", target="image", times=1)
    t0 = time.monotonic()
    r = requests.get(rec.url, timeout=0.3)  # per-read timeout never fires
    assert time.monotonic() - t0 >= 0.9 and r.content == rec.data


def test_truncated_html_corrupt_bomb_faults(s, http):
    rec = s.image("gray")
    s.set_fault("truncated", target="image", times=1)
    with pytest.raises(requests.exceptions.RequestException):
        http.get(rec.url, timeout=5).content
    s.set_fault("html", target="image", times=1)
    r = http.get(rec.url, timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    s.set_fault("html", target="api", times=1)
    assert http.get(f"{s.api_url}/images/{rec.uuid}", timeout=5).headers["Content-Type"].startswith("text/html")
    s.set_fault("corrupt", target="image", times=1)
    r = http.get(rec.url, timeout=5)
    assert len(r.content) == len(rec.data) and hashlib.sha256(r.content).hexdigest() != rec.sha256
    s.set_fault("bomb", target="image", times=1)
    assert http.get(rec.url, timeout=5).content == s.image("bomb").data
    assert http.get(rec.url, timeout=5).content == rec.data  # all used up


def test_counters(s, http):
    g, j = s.image("gray"), s.image("jpeg")
    http.get(f"{s.api_url}/images/{g.uuid}", timeout=5)
    http.post(f"{s.api_url}/images/query/uuids", json=[j.uuid], timeout=5)
    http.get(g.url, timeout=5)
    http.get(g.url, timeout=5)
    http.get(j.url, timeout=5)
    assert (s.api_calls(), s.api_calls(g.uuid), s.api_calls(j.uuid)) == (2, 1, 1)
    assert (s.downloads(), s.downloads(g.uuid), s.downloads(j.uuid)) == (3, 2, 1)
    assert s.count(g.path) == 2 and s.count(g.url.split(str(s.port))[1]) == 2  # quoted or not
    assert s.count("/api/images/query/uuids", method="POST") == 1
    counts = http.get(f"{s.base_url}/_standin/counts", timeout=5).json()  # not counted itself
    assert (counts["api"], counts["downloads"]) == (2, 3) and counts["by_path"][f"GET {g.path}"] == 2
    s.reset()
    assert s.api_calls() == s.downloads() == 0


def test_control_endpoints(s, http):
    base = f"{s.base_url}/_standin"
    catalog = http.get(f"{base}/catalog", timeout=5).json()
    assert {c["name"]: c["uuid"] for c in catalog} == CATALOG_NAMES
    g = s.image("gray")
    assert http.post(f"{base}/fault", json={"kind": "500", "target": "image", "uuid": g.uuid, "times": 1},
                     timeout=5).ok
    assert http.get(g.url, timeout=5).status_code == 500
    assert http.post(f"{base}/latency", json={"ms": 150}, timeout=5).ok and s.latency == 0.15
    http.post(f"{base}/reset", timeout=5)
    assert http.get(f"{base}/counts", timeout=5).json()["downloads"] == 0


def test_latency_is_applied(s, http):
    url = f"{s.api_url}/images/{uuid_for('gray')}"
    http.get(url, timeout=5)
    s.latency = 0.2
    t0 = time.monotonic()
    http.get(url, timeout=5)
    assert time.monotonic() - t0 >= 0.2


def test_handles_32_concurrent_downloads(s):
    s.latency = 0.1
    urls = [s.image(f"framegrab-{i % 10}").url for i in range(32)]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        t0 = time.monotonic()
        sizes = list(pool.map(lambda u: len(requests.get(u, timeout=10).content), urls))
    assert all(sizes) and time.monotonic() - t0 < 3  # parallel, not 32 x latency
    assert s.downloads() == 32


def test_stop_is_prompt_and_hangs_up_keep_alive_clients(http):
    s = FathomNetStandIn().start()
    url = s.image("gray").url
    assert http.get(url, timeout=5).ok  # leaves a pooled keep-alive connection
    s.slow_seconds = 30
    s.set_fault("slow", target="api")
    slow = concurrent.futures.ThreadPoolExecutor(1).submit(
        requests.get, f"{s.api_url}/images/{uuid_for('gray')}", timeout=10)
    time.sleep(0.2)
    t0 = time.monotonic()
    s.stop()
    assert time.monotonic() - t0 < 2
    with pytest.raises(requests.exceptions.ConnectionError):
        http.get(url, timeout=5)
    slow.exception(timeout=5)  # finished one way or the other, without waiting 30 s


def test_runs_as_a_process():
    proc = subprocess.Popen([sys.executable, "-m", "devtools.standin", "--port", "0", "--latency-ms", "10"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert line.startswith("FathomNet stand-in at http://127.0.0.1:")
        api = line.split()[-1]
        assert requests.get(f"{api}/images/{uuid_for('gray')}", timeout=5).json()["width"] == 640
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
