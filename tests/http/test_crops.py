"""The HTTP API through Flask's test client, with FathomNet played by the real stand-in."""

import shutil

import pytest

from cropper import create_app
from devtools.standin import boxes
from tests.images import assert_image_equal, expected_crop, open_bytes


def crop_body(record, box=(100, 100, 405, 400), **extra):
    x1, y1, x2, y2 = box
    return {"uuid": record.uuid, "x1": x1, "y1": y1, "x2": x2, "y2": y2, **extra}


def local(url):
    """Strip PUBLIC_URL so the test client can fetch a crop URL."""
    return url.removeprefix("http://crops.test")


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    assert response.json["error"]["code"] == code
    assert response.json["error"]["message"]
    return response.json["error"]


def test_post_answers_with_the_crop_url_and_its_facts(client, standin):
    record = standin.image("framegrab")
    response = client.post("/cropper/", json=crop_body(record, format="png"))
    assert response.status_code == 200
    assert response.headers["X-Cropper-Cache"] == "miss"
    assert response.json == {
        "url": f"http://crops.test/crops/{record.uuid[:2]}/{record.uuid}/100_100_405_400.png",
        "uuid": record.uuid, "box": [100, 100, 405, 400], "region": [100, 100, 405, 400], "width": 305,
        "height": 300, "format": "png", "cached": False,
    }
    served = client.get(local(response.json["url"]))
    assert served.status_code == 200
    assert served.mimetype == "image/png"
    assert_image_equal(open_bytes(served.data), expected_crop(record, (100, 100, 405, 400)))


def test_old_clients_send_strings_uppercase_uuids_and_no_slash(client, standin):
    record = standin.image("framegrab")
    body = {"uuid": record.uuid.upper(), "x1": "100", "y1": "100", "x2": "405", "y2": "400"}
    response = client.post("/cropper", json=body)
    assert response.status_code == 200
    assert response.json["uuid"] == record.uuid
    assert response.json["format"] == "webp"
    assert response.json["url"].endswith("/100_100_405_400.webp")


def test_cached_repeat_makes_no_upstream_call(client, standin):
    record = standin.image("framegrab")
    assert client.post("/cropper/", json=crop_body(record)).json["cached"] is False
    standin.reset()
    again = client.post("/cropper/", json=crop_body(record))
    assert again.json["cached"] is True
    assert again.headers["X-Cropper-Cache"] == "hit"
    assert standin.counts()["api"] == 0 and standin.downloads() == 0


def test_second_box_of_an_image_downloads_nothing(client, standin):
    record = standin.image("framegrab")
    client.post("/cropper/", json=crop_body(record, box=(0, 0, 10, 10)))
    standin.reset()
    response = client.post("/cropper/", json=crop_body(record, box=(500, 500, 700, 650), format="png"))
    assert response.status_code == 200 and response.json["cached"] is False
    assert standin.downloads() == 0 and standin.api_calls() == 0
    served = open_bytes(client.get(local(response.json["url"])).data)
    assert_image_equal(served, expected_crop(record, (500, 500, 700, 650)))


def test_base_url_comes_from_forwarded_headers_without_public_url(settings, standin):
    from cropper import create_app

    client = create_app(settings.replace(public_url="")).test_client()
    record = standin.image("gray")
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "crops.example.org"}
    response = client.post("/cropper/", json=crop_body(record, box=(0, 0, 5, 5)), headers=headers)
    assert response.json["url"].startswith("https://crops.example.org/crops/")


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "bad_request"),
        ({"data": "uuid=x", "content_type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        ({"json": {"uuid": "../../etc/passwd", "x1": 0, "y1": 0, "x2": 1, "y2": 1}}, 422, "validation_error"),
        ({"json": {"uuid": "9e140d51-2a43-5870-9337-eb66c5a4de6d", "x1": 5, "y1": 0, "x2": 5, "y2": 1}},
         422, "validation_error"),
        ({"json": ["not", "an", "object"]}, 422, "validation_error"),
        ({"data": "[" + "0," * 600_000 + "0]", "content_type": "application/json"}, 413, "request_entity_too_large"),
    ],
    ids=["malformed", "not-json", "traversal", "empty-box", "list", "too-large"],
)
def test_bad_input_gets_a_json_error(client, standin, kwargs, status, code):
    assert_error(client.post("/cropper/", **kwargs), status, code)
    assert standin.counts()["api"] == 0


def test_validation_errors_name_each_field(client):
    body = {"uuid": "nope", "x1": -1, "y1": "a", "x2": 1.5, "extra": 1}
    details = assert_error(client.post("/cropper/", json=body), 422, "validation_error")["details"]
    assert set(details) == {"uuid", "x1", "y1", "x2", "y2", "extra"}
    assert details["extra"] == ["Unknown field."]


def test_unknown_image_is_404(client, standin):
    body = {"uuid": "00000000-0000-4000-8000-000000000000", "x1": 0, "y1": 0, "x2": 1, "y2": 1}
    assert_error(client.post("/cropper/", json=body), 404, "image_not_found")


def test_box_outside_the_image_says_its_size_and_downloads_nothing(client, standin):
    record = standin.image("gray")  # 640x480
    error = assert_error(client.post("/cropper/", json=crop_body(record, box=(600, 0, 641, 10))), 422,
                         "box_outside_image")
    assert error["details"] == {"image_width": 640, "image_height": 480}
    assert "640x480" in error["message"]
    assert standin.downloads() == 0


@pytest.mark.parametrize("name", ["huge", "bomb"])
def test_images_over_the_pixel_limit_are_refused(client, standin, name):
    record = standin.image(name)
    assert_error(client.post("/cropper/", json=crop_body(record, box=(0, 0, 10, 10))), 422, "image_too_large")
    if name == "huge":
        assert standin.downloads() == 0  # refused on FathomNet's word, before downloading


@pytest.mark.parametrize(
    "kind, target, status, code",
    [
        ("500", "api", 502, "upstream_error"),
        ("html", "api", 502, "upstream_error"),
        ("slow", "api", 504, "upstream_timeout"),
        ("404", "image", 502, "upstream_error"),
        ("500", "image", 502, "upstream_error"),
        ("slow", "image", 504, "upstream_timeout"),
        ("trickle", "image", 504, "upstream_timeout"),
        ("truncated", "image", 502, "upstream_error"),
        ("html", "image", 502, "upstream_error"),
        ("corrupt", "image", 502, "upstream_error"),
    ],
)
def test_upstream_faults_map_to_502_or_504_and_are_not_cached(client, standin, kind, target, status, code):
    record = standin.image("gray")
    standin.slow_seconds = 4.0  # beyond the 1 s read and 3 s download timeouts of the test settings
    standin.set_fault(kind, target=target, uuid=record.uuid)
    assert_error(client.post("/cropper/", json=crop_body(record, box=(1, 2, 30, 40))), status, code)
    standin.clear_faults()
    retried = client.post("/cropper/", json=crop_body(record, box=(1, 2, 30, 40)))
    assert retried.status_code == 200 and retried.json["cached"] is False


def test_image_host_off_the_allowlist_is_never_contacted(client, standin):
    record = standin.image("offhost")
    error = assert_error(client.post("/cropper/", json=crop_body(record, box=(0, 0, 10, 10))), 502, "upstream_error")
    assert error["details"]["host"] == "localhost"
    assert standin.downloads() == 0


def test_a_waiter_gives_up_with_503_and_retry_after(settings, standin):
    from cropper import create_app
    from cropper.crops import Box, Crop

    app = create_app(settings.replace(lock_timeout=0.3))
    record = standin.image("gray")
    crop = Crop(record.uuid, Box(100, 100, 405, 400), "webp")
    with app.extensions["cropper"].crop_store.lock(crop):  # another request is making this crop
        waiter = app.test_client().post("/cropper/", json=crop_body(record))
    assert_error(waiter, 503, "busy")
    assert int(waiter.headers["Retry-After"]) >= 1
    assert app.test_client().post("/cropper/", json=crop_body(record)).status_code == 200


def test_get_regenerates_a_missing_crop(client, settings, standin):
    record = standin.image("rgba")
    url = local(client.post("/cropper/", json=crop_body(record, box=(10, 10, 90, 60), format="png")).json["url"])
    (settings.cache_dir / url.removeprefix("/")).unlink()
    served = client.get(url)
    assert served.status_code == 200
    assert served.headers["X-Cropper-Cache"] == "regenerated"
    assert "immutable" in served.headers["Cache-Control"]
    assert_image_equal(open_bytes(served.data), expected_crop(record, (10, 10, 90, 60)))
    assert client.get(url).headers["X-Cropper-Cache"] == "hit"


@pytest.mark.parametrize(
    "path",
    [
        "/crops/9e/9e140d51-2a43-5870-9337-eb66c5a4de6d/0_0_10_10.gif",
        "/crops/9e/9E140D51-2A43-5870-9337-EB66C5A4DE6D/0_0_10_10.png",
        "/crops/00/9e140d51-2a43-5870-9337-eb66c5a4de6d/0_0_10_10.png",
        "/crops/9e/9e140d51-2a43-5870-9337-eb66c5a4de6d/00_0_10_10.png",
        "/crops/9e/9e140d51-2a43-5870-9337-eb66c5a4de6d/10_0_10_10.png",
        "/crops/9e/9e140d51-2a43-5870-9337-eb66c5a4de6d/0_0_99999_10.png",
        "/crops/../../etc/passwd",
        "/crops/9e/../../sources/9e/9e140d51-2a43-5870-9337-eb66c5a4de6d.json",
    ],
)
def test_a_path_that_is_not_a_crop_is_404_without_calling_fathomnet(client, standin, path):
    assert client.get(path).status_code == 404
    assert standin.counts()["api"] == 0


def test_cors_preflight_and_headers(client, standin):
    preflight = client.options(
        "/cropper/", headers={"Origin": "https://tool.example", "Access-Control-Request-Method": "POST",
                              "Access-Control-Request-Headers": "Content-Type"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", "https://tool.example")
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    record = standin.image("gray")
    response = client.post("/cropper/", json=crop_body(record, box=(0, 0, 4, 4)),
                           headers={"Origin": "https://tool.example"})
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://tool.example")


def test_cors_only_for_configured_origins(settings, standin):
    from cropper import create_app

    client = create_app(settings.replace(cors_origins=("https://ok.example",))).test_client()
    record = standin.image("gray")
    body = crop_body(record, box=(0, 0, 4, 4))
    assert client.post("/cropper/", json=body, headers={"Origin": "https://ok.example"}).headers[
        "Access-Control-Allow-Origin"] == "https://ok.example"
    assert "Access-Control-Allow-Origin" not in client.post(
        "/cropper/", json=body, headers={"Origin": "https://evil.example"}).headers


def test_unknown_routes_and_methods_are_json(client):
    assert_error(client.get("/nope"), 404, "not_found")
    error = client.get("/cropper/")
    assert_error(error, 405, "method_not_allowed")


def test_a_crop_evicted_as_soon_as_it_is_made_is_a_503_busy_not_a_500(app, client, standin, monkeypatch):
    """Eviction racing the answer twice in a row cannot be timed from outside: the store is made to lose it."""
    url = local(client.post("/cropper/", json=crop_body(standin.image("gray"), format="png")).json["url"])
    monkeypatch.setattr(app.extensions["cropper"].crop_store, "open", lambda crop: None)
    served = client.get(url)
    assert_error(served, 503, "busy")
    assert "evicted" in served.json["error"]["message"]


def test_a_get_that_makes_a_crop_again_takes_a_slot_as_a_post_does(settings, standin):
    """With every crop-making slot taken, a GET of an evicted crop is a 503 busy (before 0.6 it passed the
    limit); a crop on disk is served whatever the slots."""
    app = create_app(settings.replace(miss_slots=1, miss_queue=0))
    client = app.test_client()
    record = standin.image("framegrab")
    made = client.post("/cropper/", json={"uuid": record.uuid, "x1": 0, "y1": 0, "x2": 20, "y2": 20}).json["url"]
    gone = client.post("/cropper/", json={"uuid": record.uuid, "x1": 0, "y1": 0, "x2": 30, "y2": 30}).json["url"]
    shutil.rmtree(settings.cache_dir / "crops")  # both evicted
    client.get(made.replace("http://crops.test", ""))  # made again: on disk now, the other still gone
    with app.extensions["cropper"].admission.slot():  # another request is making a crop
        busy = client.get(gone.replace("http://crops.test", ""))
        assert busy.status_code == 503 and busy.json["error"]["code"] == "busy"
        assert busy.headers["Retry-After"] == "1"
        assert client.get(made.replace("http://crops.test", "")).status_code == 200
    assert client.get(gone.replace("http://crops.test", "")).status_code == 200


def test_an_answer_that_used_what_fathomnet_could_not_confirm_says_so(settings, standin):
    client = create_app(settings.replace(metadata_ttl=0.0)).test_client()  # always asked again
    box = boxes("framegrab-3")[0]
    fresh = client.post("/cropper/", json={"box_uuid": box["uuid"]})
    assert fresh.status_code == 200 and "X-Cropper-Stale" not in fresh.headers
    standin.set_fault("503", target="api")
    for answer in (client.post("/cropper/", json={"box_uuid": box["uuid"]}),
                   client.get(f"/boxes/{box['uuid']}.webp"), client.get(f"/images/{box['imageUuid']}/boxes")):
        assert answer.status_code in (200, 302) and answer.headers["X-Cropper-Stale"] == "1"
    plain = client.post("/cropper/", json={"uuid": box["imageUuid"], "x1": 0, "y1": 0, "x2": 8, "y2": 8})
    assert plain.status_code == 200 and "X-Cropper-Stale" not in plain.headers  # a pixel region asks nothing
