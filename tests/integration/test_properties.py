"""Generated input against the real service (Gunicorn, and nginx in front): it never breaks.

Hypothesis throws JSON bodies, batch items and crop paths at it. Whatever it sends: the answer
is JSON (or a crop image), never a 5xx other than the documented upstream ones (502, 503 busy,
504), and the service still answers afterwards. Examples and time are capped for CI.
"""

import json
import string

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.standin import CATALOG_NAMES

UPSTREAM_STATUSES = {502, 503, 504}
KNOWN_UUIDS = sorted(CATALOG_NAMES.values())
EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=10), inner, max_size=4), max_leaves=20)
pixels = st.integers(-5, 5000) | st.sampled_from(["100", "0", "-1", "1e3", " 7 ", ""]) | st.floats(-1, 5000)
uuids = st.sampled_from(KNOWN_UUIDS) | st.uuids().map(str) | st.text(max_size=40)
crop_items = st.fixed_dictionaries(
    {"uuid": uuids, "x1": pixels, "y1": pixels, "x2": pixels, "y2": pixels},
    optional={"format": st.sampled_from(["webp", "jpeg", "jpg", "png", "PNG", "gif", ""]) | st.text(max_size=8),
              "extra": json_values})
bodies = crop_items | json_values | st.lists(crop_items, max_size=6)
path_parts = st.sampled_from(["/crops/", "9e/", "9e140d51-2a43-5870-9337-eb66c5a4de6d/", "0_0_10_10", ".png", ".webp",
                              "_", "..", "/", "%2F", "%00", "00", "-1", "x"]) | st.text(string.printable, max_size=6)
paths = st.lists(path_parts, min_size=1, max_size=8).map("".join)


def assert_sound(answer):
    assert answer.status_code < 500 or answer.status_code in UPSTREAM_STATUSES, (answer.status_code, answer.text[:300])
    if answer.headers.get("Content-Type", "").startswith(("image/", "text/html", "text/css", "text/javascript")):
        assert answer.status_code == 200  # a crop, or the web page and its files
        return
    assert answer.headers["Content-Type"].startswith("application/json"), answer.headers
    body = answer.json()
    json.dumps(body, allow_nan=False)  # really JSON: no NaN or Infinity slipped through
    if answer.status_code >= 400:
        assert set(body["error"]) == {"code", "message", "details"}


@pytest.fixture(params=["gunicorn", "nginx"])
def base_url(request):
    return request.getfixturevalue(request.param).url


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def test_generated_crop_bodies(base_url, http):
    @EXAMPLES
    @given(bodies)
    def check(body):
        assert_sound(http.post(f"{base_url}/cropper/", json=body, timeout=30))

    check()
    assert http.get(f"{base_url}/healthz", timeout=5).status_code == 200


def test_generated_batches(base_url, http):
    @EXAMPLES
    @given(st.lists(crop_items | json_values, max_size=8) | st.fixed_dictionaries(
        {"crops": st.lists(crop_items, max_size=5)}, optional={"format": st.text(max_size=5)}))
    def check(body):
        answer = http.post(f"{base_url}/cropper-list/", json=body, timeout=60)
        assert_sound(answer)
        if answer.status_code == 200:
            items = body if isinstance(body, list) else body["crops"]
            assert len(answer.json()) == len(items)

    check()
    assert http.get(f"{base_url}/healthz", timeout=5).status_code == 200


def test_generated_raw_bytes(base_url, http):
    @EXAMPLES
    @given(st.binary(max_size=300))
    def check(data):
        assert_sound(http.post(f"{base_url}/cropper/", data=data, timeout=30,
                               headers={"Content-Type": "application/json"}))

    check()


def test_generated_crop_paths(base_url, http):
    @EXAMPLES
    @given(paths)
    def check(path):
        if not path.startswith("/"):
            path = "/" + path
        assert_sound(http.get(f"{base_url}{path}", timeout=30))

    check()
    assert http.get(f"{base_url}/healthz", timeout=5).status_code == 200
