"""CropSchema: JSON in, a validated CropRequest (or marshmallow's error messages) out."""

import pytest
from marshmallow import ValidationError

from cropper.crops import Box, CropRequest
from cropper.schemas import ConceptSchema, CropSchema

UUID = "f11816b8-1234-4abc-8def-0123456789ab"
MAX_SIDE = 100
MAX_PIXELS = 5000


def load(body):
    return CropSchema(max_side=MAX_SIDE, max_pixels=MAX_PIXELS, default_format="webp").load(body)


def body(**changes):
    return {"uuid": UUID, "x1": 10, "y1": 20, "x2": 40, "y2": 60, **changes}


def errors(data):
    with pytest.raises(ValidationError) as info:
        load(data)
    return info.value.messages


def test_a_valid_body_becomes_a_crop_request():
    assert load(body(format="png")) == CropRequest(UUID, Box(10, 20, 40, 60), format="png")


# -- uuid


@pytest.mark.parametrize("given", [
    UUID,
    UUID.upper(),
    "{" + UUID.upper() + "}",
    "urn:uuid:" + UUID,
    UUID.replace("-", ""),
])
def test_uuid_is_canonicalised_to_lower_case(given):
    assert load(body(uuid=given)).uuid == UUID


@pytest.mark.parametrize("given", [
    "../../etc/passwd",
    UUID[:2] + "/../" + UUID,
    UUID + "/../x",
    UUID[:-1],
    UUID[:-1] + "g",
    "",
    42,
    None,
])
def test_a_uuid_that_is_not_one_is_refused(given):
    messages = errors(body(uuid=given))
    assert list(messages) == ["uuid"]


def test_missing_fields_are_each_named():
    assert errors({}) == {name: ["Missing data for required field."] for name in ("uuid", "x1", "y1", "x2", "y2")}


# -- coordinates


@pytest.mark.parametrize("given, expected", [
    (0, 0),
    (5, 5),
    (5.0, 5),
    ("5", 5),
    (" 5 ", 5),
    ("0", 0),
    ("005", 5),
])
def test_whole_numbers_and_numeric_strings_are_pixels(given, expected):
    assert load(body(x1=given)).box.x1 == expected


@pytest.mark.parametrize("given", [1.5, 0.1, True, False, "1e3", " ", "", "+5", "5.0", "0x10", "5_0", "²",
                                   float("nan"), float("inf"), [5], {"v": 5}])
def test_other_values_are_not_pixels(given):
    assert errors(body(x1=given)) == {"x1": [f"Must be a whole number of pixels, not {given!r}."]}


@pytest.mark.parametrize("given", ["\u0661\u0660\u0660", "\uff15", "\u096b", " \u0665 "])
def test_digits_other_than_ascii_are_not_numbers(given):
    """int() reads Arabic-Indic "١٠٠" as 100; the API (and its OpenAPI patterns) take ASCII digits only."""
    assert errors(body(x1=given)) == {"x1": [f"Must be a whole number of pixels, not {given!r}."]}
    assert list(errors(body(pad=given))) == ["pad"]
    assert list(errors(body(quality=given))) == ["quality"]
    with pytest.raises(ValidationError):
        ConceptSchema(max_side=MAX_SIDE, max_pixels=MAX_PIXELS, default_format="webp").load(
            {"concept": "Aurelia aurita", "limit": given})


@pytest.mark.parametrize("given", [-1, "-1", -1.0])
def test_negative_pixels_are_refused(given):
    messages = errors(body(x1=given))
    assert list(messages) == ["x1"]


def test_null_coordinate_is_refused():
    assert errors(body(y2=None)) == {"y2": ["Field may not be null."]}


@pytest.mark.parametrize("given", [10**9, "1000000000", "9" * 5000, 1e300])
def test_a_billion_pixels_or_more_is_refused(given):
    """Also the guard against int("9" * 5000), which raises ValueError (a 500) instead of a 422."""
    assert list(errors(body(x1=given))) == ["x1"]


def test_the_largest_coordinate_is_accepted():
    assert load(body(x1=999_999_998, x2="999999999")).box.x2 == 999_999_999


# -- the box


@pytest.mark.parametrize("changes, field, message", [
    ({"x2": 10}, "x2", "Must be greater than x1."),
    ({"x2": 9}, "x2", "Must be greater than x1."),
    ({"y2": 20}, "y2", "Must be greater than y1."),
    ({"y2": 0}, "y2", "Must be greater than y1."),
])
def test_the_box_must_not_be_empty_or_inverted(changes, field, message):
    assert errors(body(**changes)) == {field: [message]}


def test_both_inverted_sides_are_reported_together():
    assert errors(body(x2=0, y2=0)) == {"x2": ["Must be greater than x1."], "y2": ["Must be greater than y1."]}


def test_a_one_pixel_box_is_allowed():
    assert load(body(x1=0, y1=0, x2=1, y2=1)).box == Box(0, 0, 1, 1)


@pytest.mark.parametrize("changes", [
    {"x1": 0, "x2": MAX_SIDE, "y1": 0, "y2": 1},
    {"x1": 0, "x2": 1, "y1": 0, "y2": MAX_SIDE},
    {"x1": 0, "x2": 50, "y1": 0, "y2": 100},  # exactly MAX_PIXELS
])
def test_limits_are_inclusive(changes):
    assert load(body(**changes)).box == Box(changes["x1"], changes["y1"], changes["x2"], changes["y2"])


@pytest.mark.parametrize("changes", [
    {"x1": 0, "x2": MAX_SIDE + 1, "y1": 0, "y2": 1},
    {"x1": 0, "x2": 1, "y1": 0, "y2": MAX_SIDE + 1},
])
def test_a_side_over_the_limit_is_refused(changes):
    assert errors(body(**changes)) == {"_schema": [f"A crop side may be at most {MAX_SIDE} pixels."]}


def test_an_area_over_the_limit_is_refused():
    assert errors(body(x1=0, y1=0, x2=51, y2=100)) == {"_schema": [f"A crop may have at most {MAX_PIXELS} pixels."]}


def test_a_box_far_from_the_origin_is_limited_by_its_size_only():
    assert load(body(x1=10**6, y1=10**6, x2=10**6 + 5, y2=10**6 + 5)).box.width == 5


# -- format


def test_format_defaults_to_the_schema_default():
    assert load(body()).format == "webp"
    schema = CropSchema(max_side=MAX_SIDE, max_pixels=MAX_PIXELS, default_format="png")
    assert schema.load(body()).format == "png"


@pytest.mark.parametrize("given, expected", [
    ("webp", "webp"),
    ("png", "png"),
    ("jpeg", "jpeg"),
    ("jpg", "jpeg"),
    ("JPG", "jpeg"),
    ("JPEG", "jpeg"),
    (" Png ", "png"),
])
def test_format_names_are_normalised(given, expected):
    assert load(body(format=given)).format == expected


@pytest.mark.parametrize("given", ["gif", "tiff", "", "webp2", "j pg"])
def test_an_unknown_format_is_refused(given):
    assert errors(body(format=given)) == {"format": ["Must be one of: webp, jpeg, png."]}


def test_a_format_that_is_not_a_string_is_refused():
    assert errors(body(format=5)) == {"format": ["Not a valid string."]}


# -- the body itself


def test_unknown_fields_are_refused():
    assert errors(body(colour=30, rotation=5)) == {"colour": ["Unknown field."], "rotation": ["Unknown field."]}


@pytest.mark.parametrize("given", [[body()], "crop", 5, None, True])
def test_a_body_that_is_not_an_object_is_refused(given):
    assert errors(given) == {"_schema": ["Invalid input type."]}


def test_the_input_dict_is_not_modified():
    data = body(format="JPG")
    load(data)
    assert data["format"] == "JPG"


# Found by Schemathesis: quality, limit and offset were marshmallow Integers, which read 80.5 as 80,
# 2.6e-42 as 0 and "+1_0" as 10. They are whole numbers like the pixels (a numeric string still does).
def concept(**changes):
    return ConceptSchema(max_side=MAX_SIDE, max_pixels=MAX_PIXELS, default_format="webp").load(
        {"concept": "Aurelia aurita", **changes})


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("given", [2.5, 2.589e-42, "+10", "1_0", "1.0", True])
def test_page_numbers_are_whole_numbers(name, given):
    with pytest.raises(ValidationError) as info:
        concept(**{name: given})
    assert list(info.value.messages) == [name]


@pytest.mark.parametrize("given, expected", [(10, 10), (10.0, 10), ("10", 10), (" 007 ", 7)])
def test_page_numbers_as_numbers_or_numeric_strings(given, expected):
    assert concept(limit=given, offset=given) == {"concept": "Aurelia aurita", "limit": expected, "offset": expected}


@pytest.mark.parametrize("given", [80.5, 0.5, "+80", "8_0", True])
def test_quality_is_a_whole_number(given):
    assert "quality" in errors(body(quality=given))


def test_quality_as_a_numeric_string_still_counts():
    assert load(body(quality="80", format="jpeg")).quality == 80
