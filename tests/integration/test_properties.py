"""Generated input against the real service (Gunicorn, and nginx in front): it never breaks.

Hypothesis throws JSON bodies, batch items and crop paths at it, and hostile JSON text: integers of
hundreds of digits, every JSON type in every field, keys twice, lone surrogates, numbers spelled
0.1e1. Whatever it sends: the answer is JSON (or a crop image), never a 5xx other than the
documented upstream ones (502, 503 busy, 504), and the service still answers afterwards. Examples
and time are capped for CI.
"""

import json
import string

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.servers import NginxServer, find_nginx_or_skip
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


# -- hostile bodies, as JSON text: what json.dumps of a Python value never writes


class Raw(str):
    """A JSON token written as it is: a number spelled as no serialiser would (0.1e1, 1e400, -0)."""


class Pairs(tuple):
    """A JSON object as its (key, value) pairs, so a key may appear twice."""


def json_text(value):
    """value as JSON text; Raw tokens as they are, Pairs as an object whose keys may repeat."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Pairs):
        return "{" + ",".join(f"{json.dumps(key)}:{json_text(item)}" for key, item in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(json_text, value)) + "]"
    return json.dumps(value)  # a lone surrogate such as "\ud800" is written escaped, as a client may send it


CROP_FIELDS = ("uuid", "box_uuid", "x1", "y1", "x2", "y2", "pad", "square", "width", "height", "fit", "enlarge",
               "background", "quality", "format")
# Past 309 digits an int is no float (math.isfinite raises); past 4,300 Python will not read it at all.
huge_integers = st.builds(lambda sign, digits: Raw(sign + "9" * digits), st.sampled_from(["", "-"]),
                          st.sampled_from([16, 309, 310, 401, 4300, 4301]) | st.integers(17, 600))
odd_numbers = st.sampled_from(["0.1e1", "1E2", "1.0", "-0", "-0.0", "1e400", "-1e400", "1e-400", "5e-324",
                               "100.000", "0.5e1"]).map(Raw)
odd_strings = st.sampled_from(["\ud800", "\udfff\ud800", "__proto__", "constructor", "", " ", "1e3", "-1",
                               "\x00", "NaN", "Infinity", "#ff00ff", "10%", "=1+1", "x" * 300])
any_scalar = (st.none() | st.booleans() | st.integers() | huge_integers | odd_numbers
              | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20) | odd_strings)
any_value = st.recursive(any_scalar, lambda inner: st.lists(inner, max_size=3) | st.lists(
    st.tuples(st.text(max_size=8) | odd_strings, inner), max_size=3).map(Pairs), max_leaves=12)
hostile_values = huge_integers | odd_numbers | odd_strings | any_value  # each kind as likely as the rest together
field_values = {name: hostile_values for name in CROP_FIELDS}
field_values.update({name: pixels | hostile_values for name in ("x1", "y1", "x2", "y2")},
                    uuid=uuids | hostile_values, box_uuid=uuids | hostile_values)
field_pairs = st.one_of(*(st.tuples(st.just(name), values) for name, values in field_values.items()),
                        st.tuples(odd_strings | st.text(max_size=8), hostile_values))
# Objects with any fields, of every JSON type, a key perhaps twice and "__proto__" among them; and crops
# whose uuid and corners are any of those too.
hostile_objects = st.lists(field_pairs, max_size=8).map(Pairs)
hostile_crop_items = st.tuples(
    st.fixed_dictionaries({name: field_values[name] for name in ("uuid", "x1", "y1", "x2", "y2")}),
    st.lists(field_pairs, max_size=4)).map(lambda parts: Pairs([*parts[0].items(), *parts[1]]))
hostile_items = hostile_crop_items | hostile_objects | any_value | st.sampled_from(["a", "", "\ud800"])
hostile_batches = (st.lists(hostile_items, max_size=6)
                   | st.tuples(st.lists(hostile_items, max_size=6), st.lists(field_pairs, max_size=4)).map(
                       lambda parts: Pairs([("crops", parts[0]), *parts[1]]))
                   | hostile_objects | any_value)
hostile_crops = hostile_objects | st.lists(hostile_items, max_size=3) | any_value
concept_fields = st.sampled_from(["concept", "limit", "offset"])
hostile_concepts = st.lists(st.tuples(concept_fields, any_value | st.just("Bathochordaeus")) | field_pairs,
                            max_size=6).map(Pairs) | any_value

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


@pytest.fixture(scope="module")
def nginx(gunicorn, tmp_path_factory):
    """nginx in front, its per-client limits out of the way: these tests send bodies, not floods."""
    find_nginx_or_skip()
    with NginxServer(gunicorn, gunicorn.cache_dir, tmp_path_factory.mktemp("nginx"), api_rate="10000r/s",
                     api_burst=10000) as server:
        yield server


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


def post_text(http, url, text):
    return http.post(url, data=text.encode(), timeout=60,
                     headers={"Content-Type": "application/json"})


def test_generated_hostile_batches(base_url, http):
    """Huge integers anywhere, every JSON type in every field, keys twice, top-level lists and objects: each
    item is answered in place, or the whole body is refused (400, 413, 422), never a 500."""
    @EXAMPLES
    @given(hostile_batches)
    def check(body):
        answer = post_text(http, f"{base_url}/cropper-list/", json_text(body))
        assert_sound(answer)
        assert answer.status_code in (200, 400, 413, 422, *UPSTREAM_STATUSES), answer.text[:300]

    check()
    assert http.get(f"{base_url}/healthz", timeout=5).status_code == 200


def test_generated_hostile_crop_and_concept_bodies(base_url, http):
    @EXAMPLES
    @given(st.sampled_from(["/cropper/", "/cropper-concept/"]), hostile_crops | hostile_concepts)
    def check(path, body):
        assert_sound(post_text(http, f"{base_url}{path}", json_text(body)))

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
