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
from urllib.parse import quote

import pytest
import requests
from PIL import Image, ImageChops, ImageStat

from cropper.upstream.fathomnet import box_from_api
from devtools.servers import StandInProcess
from devtools.standin import (
    ANNOTATED_NAMES,
    BENCH_DATASET_CONCEPT,
    BENCH_NAMES,
    CATALOG_NAMES,
    DATASET_BOXES,
    DATASET_CONCEPTS,
    DATASET_FAMILY,
    DATASET_GENUS,
    DATASET_NAMES,
    DATASET_OUTSIDE_BOXES,
    DATASET_PAST_EDGE_BOXES,
    DATASET_TINY_BOXES,
    DEEP_JSON_DEPTH,
    EDGE_BOX,
    EDGE_BOXES,
    GZIP_BOMB_SIZE,
    IIIF_COLORS,
    MULTIPAGE_CONCEPT,
    PAST_EDGE_BOX,
    REVIEW_STATES,
    SURVEY_CONCEPT,
    SURVEY_NAMES,
    TAXA_PROVIDERS,
    TAXONOMY_ROOT,
    FathomNetStandIn,
    box,
    boxes,
    concept_boxes,
    concepts,
    find_boxes,
    image_fields,
    taxon_descendants,
    taxon_parent,
    taxon_rank,
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
        if name in ANNOTATED_NAMES or name in DATASET_NAMES:
            continue  # they have boxes past the edges on purpose, see below
        many = name in SURVEY_NAMES or name in BENCH_NAMES
        assert len(img["boundingBoxes"]) == 10 if many else 2 <= len(img["boundingBoxes"]) <= 4
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
    # By default every box but the rejected ones (only the data set has those).
    assert len(everything) == sum(1 for n in CATALOG_NAMES for b in boxes(n) if b["reviewState"] != "REJECTED")
    assert [b["id"] for b in everything] == sorted(b["id"] for b in everything) and everything == find_boxes()
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


# -- concept list, taxa, query constraints, richer records, families, edits, looks


def query(http, s, count=False, **constraints):
    """All boxes (one page, no limit) POST /api/boundingboxes/query answers, or the count's count."""
    url = f"{s.api_url}/boundingboxes/query" + ("/count" if count else "")
    r = http.post(url, json={**NULLS, **constraints}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["count"] if count else r.json()["content"]


# fathomnet-py 1.9 sends every BoundingBoxConstraintsDTO field, unset ones as null.
NULLS = dict.fromkeys(["concept", "taxaProviderName", "contributorsEmails", "startTimestamp", "endTimestamp",
                       "includeUnverified", "includeVerified", "includeRejected", "includeUnknown", "minLongitude",
                       "maxLongitude", "minLatitude", "maxLatitude", "minDepth", "maxDepth", "ownerInstitutionCodes",
                       "tagKeys", "limit", "offset", "sort"])
ALL_BOXES = [b for n in CATALOG_NAMES for b in boxes(n)]
DEFAULT_STATES = {"VERIFIED", "UNVERIFIED", "UNKNOWN"}


def by_id(found):
    return sorted(found, key=lambda b: b["id"])


def test_concept_list_is_every_concept_of_the_catalog_in_order(s, http):
    listed = http.get(f"{s.api_url}/boundingboxes/list/concepts", timeout=5).json()
    assert listed == sorted({b["concept"] for b in ALL_BOXES}) == concepts()
    assert "Bathochordaeus" in listed and MULTIPAGE_CONCEPT in listed and BENCH_DATASET_CONCEPT in listed
    counts = http.get(f"{s.api_url}/boundingboxes/list/counts", timeout=5).json()
    assert [c["concept"] for c in counts] == listed
    assert sum(c["count"] for c in counts) == len(ALL_BOXES)
    assert {"concept": MULTIPAGE_CONCEPT, "count": 32} in counts


def test_taxa_endpoints_answer_as_fathomnet_py_reads_them(s, http):
    taxa = f"{s.api_url}/taxa"
    assert http.get(f"{taxa}/list/providers", timeout=5).json() == list(TAXA_PROVIDERS) == ["fathomnet", "mbari"]
    # What fathomnet-py's own tests expect of the real thing.
    children = http.get(f"{taxa}/query/children/fathomnet/Bathochordaeus", timeout=5).json()
    assert "Bathochordaeus mcnutti" in {c["name"] for c in children}
    assert [c["name"] for c in children] == sorted(c["name"] for c in children)
    parent = http.get(f"{taxa}/query/parent/fathomnet/{quote('Bathochordaeus mcnutti')}", timeout=5).json()
    assert parent == {"name": "Bathochordaeus", "rank": "Genus"}
    found = http.get(f"{taxa}/query/fathomnet/Bathochordaeus", timeout=5).json()
    assert found[0] == {"name": "Bathochordaeus", "rank": "Genus"}
    assert [t["name"] for t in found] == taxon_descendants("Bathochordaeus")
    # Several levels deep, the concept first and then all below it.
    cnidaria = [t["name"] for t in http.get(f"{taxa}/query/fathomnet/Cnidaria", timeout=5).json()]
    assert cnidaria[0] == "Cnidaria" and {"Scyphozoa", "Semaeostomeae", "Ulmaridae", "Aurelia", "Aurelia aurita",
                                          "Siphonophorae", "Nanomia bijuga", "Atolla wyvillei"} <= set(cnidaria)
    assert "Bathochordaeus" not in cnidaria
    lineage, name = [], "Aurelia aurita"
    while name:
        lineage.append((name, taxon_rank(name)))
        name = taxon_parent(name)
    assert lineage == [("Aurelia aurita", "Species"), ("Aurelia", "Genus"), ("Ulmaridae", "Family"),
                       ("Semaeostomeae", "Order"), ("Scyphozoa", "Class"), ("Cnidaria", "Phylum"),
                       ("Animalia", "Kingdom")]
    # mbari: ranks in lower case and subphyla the fathomnet tree lacks.
    assert http.get(f"{taxa}/query/parent/mbari/Appendicularia", timeout=5).json() == {"name": "Tunicata",
                                                                                        "rank": "subphylum"}
    assert http.get(f"{taxa}/query/parent/fathomnet/Appendicularia", timeout=5).json()["name"] == "Chordata"
    assert http.get(f"{taxa}/query/children/mbari/Bathochordaeus", timeout=5).json()[0]["rank"] == "species"
    # A leaf has no children; unknown provider, unknown concept and the root's parent are JSON 404s.
    assert http.get(f"{taxa}/query/children/fathomnet/{quote('Atolla wyvillei')}", timeout=5).json() == []
    for path in ("query/worms/Atolla", "query/fathomnet/Nothingia", "query/children/fathomnet/Nothingia",
                 "query/parent/mbari/Nothingia", f"query/parent/fathomnet/{TAXONOMY_ROOT}"):
        r = http.get(f"{taxa}/{path}", timeout=5)
        assert r.status_code == 404 and r.json()["status"] == 404, path


def test_every_concept_of_the_catalog_is_in_both_taxonomies():
    for provider in TAXA_PROVIDERS:
        everything = set(taxon_descendants(TAXONOMY_ROOT, provider))
        assert set(concepts()) <= everything
        assert all(taxon_parent(n, provider) in everything for n in everything - {TAXONOMY_ROOT})
    assert {taxon_rank(c) for c in DATASET_CONCEPTS} == {"Genus", "Species", "Family", "Order"}


def test_a_taxa_provider_rolls_a_concept_up_with_its_descendants(s, http):
    atolla = {"Atolla", "Atolla wyvillei", "Atolla vanhoeffeni"}
    expected = by_id(b for b in ALL_BOXES if b["concept"] in atolla and b["reviewState"] in DEFAULT_STATES)
    rolled = query(http, s, concept=DATASET_GENUS, taxaProviderName="fathomnet")
    assert rolled == expected and {b["concept"] for b in rolled} == atolla
    assert query(http, s, count=True, concept=DATASET_GENUS, taxaProviderName="mbari") == len(expected)
    assert {b["concept"] for b in query(http, s, concept=DATASET_GENUS)} == {"Atolla"}  # no provider: exact
    family = query(http, s, concept=DATASET_FAMILY, taxaProviderName="fathomnet")
    assert {b["concept"] for b in family} == {"Myctophidae", "Stenobrachius leucopsarus"}
    chordates = {b["concept"] for b in query(http, s, concept="Chordata", taxaProviderName="mbari")}
    assert chordates == {"Bathochordaeus", MULTIPAGE_CONCEPT, "Sebastolobus", "Myctophidae",
                         "Stenobrachius leucopsarus"}
    # A concept the tree lacks stands for itself; paging and totals hold over the rolled-up set.
    assert query(http, s, concept="Nothingia", taxaProviderName="fathomnet") == []
    page = http.post(f"{s.api_url}/boundingboxes/query", timeout=5,
                     json={"concept": "Atolla", "taxaProviderName": "fathomnet", "limit": 10, "offset": 10}).json()
    assert page["content"] == expected[10:20] and page["totalSize"] == len(expected)
    r = http.post(f"{s.api_url}/boundingboxes/query", json={"concept": "Atolla", "taxaProviderName": "worms"},
                  timeout=5)
    assert r.status_code == 400 and "worms" in r.json()["message"]


def where(name, field):
    return image_fields(name).get(field)


@pytest.mark.parametrize("constraints, keep", [
    ({"minDepth": 500}, lambda n: (where(n, "depthMeters") or -1) >= 500),
    ({"maxDepth": 300.5}, lambda n: where(n, "depthMeters") is not None and where(n, "depthMeters") <= 300.5),
    ({"minDepth": 1000, "maxDepth": 2500},
     lambda n: where(n, "depthMeters") is not None and 1000 <= where(n, "depthMeters") <= 2500),
    ({"minLatitude": 30, "maxLatitude": 36.7}, lambda n: where(n, "latitude") is not None
     and 30 <= where(n, "latitude") <= 36.7),
    ({"minLongitude": -115}, lambda n: where(n, "longitude") is not None and where(n, "longitude") >= -115),
    ({"maxLongitude": -122.2}, lambda n: where(n, "longitude") is not None and where(n, "longitude") <= -122.2),
    ({"startTimestamp": "2019-01-01T00:00:00Z", "endTimestamp": "2021-12-31T23:59:59Z"},
     lambda n: where(n, "timestamp") is not None and "2019" <= where(n, "timestamp") < "2022"),
    ({"startTimestamp": "2022-06-01T00:00:00+02:00"},
     lambda n: where(n, "timestamp") is not None and where(n, "timestamp") >= "2022-05-31T22:00"),
    ({"endTimestamp": "2019-07-03"},  # no zone: UTC
     lambda n: where(n, "timestamp") is not None and where(n, "timestamp") <= "2019-07-03T00:00:00"),
    ({"imagingTypes": ["AUV", "Towed camera"]}, lambda n: where(n, "imagingType") in ("AUV", "Towed camera")),
    ({"contributorsEmails": ["lab@example.org"]}, lambda n: where(n, "contributorsEmail") == "lab@example.org"),
])
def test_each_image_constraint_drops_what_it_should(s, http, constraints, keep):
    expected = by_id(b for n in CATALOG_NAMES if keep(n) for b in boxes(n) if b["reviewState"] in DEFAULT_STATES)
    everything = by_id(b for b in ALL_BOXES if b["reviewState"] in DEFAULT_STATES)
    assert 0 < len(expected) < len(everything)  # each constraint keeps some boxes and drops others
    assert query(http, s, **constraints) == expected == find_boxes(constraints)
    assert query(http, s, count=True, **constraints) == len(expected)


def test_images_lacking_a_field_fail_the_constraints_on_it(s, http):
    no_position, no_depth, no_time = (uuid_for(n) for n in ("dataset-9", "dataset-10", "dataset-11"))
    records = {r["uuid"]: r for r in http.post(f"{s.api_url}/images/query/uuids", timeout=10,
                                               json=[no_position, no_depth, no_time]).json()}
    assert records[no_position]["latitude"] is None and records[no_position]["longitude"] is None
    assert "depthMeters" not in records[no_depth] and records[no_time]["timestamp"] is None

    def images(found):
        return {b["imageUuid"] for b in found}
    wide = {"minDepth": -1, "maxDepth": 20000}
    assert no_depth not in images(query(http, s, **wide)) and no_position in images(query(http, s, **wide))
    assert no_position not in images(query(http, s, minLatitude=-90, maxLatitude=90))
    assert no_position not in images(query(http, s, maxLongitude=180))
    assert no_time not in images(query(http, s, startTimestamp="1900-01-01T00:00:00Z"))
    assert {no_position, no_depth, no_time} <= images(query(http, s))  # unconstrained they are there


def test_review_states_default_and_each_flag(s, http):
    ds = [b for n in DATASET_NAMES for b in boxes(n)]
    assert {b["reviewState"] for b in ds} == set(REVIEW_STATES)
    assert {(b["occluded"], b["truncated"]) for b in ds} == {(False, False), (False, True), (True, False), (True, True)}
    for b in ds:  # the old fields agree with the review state
        assert b["verified"] == (b["reviewState"] == "VERIFIED") and b["rejected"] == (b["reviewState"] == "REJECTED")
        assert b["altConcept"] is None and b["observer"]

    def states(**flags):
        return {b["reviewState"] for b in query(http, s, concept=DATASET_GENUS, taxaProviderName="fathomnet",
                                                **flags)}
    assert states() == DEFAULT_STATES  # null or absent: rejected boxes are left out
    assert states(includeRejected=True) == set(REVIEW_STATES)
    assert states(includeVerified=False) == {"UNVERIFIED", "UNKNOWN"}
    assert states(includeUnverified=False, includeUnknown=False) == {"VERIFIED"}
    assert states(includeVerified=False, includeUnverified=False, includeUnknown=False,
                  includeRejected=True) == {"REJECTED"}
    assert states(includeVerified=False, includeUnverified=False, includeUnknown=False) == set()
    rejected = query(http, s, includeVerified=False, includeUnverified=False, includeUnknown=False,
                     includeRejected=True)
    assert rejected == by_id(b for b in ALL_BOXES if b["reviewState"] == "REJECTED")
    # The service reads the review state of each.
    assert {box_from_api(b).review for b in ds} == set(REVIEW_STATES)


@pytest.mark.parametrize("bad", [{"minDepth": "deep"}, {"maxLatitude": True}, {"includeRejected": "yes"},
                                 {"imagingTypes": "ROV"}, {"contributorsEmails": [1]},
                                 {"startTimestamp": "yesterday"}, {"taxaProviderName": "worms"},
                                 {"taxaProviderName": 7}, {"concept": ["Atolla"]}])
def test_unusable_constraints_are_a_400(s, http, bad):
    r = http.post(f"{s.api_url}/boundingboxes/query", json={"concept": "Atolla", **bad}, timeout=5)
    assert r.status_code == 400 and r.json()["status"] == 400
    assert http.post(f"{s.api_url}/boundingboxes/query/count", json=bad, timeout=5).status_code == 400


def test_the_data_set_family(s, http):
    ds = {n: boxes(n) for n in DATASET_NAMES}
    assert all(len(found) <= 10 for found in ds.values())
    assert {b["concept"] for found in ds.values() for b in found} == set(DATASET_CONCEPTS)
    assert not {b["concept"] for n in CATALOG_NAMES if n not in DATASET_NAMES for b in boxes(n)} & set(
        DATASET_CONCEPTS)
    size = {c["name"]: (c["width"], c["height"]) for c in s.catalog()}
    where_is = {b["uuid"]: (n, b) for n, found in ds.items() for b in found}

    def inside(u):
        name, b = where_is[u]
        w, h = size[name]
        return 0 <= b["x"] and 0 <= b["y"] and b["x"] + b["width"] <= w and b["y"] + b["height"] <= h

    def overlaps(u):
        name, b = where_is[u]
        w, h = size[name]
        return b["x"] < w and b["y"] < h and b["x"] + b["width"] > 0 and b["y"] + b["height"] > 0
    assert DATASET_TINY_BOXES and all(min(box(u)["width"], box(u)["height"]) < 16 and inside(u)
                                      for u in DATASET_TINY_BOXES)
    assert all(min(b["width"], b["height"]) >= 16 for u, (_, b) in where_is.items() if u not in DATASET_TINY_BOXES)
    assert DATASET_PAST_EDGE_BOXES and all(overlaps(u) and not inside(u) for u in DATASET_PAST_EDGE_BOXES)
    assert DATASET_OUTSIDE_BOXES and not any(overlaps(u) for u in DATASET_OUTSIDE_BOXES)
    special = set(DATASET_TINY_BOXES + DATASET_PAST_EDGE_BOXES + DATASET_OUTSIDE_BOXES)
    assert all(inside(u) for u in where_is if u not in special)
    assert all(box(u)["reviewState"] == "VERIFIED" for u in DATASET_BOXES.values())
    # The box lookups and records agree, with the fields the constraints read.
    record = http.get(f"{s.api_url}/images/{uuid_for('dataset-3')}", timeout=5).json()
    assert record["boundingBoxes"] == ds["dataset-3"] and record["imagingType"] == "AUV"
    assert (record["depthMeters"], record["contributorsEmail"]) == (650.0, "lab@example.org")
    got = http.get(f"{s.api_url}/boundingboxes/{DATASET_BOXES['outside-far']}", timeout=5).json()
    assert got == box(DATASET_BOXES["outside-far"]) and got["x"] == -5000


def test_the_bench_family(s, http):
    assert len(BENCH_NAMES) == 100 and len(set(BENCH_NAMES) & set(CATALOG_NAMES)) == 100
    bench = [b for n in BENCH_NAMES for b in boxes(n)]
    assert len(bench) == 1000 and {b["concept"] for b in bench} == {BENCH_DATASET_CONCEPT}
    assert all(len(boxes(n)) == 10 for n in BENCH_NAMES)
    assert concept_boxes(BENCH_DATASET_CONCEPT) == by_id(bench)
    assert query(http, s, count=True, concept=BENCH_DATASET_CONCEPT) == 1000  # none rejected
    page = http.post(f"{s.api_url}/boundingboxes/query", json={"concept": BENCH_DATASET_CONCEPT, "limit": 100,
                                                                "offset": 900}, timeout=5).json()
    assert page["content"] == by_id(bench)[900:] and page["totalPages"] == 10
    assert {(c["width"], c["height"]) for c in s.catalog() if c["name"] in BENCH_NAMES} == {(1280, 720)}
    assert Image.open(io.BytesIO(s.image(BENCH_NAMES[-1]).data)).size == (1280, 720)


def test_existing_records_carry_the_new_fields(s, http):
    record = http.get(f"{s.api_url}/images/{uuid_for('framegrab')}", timeout=5).json()
    for key in ("depthMeters", "latitude", "longitude", "timestamp", "imagingType", "contributorsEmail"):
        assert record[key] is not None and record[key] == image_fields("framegrab")[key]
    got = http.get(f"{s.api_url}/boundingboxes/{EDGE_BOX}", timeout=5).json()
    for key in ("verified", "rejected", "occluded", "truncated", "observer", "altConcept", "reviewState"):
        assert key in got


def control(http, s, action, **fields):
    return http.post(f"{s.base_url}/_standin/{action}", json=fields, timeout=5)


def test_edits_show_in_every_answer_until_reset(s, http):
    api = s.api_url
    target = concept_boxes(MULTIPAGE_CONCEPT)[0]
    image = target["imageUuid"]

    def record(u=image):
        return http.get(f"{api}/images/{u}", timeout=5)

    def concept_list():
        return http.get(f"{api}/boundingboxes/list/concepts", timeout=5).json()
    before = record().json()
    # Move a box and give it a new concept.
    edited = control(http, s, "edit-box", uuid=target["uuid"].upper(), concept="Atolla wyvillei", x=5, width=77)
    assert edited.status_code == 200
    assert edited.json() == {**target, "concept": "Atolla wyvillei", "x": 5, "width": 77}
    assert http.get(f"{api}/boundingboxes/{target['uuid']}", timeout=5).json() == edited.json()
    assert edited.json() in record().json()["boundingBoxes"]
    assert target["uuid"] not in {b["uuid"] for b in query(http, s, concept=MULTIPAGE_CONCEPT)}
    assert query(http, s, count=True, concept=MULTIPAGE_CONCEPT) == 31
    assert http.get(f"{api}/boundingboxes/query/count/{MULTIPAGE_CONCEPT}", timeout=5).json()["count"] == 31
    assert edited.json() in query(http, s, concept=DATASET_GENUS, taxaProviderName="fathomnet")  # via the tree
    # Delete another box.
    gone = concept_boxes(MULTIPAGE_CONCEPT)[1]["uuid"]
    assert control(http, s, "delete-box", uuid=gone).json() == {"ok": True}
    assert http.get(f"{api}/boundingboxes/{gone}", timeout=5).status_code == 404
    assert gone not in {b["uuid"] for b in query(http, s, includeRejected=True)}
    assert query(http, s, count=True, concept=MULTIPAGE_CONCEPT) == 30
    # Add a box with a hostile concept name, placed under a genus in both trees.
    hostile = "<img src=x onerror=alert(1)>"
    added = control(http, s, "add-box", image="framegrab-5", concept=hostile, x=10, y=20, width=30, height=40,
                    parent="Atolla", reviewState="VERIFIED").json()
    assert added["concept"] == hostile and added["imageUuid"] == uuid_for("framegrab-5")
    assert added["reviewState"] == "VERIFIED" and (added["x"], added["y"], added["width"], added["height"]) == (
        10, 20, 30, 40)
    assert http.get(f"{api}/boundingboxes/{added['uuid']}", timeout=5).json() == added
    assert record(uuid_for("framegrab-5")).json()["boundingBoxes"][-1] == added
    assert query(http, s, concept=hostile) == [added] and concept_list()[0] == hostile
    assert added in query(http, s, concept="Scyphozoa", taxaProviderName="mbari")
    kids = http.get(f"{api}/taxa/query/children/fathomnet/Atolla", timeout=5).json()
    assert {"name": hostile, "rank": "Species"} in kids
    assert http.get(f"{api}/taxa/query/parent/mbari/{quote(hostile)}", timeout=5).json()["name"] == "Atolla"
    # Withdraw an image: its record, its bytes and its boxes are gone.
    withdrawn = s.image("survey-4")
    assert control(http, s, "withdraw-image", image=withdrawn.uuid).json() == {"ok": True}
    assert record(withdrawn.uuid).status_code == 404
    assert http.post(f"{api}/images/query/uuids", json=[withdrawn.uuid, image], timeout=5).json()[0]["uuid"] == image
    assert http.get(withdrawn.url, timeout=5).status_code == 404
    assert http.get(f"{api}/boundingboxes/{boxes('survey-4')[0]['uuid']}", timeout=5).status_code == 404
    assert query(http, s, count=True, concept=SURVEY_CONCEPT) == 90
    # reset() undoes every edit.
    assert http.post(f"{s.base_url}/_standin/reset", timeout=5).ok
    assert record().json() == before and hostile not in concept_list() and concept_list() == concepts()
    assert query(http, s, concept=MULTIPAGE_CONCEPT) == concept_boxes(MULTIPAGE_CONCEPT)
    assert http.get(f"{api}/boundingboxes/{added['uuid']}", timeout=5).status_code == 404
    assert http.get(withdrawn.url, timeout=5).content == withdrawn.data
    assert http.get(f"{api}/taxa/query/children/fathomnet/Atolla", timeout=5).json() == [
        {"name": "Atolla vanhoeffeni", "rank": "Species"}, {"name": "Atolla wyvillei", "rank": "Species"}]


def test_edits_as_methods_and_their_errors(s, http):
    u = boxes("gray")[0]["uuid"]
    assert s.edit_box(u, y=-3, height=9)["y"] == -3
    assert http.get(f"{s.api_url}/boundingboxes/{u}", timeout=5).json()["height"] == 9
    s.withdraw_image("gray")
    with pytest.raises(KeyError):
        s.edit_box(u, x=1)  # its image is gone, and its boxes with it
    with pytest.raises(KeyError):
        s.delete_box(UNKNOWN)
    with pytest.raises(KeyError):
        s.add_box("no-such-image", "Atolla", 0, 0, 10, 10)
    with pytest.raises(ValueError):
        s.add_box("jpeg", "Atolla", 0, 0, "10", 10)
    with pytest.raises(KeyError):
        s.add_box("jpeg", "Atollina", 0, 0, 10, 10, parent="Nothingia")
    added = s.add_box("jpeg", "", 0, 0, 10, 10)  # any name, even none
    assert s.image_json("jpeg")["boundingBoxes"][-1] == added and s.delete_box(added["uuid"]) is None
    assert control(http, s, "delete-box", uuid=UNKNOWN).status_code == 404
    assert control(http, s, "edit-box", uuid=boxes("jpeg")[0]["uuid"], x="1").status_code == 400
    assert control(http, s, "edit-box", uuid=boxes("jpeg")[0]["uuid"], colour="red").status_code == 400
    assert control(http, s, "add-box", image="jpeg", concept="x").status_code == 400  # no region
    assert control(http, s, "withdraw-image", image=UNKNOWN).status_code == 404
    s.reset()
    assert http.get(f"{s.api_url}/images/{uuid_for('gray')}", timeout=5).json()["boundingBoxes"] == boxes("gray")


# Decoded pixels of the default look, as they were before the scenes look came: tests crop these.
PATTERN_PIXELS = {
    "framegrab": "99712a2e3805f72f2424858c605c1545a3e07477a7b6a1e388a66dbc0beb292b",
    "framegrab-0": "69d2655f7e9a42cb5cf9e8384b939cb32e5b597496a0b47bc8628029f2a3c0e7",
    "framegrab-7": "dca8afba286bd7d70c6e80c63ad81a02066a9bc9f4c7172263b5d18fcc7b36d5",
    "survey-0": "81a77117f4c9a1727eb8a090a4c16599b4bf9ccb7e9088de2f8a6c8e180856f2",
}


def pixels(data):
    return hashlib.sha256(Image.open(io.BytesIO(data)).tobytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(PATTERN_PIXELS))
def test_the_default_look_keeps_its_pixels(s, name):
    assert s.look == "patterns" and pixels(s.image(name).data) == PATTERN_PIXELS[name]


def test_the_scenes_look_draws_deep_sea_scenes(s, http):
    with FathomNetStandIn(look="scenes") as scenes:
        name = "dataset-2"
        record = http.get(f"{scenes.api_url}/images/{uuid_for(name)}", timeout=5).json()
        data = http.get(record["url"], timeout=10).content
        assert hashlib.sha256(data).hexdigest() == record["sha256"] != s.image(name).sha256
        im = Image.open(io.BytesIO(data))
        assert (im.format, im.mode, im.size) == ("PNG", "RGB", (1920, 1080))
        # Dark-blue water...
        r, g, b = ImageStat.Stat(im.crop((0, 0, 1920, 40))).mean
        assert b > g > r and b < 140
        # ...and at the biggest Atolla box a deep-red medusa standing out of it.
        atolla = max((b for b in boxes(name) if b["concept"] == "Atolla" and b["width"] > 100),
                     key=lambda b: b["width"] * b["height"])
        region = im.crop((atolla["x"], atolla["y"], atolla["x"] + atolla["width"], atolla["y"] + atolla["height"]))
        red = ImageChops.subtract(region.getchannel("R"), region.getchannel("B")).point(
            lambda v: 255 if v > 40 else 0).histogram()[255]
        assert red > 0.1 * atolla["width"] * atolla["height"]
        # Images of other kinds and the boxes are as in the default look.
        assert scenes.image("gray").data == s.image("gray").data and record["boundingBoxes"] == boxes(name)
        assert pixels(scenes.image("framegrab-0").data) != PATTERN_PIXELS["framegrab-0"]
    with pytest.raises(ValueError):
        FathomNetStandIn(look="pastel")


def test_scenes_are_the_same_in_every_process(s):
    code = ("from devtools.standin import _data; import hashlib\n"
            "print(hashlib.sha256(_data('framegrab-3', 'scenes')).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    with FathomNetStandIn(look="scenes") as scenes:
        assert out.stdout.split() == [scenes.image("framegrab-3").sha256]


def test_a_stand_in_process_takes_a_look_and_edits():
    with StandInProcess(look="scenes") as process:
        catalog = process.catalog()
        data = requests.get(catalog["framegrab-0"]["url"], timeout=10).content
        assert pixels(data) != PATTERN_PIXELS["framegrab-0"]
        added = process.control("add-box", image="bench-0", concept="Nothingia", x=1, y=2, width=3, height=4)
        found = requests.post(f"{process.api_url}/boundingboxes/query", json={"concept": "Nothingia"}, timeout=5)
        assert found.json()["content"] == [added]
        process.reset()
        assert requests.get(f"{process.api_url}/boundingboxes/{added['uuid']}", timeout=5).status_code == 404
