"""POST /cropper-list/: many crops in one request, grouped by image, answered in order."""

import threading

import pytest

from cropper import batch, imaging
from cropper.crops import Box, Crop
from cropper.wiring import crop_service
from tests.images import assert_image_equal, expected_crop, open_bytes


def item(record, box, **extra):
    x1, y1, x2, y2 = box
    return {"uuid": record.uuid, "x1": x1, "y1": y1, "x2": x2, "y2": y2, **extra}


def boxes(count, step=37):
    return [(step * i, 11 * i, step * i + 120, 11 * i + 90) for i in range(count)]


def local(url):
    return url.removeprefix("http://crops.test")


@pytest.fixture
def decodes(monkeypatch):
    """Count real decodes (the function still runs): the stand-in counts downloads, this counts decodes."""
    calls = []
    real = imaging.decode

    def counting(file, max_pixels, reported_size):
        calls.append(reported_size)
        return real(file, max_pixels, reported_size)

    monkeypatch.setattr(imaging, "decode", counting)
    return calls


def test_answers_come_in_request_order_with_per_item_errors(client, standin):
    gray, frame = standin.image("gray"), standin.image("framegrab")
    body = [
        item(frame, (0, 0, 50, 50)),
        {"uuid": "not-a-uuid", "x1": 0, "y1": 0, "x2": 1, "y2": 1},
        item(gray, (600, 0, 700, 10)),  # outside the 640x480 image
        item(gray, (1, 2, 3, 4), format="png"),
        {"uuid": "00000000-0000-4000-8000-000000000000", "x1": 0, "y1": 0, "x2": 1, "y2": 1},
        "not an object",
        item(frame, (5, 5, 4, 9)),  # x2 < x1
        item(frame, (10, 10, 60, 60)),
    ]
    response = client.post("/cropper-list/", json=body)
    assert response.status_code == 200
    answers = response.json
    assert len(answers) == len(body)
    assert [a.get("error", {}).get("code") for a in answers] == [
        None, "validation_error", "box_outside_image", None, "image_not_found", "validation_error",
        "validation_error", None]
    assert answers[0]["box"] == [0, 0, 50, 50] and answers[0]["uuid"] == frame.uuid
    assert answers[3]["format"] == "png" and answers[3]["url"].endswith("/1_2_3_4.png")
    assert answers[7]["box"] == [10, 10, 60, 60]
    assert answers[1]["uuid"] == "not-a-uuid" and "uuid" in answers[1]["error"]["details"]
    assert answers[2]["box"] == [600, 0, 700, 10]
    assert answers[2]["error"]["details"] == {"image_width": 640, "image_height": 480}
    assert answers[6]["error"]["details"]["x2"] == ["Must be greater than x1."]
    assert set(answers[0]) == {"url", "uuid", "box", "region", "width", "height", "format", "cached"}


def test_work_is_grouped_one_query_one_download_one_decode_per_image(client, standin, decodes):
    records = [standin.image(f"framegrab-{i}") for i in range(3)]
    body = [item(record, box, format="png") for record in records for box in boxes(10)]
    answers = client.post("/cropper-list/", json=body).json
    assert all("url" in a and a["cached"] is False for a in answers)
    assert standin.count("/api/images/query/uuids", method="POST") == 1
    assert standin.api_calls() == 1
    assert [standin.downloads(r.uuid) for r in records] == [1, 1, 1]
    assert len(decodes) == 3
    for answer, (record, box) in zip(answers[::7], [(r, b) for r in records for b in boxes(10)][::7]):
        assert_image_equal(open_bytes(client.get(local(answer["url"])).data), expected_crop(record, box))


def test_a_repeat_batch_is_all_cache_hits_and_calls_nobody(client, standin, decodes):
    record = standin.image("framegrab-4")
    body = [item(record, box) for box in boxes(5)]
    client.post("/cropper-list/", json=body)
    standin.reset()
    answers = client.post("/cropper-list", json=body).json
    assert [a["cached"] for a in answers] == [True] * 5
    assert standin.counts()["api"] == 0 and standin.downloads() == 0 and len(decodes) == 1


def test_new_boxes_of_cached_images_need_no_metadata_query_or_download(client, standin):
    record = standin.image("framegrab-5")
    client.post("/cropper-list/", json=[item(record, (0, 0, 10, 10))])
    standin.reset()
    answers = client.post("/cropper-list/", json=[item(record, box) for box in boxes(4)]).json
    assert all(a["cached"] is False for a in answers)
    assert standin.counts()["api"] == 0 and standin.downloads() == 0


def test_object_form_with_a_batch_format_and_item_overrides(client, standin):
    record = standin.image("gray")
    body = {"crops": [item(record, (0, 0, 8, 8)), item(record, (0, 0, 9, 9), format="jpeg")], "format": "PNG"}
    answers = client.post("/cropper-list/", json=body).json
    assert [a["format"] for a in answers] == ["png", "jpeg"]


def test_batch_options_that_items_complete_are_checked_on_each_item_not_alone(client, standin):
    """A batch's fit (or background) needs the width and height its items give: each item is checked merged."""
    record = standin.image("gray")
    body = {"crops": [item(record, (0, 0, 80, 40), width=20, height=20), item(record, (0, 0, 80, 40))],
            "fit": "letterbox", "background": "ff0000"}
    answer = client.post("/cropper-list/", json=body)
    assert answer.status_code == 200
    made, missing = answer.json
    assert (made["width"], made["height"]) == (20, 20) and made["url"].endswith("_lb20x20_ff0000.webp")
    assert missing["error"]["code"] == "validation_error" and "fit" in missing["error"]["details"]
    too_big = client.post("/cropper-list/", json={"crops": [], "width": 10**6})  # limits still hold at the top
    assert too_big.status_code == 422 and "width" in too_big.json["error"]["details"]


def test_a_failing_image_fails_only_its_own_items(client, standin):
    good, bad = standin.image("framegrab-6"), standin.image("rgba")
    standin.set_fault("500", target="image", uuid=bad.uuid)
    answers = client.post("/cropper-list/", json=[item(good, (0, 0, 20, 20)), item(bad, (0, 0, 20, 20)),
                                                  item(good, (20, 20, 40, 40)), item(bad, (5, 5, 9, 9))]).json
    assert [a.get("error", {}).get("code") for a in answers] == [None, "upstream_error", None, "upstream_error"]
    standin.clear_faults()
    retried = client.post("/cropper-list/", json=[item(bad, (0, 0, 20, 20))]).json
    assert retried[0]["cached"] is False  # the failure was not cached


def test_a_failing_metadata_query_fails_every_item_but_the_answer_is_200(client, standin):
    record = standin.image("framegrab-7")
    standin.set_fault("500", target="api")
    response = client.post("/cropper-list/", json=[item(record, (0, 0, 10, 10)), item(record, (1, 1, 5, 5))])
    assert response.status_code == 200
    assert [a["error"]["code"] for a in response.json] == ["upstream_error", "upstream_error"]


def test_the_same_crop_twice_in_a_batch_is_made_once(client, standin):
    record = standin.image("palette")
    answers = client.post("/cropper-list/", json=[item(record, (0, 0, 30, 30))] * 2).json
    assert sorted(a["cached"] for a in answers) == [False, True]
    assert answers[0]["url"] == answers[1]["url"]


def test_batch_and_single_requests_share_the_work(client, standin):
    record = standin.image("framegrab-8")
    standin.latency = 0.05
    body = [item(record, box) for box in boxes(6)]
    outcome = {}
    batch = threading.Thread(target=lambda: outcome.update(batch=client.post("/cropper-list/", json=body).json))
    batch.start()
    singles = [client.post("/cropper/", json=one).json for one in body[::-1]]
    batch.join()
    made = [a["cached"] for a in outcome["batch"] + singles].count(False)
    assert made == 6  # each of the six crops was made exactly once, by whichever came first
    assert standin.downloads(record.uuid) == 1


@pytest.mark.parametrize("body, status, code", [
    ({"crops": "nope"}, 422, "validation_error"),
    ({"boxes": []}, 422, "validation_error"),
    ("just a string", 422, "validation_error"),
])
def test_a_body_that_is_not_a_batch_is_refused(client, body, status, code):
    response = client.post("/cropper-list/", json=body)
    assert response.status_code == status and response.json["error"]["code"] == code


@pytest.mark.parametrize("form", ["list", "object"])
def test_a_null_item_is_answered_in_place_like_any_bad_item(client, standin, form):
    """Found by Schemathesis: a null item failed the whole batch with a 422 (marshmallow's "may not be null")."""
    items = [item(standin.image("gray"), (0, 0, 10, 10)), None]
    response = client.post("/cropper-list/", json=items if form == "list" else {"crops": items})
    assert response.status_code == 200
    made, failed = response.json
    assert "url" in made
    assert failed == {"uuid": None, "box": [None] * 4, "error": {"code": "validation_error", "message":
                      "This crop is not valid.", "details": {"_schema": ["Invalid input type."]}}}


def test_an_empty_batch_is_an_empty_answer(client):
    assert client.post("/cropper-list/", json=[]).json == []


def test_more_than_the_maximum_is_413(settings, standin):
    from cropper import create_app

    client = create_app(settings.replace(batch_max_crops=3)).test_client()
    record = standin.image("gray")
    response = client.post("/cropper-list/", json=[item(record, (0, 0, 1, 1))] * 4)
    assert response.status_code == 413
    error = response.json["error"]
    assert error["code"] == "too_many_crops" and "at most 3" in error["message"]
    assert standin.counts()["api"] == 0


# -- the batch module itself, without Flask


@pytest.fixture
def service(settings):
    return crop_service(settings)


def test_get_or_create_many_groups_work_by_image_and_answers_in_order(service, standin, decodes):
    frames = [standin.image(f"framegrab-{i}") for i in (4, 5)]
    crops = [Crop(frames[i % 2].uuid, Box(10 * i, 0, 10 * i + 50, 40), "png") for i in range(8)]
    crops.insert(3, Crop(frames[0].uuid, Box(1900, 0, 1930, 10), "png"))  # outside the image

    results = batch.get_or_create_many(service, crops, concurrency=4)

    assert [r.crop for r in results] == crops
    assert isinstance(results[3], batch.CropFailure) and results[3].error.code == "box_outside_image"
    assert all(r.cached is False for i, r in enumerate(results) if i != 3)
    assert standin.count("/api/images/query/uuids") == 1 and standin.downloads() == 2 and len(decodes) == 2

    standin.reset()
    again = batch.get_or_create_many(service, crops[:3], concurrency=4)
    assert all(r.cached for r in again) and standin.api_calls() == 0
