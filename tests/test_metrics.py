"""Prometheus metrics counted in process (one process: prometheus_client's own registry), by known
sequences of requests through Flask's test client and the stand-in. Counters are global to the test
process, so each check reads what a sequence added."""

import uuid as uuidlib

from prometheus_client import REGISTRY

from devtools.standin import CATALOG_NAMES

FRAMEGRAB = CATALOG_NAMES["framegrab"]


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


def grown(name, labels, action):
    """How much each labelled sample of name grew while action ran: {label value: growth} per labels dict."""
    before = [value(name, **one) for one in labels]
    action()
    return [value(name, **one) - was for one, was in zip(labels, before)]


def test_a_cors_preflight_is_no_crop(client, standin):
    outcomes = [{"outcome": outcome} for outcome in ("hit", "miss", "failed")]
    preflight = {"Origin": "http://lab.test", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}

    def ask():
        assert client.options("/cropper/", headers=preflight).status_code == 200

    assert grown("cropper_crops_total", outcomes, ask) == [0, 0, 0]


def test_a_crop_refused_before_the_schema_is_counted_under_its_code(client, standin):
    codes = [{"code": code} for code in ("bad_request", "unsupported_media_type", "unknown")]

    def ask():
        assert client.post("/cropper/", data="{", content_type="application/json").status_code == 400
        assert client.post("/cropper/", data="{}", content_type="text/plain").status_code == 415

    assert grown("cropper_crop_failures_total", codes, ask) == [1, 1, 0]


def test_fathomnets_404_is_counted_as_not_found(client, standin):
    outcomes = [{"call": "image", "outcome": outcome} for outcome in ("ok", "not_found")]

    def ask():
        answer = client.post("/cropper/", json={"uuid": str(uuidlib.uuid4()), "x1": 0, "y1": 0, "x2": 5, "y2": 5})
        assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "image_not_found"

    assert grown("cropper_fathomnet_calls_total", outcomes, ask) == [0, 1]
    assert grown("cropper_fathomnet_calls_total", outcomes, lambda: client.post(
        "/cropper/", json={"uuid": FRAMEGRAB, "x1": 0, "y1": 0, "x2": 5, "y2": 5})) == [1, 0]
