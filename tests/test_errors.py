"""One error shape, from one place: single requests, batch items and nginx's own pages alike."""

import json

import pytest
from marshmallow import ValidationError

from cropper.errors import (
    BusyError,
    CropperError,
    ImageNotFoundError,
    UpstreamTimeoutError,
    as_cropper_error,
    body_of,
    error_body,
    nginx_error_pages,
)


def test_the_shape_is_code_message_details():
    assert error_body("x", "Y.") == {"error": {"code": "x", "message": "Y.", "details": {}}}
    error = ImageNotFoundError("No such image.", uuid="u")
    assert body_of(error) == {"error": {"code": "image_not_found", "message": "No such image.",
                                        "details": {"uuid": "u"}}}


def test_meanings_map_to_statuses_in_one_place():
    assert (ImageNotFoundError("").status, UpstreamTimeoutError("").status, BusyError("").status) == (404, 504, 503)


def test_a_validation_error_becomes_a_422_with_marshmallows_messages():
    error = as_cropper_error(ValidationError({"x1": ["Missing data for required field."]}))
    assert (error.status, error.code) == (422, "validation_error")
    assert error.details == {"x1": ["Missing data for required field."]}


def test_a_bug_becomes_a_generic_500_that_leaks_nothing(caplog):
    error = as_cropper_error(KeyError("secret internals"))
    assert (error.status, error.code) == (500, "internal_error")
    assert "secret" not in json.dumps(body_of(error))
    assert "secret internals" in caplog.text  # the operator sees it in the log


def test_a_cropper_error_is_itself():
    error = CropperError("x")
    assert as_cropper_error(error) is error


def test_nginx_error_pages_are_the_same_shape():
    pages = {status: (body, retry_after) for status, body, retry_after in nginx_error_pages()}
    assert sorted(pages) == [400, 403, 404, 405, 413, 414, 429, 494, 502, 504]
    for status, (body, retry_after) in pages.items():
        parsed = json.loads(body)
        assert set(parsed["error"]) == {"code", "message", "details"}, status
        assert (retry_after is not None) == (status in (429, 502, 504))


@pytest.mark.parametrize("box", [(600, 0, 641, 10), (0, 0, 1, 1)])
def test_a_batch_items_error_is_the_single_requests_error(client, standin, box):
    uuid = standin.image("gray").uuid if box[0] else "00000000-0000-4000-8000-000000000000"
    item = {"uuid": uuid, "x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3]}
    single = client.post("/cropper/", json=item)
    [answer] = client.post("/cropper-list/", json=[item]).json
    assert single.status_code in (404, 422)
    assert answer["error"] == single.json["error"]
