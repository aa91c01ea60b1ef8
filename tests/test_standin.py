"""Checks that the FathomNet stand-in behaves as the other tests assume."""
import concurrent.futures
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
import requests
from PIL import Image

from devtools.standin import (
    ANNOTATED_NAMES,
    CATALOG_NAMES,
    DEEP_JSON_DEPTH,
    EDGE_BOX,
    EDGE_BOXES,
    GZIP_BOMB_SIZE,
    IIIF_COLORS,
    MULTIPAGE_CONCEPT,
    PAST_EDGE_BOX,
    SURVEY_NAMES,
    FathomNetStandIn,
    box,
    boxes,
    concept_boxes,
    uuid_for,
)

ROOT = Path(__file__).resolve().parent.parent
UNKNOWN = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def server():
    with FathomNetStandIn(latency=0.0) as s:
        yield s


@pytest.fixture
def s(server):
    server.reset()
    server.latency, server.slow_seconds, server.trickle_gap = 0.0, 5.0, None
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


def test_bounding_boxes_of_the_other_images_lie_inside_them(s, http):
    for name, u in CATALOG_NAMES.items():
        img = http.post(f"{s.api_url}/images/query/uuids", json=[u], timeout=5).json()[0]
        assert img["boundingBoxes"] == boxes(name)
        if name in ANNOTATED_NAMES:
            continue  # they have boxes past the edges on purpose, see below
        assert len(img["boundingBoxes"]) == 10 if name in SURVEY_NAMES else 2 <= len(img["boundingBoxes"]) <= 4
        for b in img["boundingBoxes"]:
            assert b["imageUuid"] == u and b["width"] > 0 and b["height"] > 0
            assert 0 <= b["x"] and b["x"] + b["width"] <= img["width"]
            assert 0 <= b["y"] and b["y"] + b["height"] <= img["height"]


def test_box_by_uuid_is_a_counted_faultable_api_call(s, http):
    b = boxes("gray")[0]
    got = http.get(f"{s.api_url}/boundingboxes/{b['uuid'].upper()}", timeout=5).json()
    assert got == b == box(b["uuid"])
    for key in ("uuid", "id", "concept", "altConcept", "x", "y", "width", "height", "imageUuid", "observer",
                "verified", "verifier", "rejected", "occluded", "truncated", "groupOf", "userDefinedKey",
                "reviewState", "createdTimestamp", "lastUpdatedTimestamp"):
        assert key in got
    assert got["imageUuid"] == uuid_for("gray")
    missing = http.get(f"{s.api_url}/boundingboxes/{UNKNOWN}", timeout=5)
    assert missing.status_code == 404 and missing.json()["status"] == 404
    assert s.api_calls(b["uuid"]) == 1 and s.api_calls(UNKNOWN) == 1 and s.api_calls() == 2
    s.set_fault("503", target="api", uuid=b["uuid"], times=1)
    assert http.get(f"{s.api_url}/boundingboxes/{boxes('gray')[1]['uuid']}", timeout=5).ok  # other box
    assert http.get(f"{s.api_url}/boundingboxes/{b['uuid']}", timeout=5).status_code == 503
    assert http.get(f"{s.api_url}/boundingboxes/{b['uuid']}", timeout=5).ok


def test_annotated_set_has_a_multipage_concept_and_boxes_on_and_past_every_edge(s):
    multi = concept_boxes(MULTIPAGE_CONCEPT)
    assert len(multi) == 32 and len({b["imageUuid"] for b in multi}) == 10
    assert [b["id"] for b in multi] == sorted(b["id"] for b in multi)
    annotated = [b for n in ANNOTATED_NAMES for b in boxes(n)]
    assert {b["concept"] for b in annotated} == {MULTIPAGE_CONCEPT, "Chiroteuthis calyx"}
    assert any(b["x"] == 0 for b in annotated) and any(b["y"] == 0 for b in annotated)
    assert any(b["x"] + b["width"] == 1920 for b in annotated)
    assert any(b["y"] + b["height"] == 1080 for b in annotated)
    assert any(b["x"] < 0 for b in annotated) and any(b["y"] < 0 for b in annotated)
    assert any(b["x"] + b["width"] > 1920 for b in annotated)
    assert any(b["y"] + b["height"] > 1080 for b in annotated)
    edge, past = box(EDGE_BOX), box(PAST_EDGE_BOX)
    assert edge["x"] + edge["width"] == 1920 and edge["imageUuid"] == uuid_for("framegrab-2")
    assert past["x"] < 0 and past["imageUuid"] == uuid_for("framegrab-7")
    assert box(EDGE_BOXES["full-frame"])["width"] == 1920
    assert all(box(u)["truncated"] for u in EDGE_BOXES.values())


def test_box_query_pages_through_a_concept_in_id_order(s, http):
    url = f"{s.api_url}/boundingboxes/query"
    # fathomnet-py (pydantic model_dump) sends every constraint, the unset ones as null.
    nulls = dict.fromkeys(["taxaProviderName", "contributorsEmails", "startTimestamp", "endTimestamp",
                           "includeUnverified", "includeVerified", "minDepth", "tagKeys", "sort"])
    pages = []
    for offset in range(0, 50, 10):
        r = http.post(url, json={**nulls, "concept": MULTIPAGE_CONCEPT, "limit": 10, "offset": offset}, timeout=5)
        assert r.status_code == 200
        pages.append(r.json())
    assert [len(p["content"]) for p in pages] == [10, 10, 10, 2, 0]
    assert [b for p in pages for b in p["content"]] == concept_boxes(MULTIPAGE_CONCEPT)
    assert pages[1]["totalSize"] == 32 and pages[1]["totalPages"] == 4 and pages[1]["pageNumber"] == 1
    assert pages[4]["empty"] is True
    everything = http.post(url, json={"concept": None, "limit": None, "offset": None}, timeout=5).json()["content"]
    assert len(everything) == sum(len(boxes(n)) for n in CATALOG_NAMES)
    assert [b["id"] for b in everything] == sorted(b["id"] for b in everything)
    count = http.post(f"{url}/count", json={"concept": MULTIPAGE_CONCEPT, "limit": 10}, timeout=5).json()
    assert count == {"objectType": "BoundingBoxEntity", "count": 32}
    by_concept = http.get(f"{url}/count/{MULTIPAGE_CONCEPT}", timeout=5).json()
    assert by_concept == {"concept": MULTIPAGE_CONCEPT, "count": 32}
    for bad in (b"[1]", b"{not json", b'{"limit": 0}', b'{"offset": -1}', b'{"limit": "10"}'):
        r = http.post(url, data=bad, headers={"Content-Type": "application/json"}, timeout=5)
        assert r.status_code == 400 and r.json()["status"] == 400
    assert s.count("/api/boundingboxes/query", method="POST") == 5 + 1 + 1 + 5
    # A fault aimed at a box hits the page that holds it, once.
    s.set_fault("500", target="api", uuid=concept_boxes(MULTIPAGE_CONCEPT)[25]["uuid"], times=1)
    page = {"concept": MULTIPAGE_CONCEPT, "limit": 10}
    assert http.post(url, json={**page, "offset": 0}, timeout=5).ok
    assert http.post(url, json={**page, "offset": 20}, timeout=5).status_code == 500
    assert http.post(url, json={**page, "offset": 20}, timeout=5).ok


@pytest.mark.parametrize("name", ["framegrab", "jpeg", "rgba", "gray", "palette", "palette-transparent",
                                  "gray16", "large", "offhost", "iiif-validator"])
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


def test_iiif_validator_image_matches_the_colour_table(s, http):
    rec = s.image("iiif-validator")
    im = Image.open(io.BytesIO(http.get(rec.url, timeout=5).content))
    assert (im.format, im.mode, im.size) == ("PNG", "RGB", (1000, 1000))
    for x, column in enumerate(IIIF_COLORS):
        for y, color in enumerate(column):
            # getcolors() counts every pixel of the square: all 10000 must be the table's colour.
            assert im.crop((100 * x, 100 * y, 100 * x + 100, 100 * y + 100)).getcolors() == [(10000, color)]


def test_endless_answer_streams_json_until_the_client_hangs_up(s, http):
    url = f"{s.api_url}/images/{uuid_for('gray')}"
    s.set_fault("endless", target="api", times=1, gap=0.005)
    with http.get(url, stream=True, timeout=5) as r:
        assert r.status_code == 200 and r.headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in r.headers
        got = b""
        for piece in r.iter_content(4096):
            got += piece
            if len(got) > 100_000:
                break
    assert got.startswith(b'[{"uuid": ')
    assert http.get(url, timeout=5).json()["uuid"] == uuid_for("gray")  # used up
    # It gives up after `seconds`, without the last chunk: the answer is broken, never complete.
    s.set_fault("endless", target="api", times=1, gap=0.01, seconds=0.3)
    t0 = time.monotonic()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http.get(url, timeout=5)
    assert time.monotonic() - t0 < 3


def test_endless_answer_stops_with_the_stand_in():
    s = FathomNetStandIn().start()
    s.set_fault("endless", target="api")
    pieces = requests.get(f"{s.api_url}/images/{uuid_for('gray')}", stream=True, timeout=5).iter_content(1024)
    next(pieces)
    t0 = time.monotonic()
    s.stop()
    assert time.monotonic() - t0 < 2
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # hung up mid-answer
        for _ in pieces:
            pass


def test_gzip_bomb_is_small_on_the_wire_and_huge_inflated(s, http):
    s.set_fault("gzip_bomb", target="api", uuid=uuid_for("gray"), times=1)
    with http.get(f"{s.api_url}/images/{uuid_for('gray')}", stream=True, timeout=30) as r:
        assert r.headers["Content-Encoding"] == "gzip" and r.headers["Content-Type"] == "application/json"
        wire = r.raw.read(decode_content=False)
    assert len(wire) == int(r.headers["Content-Length"]) < 2_000_000
    assert int.from_bytes(wire[-4:], "little") == GZIP_BOMB_SIZE % 2**32  # gzip trailer: inflated size
    head = zlib.decompressobj(31).decompress(wire, 10_000_000)  # only the first 10 MB
    assert head.startswith(b'{"uuid": "gzip-bomb", "padding": "      ') and head.endswith(b" " * 1000)
    assert http.get(f"{s.api_url}/images/{uuid_for('gray')}", timeout=5).json()["width"] == 640


def test_deep_json_is_valid_but_too_deep_for_json_loads(s, http):
    s.set_fault("deep_json", target="api", times=1)
    r = http.post(f"{s.api_url}/images/query/uuids", json=[uuid_for("gray")], timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.content == b"[" * DEEP_JSON_DEPTH + b"]" * DEEP_JSON_DEPTH
    with pytest.raises(RecursionError):
        json.loads(r.content)


def test_api_trickle_spread_or_byte_by_byte(s, http):
    url = f"{s.api_url}/images/{uuid_for('gray')}"
    normal = http.get(url, timeout=5).content
    s.slow_seconds = 1.0
    s.set_fault("trickle", target="api", times=1)  # no gap: 20 pieces over slow_seconds, as for images
    t0 = time.monotonic()
    assert requests.get(url, timeout=0.3).content == normal
    assert time.monotonic() - t0 >= 0.9
    s.set_fault("trickle", target="api", times=1, gap=2.0)  # 1 byte every 2 s: a 1 s read timeout fires
    t0 = time.monotonic()
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(url, timeout=1).content
    assert time.monotonic() - t0 < 1.9
    # The gap can also be the stand-in's default, set through the control endpoint.
    assert http.post(f"{s.base_url}/_standin/fault", timeout=5,
                     json={"kind": "trickle", "target": "api", "times": 1, "trickle_gap": 0.2}).ok
    assert s.trickle_gap == 0.2
    with requests.get(url, stream=True, timeout=5) as r:
        t0 = time.monotonic()
        assert r.raw.read(4) == normal[:4]
        assert time.monotonic() - t0 >= 0.55  # 3 gaps after the first byte


def test_redirect_goes_where_the_fault_says(s, http):
    url = f"{s.api_url}/images/{uuid_for('gray')}"
    elsewhere = "http://127.0.0.1:1/elsewhere"
    s.set_fault("redirect", target="api", times=1, location=elsewhere)
    r = http.get(url, timeout=5, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == elsewhere
    assert http.get(url, timeout=5, allow_redirects=False).status_code == 200
    with pytest.raises(ValueError):
        s.set_fault("redirect", target="api")  # where to?
    assert http.post(f"{s.base_url}/_standin/fault", timeout=5,
                     json={"kind": "redirect", "target": "image", "times": 1, "location": f"{s.base_url}/x"}).ok
    r = http.get(s.image("gray").url, timeout=5, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == f"{s.base_url}/x"


def test_bad_metadata_spoils_only_the_targeted_image(s, http):
    good, bad = uuid_for("jpeg"), uuid_for("gray")
    s.set_fault("bad_metadata", target="api", uuid=bad)
    images = http.post(f"{s.api_url}/images/query/uuids", json=[good, bad], timeout=5).json()
    assert images[0] == s.image_json("jpeg")
    assert images[1]["uuid"] == bad and images[1]["width"] == "abc" and "url" not in images[1]
    one = http.get(f"{s.api_url}/images/{bad}", timeout=5).json()
    assert one["width"] == "abc" and "url" not in one
    assert http.get(f"{s.api_url}/images/{good}", timeout=5).json() == s.image_json("jpeg")
    with pytest.raises(ValueError):
        s.set_fault("bad_metadata", target="image")
    s.clear_faults()
    assert http.get(f"{s.api_url}/images/{bad}", timeout=5).json() == s.image_json("gray")


def test_forbidden_url_points_the_image_elsewhere(s, http):
    good, bad = s.image("jpeg"), s.image("gray")
    s.set_fault("forbidden_url", target="api", uuid=bad.uuid, times=1)
    images = http.post(f"{s.api_url}/images/query/uuids", json=[good.uuid, bad.uuid], timeout=5).json()
    assert images[0]["url"] == good.url
    assert images[1]["url"] == "http://127.0.0.1:1" + bad.url.split(str(s.port), 1)[1]  # same path, port 1
    assert http.get(f"{s.api_url}/images/{bad.uuid}", timeout=5).json()["url"] == bad.url  # used up
    metadata = "http://169.254.169.254/latest/meta-data/iam/"
    assert http.post(f"{s.base_url}/_standin/fault", timeout=5,
                     json={"kind": "forbidden_url", "target": "api", "uuid": bad.uuid, "url": metadata}).ok
    assert http.get(f"{s.api_url}/images/{bad.uuid}", timeout=5).json()["url"] == metadata
    s.reset()
    assert http.get(f"{s.api_url}/images/{bad.uuid}", timeout=5).json()["url"] == bad.url


def test_fault_options_are_checked(s, http):
    with pytest.raises(ValueError):
        s.set_fault("trickle", target="api", gpa=1)
    r = http.post(f"{s.base_url}/_standin/fault", json={"kind": "redirect", "target": "api", "locaton": "x"},
                  timeout=5)
    assert r.status_code == 400


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


def test_a_hold_fault_stops_an_answer_half_way_until_released(s, http):
    rec = s.image("gray")
    s.set_fault("hold", target="image", uuid=rec.uuid, times=1)
    got = {}
    reader = threading.Thread(target=lambda: got.update(r=http.get(rec.url, timeout=30)))
    reader.start()
    assert s.wait_until_held(1, timeout=10)
    assert reader.is_alive()  # half the body is out, the rest waits
    s.release()
    reader.join(10)
    assert got["r"].content == rec.data
    assert not s.wait_until_held(1, timeout=0.1)  # released: nothing held any more
