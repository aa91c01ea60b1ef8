"""Request bodies: marshmallow schemas that turn JSON into a validated CropRequest."""

import numbers
from dataclasses import dataclass
from typing import NamedTuple

from marshmallow import Schema, ValidationError, fields, post_load, pre_load, validates_schema
from marshmallow.validate import OneOf

from .errors import TooManyCropsError

FORMATS = ("webp", "jpeg", "png")
FORMAT_ALIASES = {"jpg": "jpeg"}
MAX_DIGITS = 9  # no image is a billion pixels wide; longer numbers are refused before int() parses them


class Box(NamedTuple):
    """A crop rectangle in source pixels: x1, y1 inclusive; x2, y2 exclusive (as Pillow's crop)."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self):
        return self.x2 - self.x1

    @property
    def height(self):
        return self.y2 - self.y1

    def fits(self, width, height):
        return self.x2 <= width and self.y2 <= height


@dataclass(frozen=True)
class CropRequest:
    uuid: str  # canonical lower-case form: safe to use in a file path
    box: Box
    format: str


class Pixel(fields.Integer):
    """A pixel coordinate: a whole number >= 0, also as a numeric string (the earlier API's clients send "100")."""

    default_error_messages = {"invalid": "Must be a whole number of pixels, not {input!r}."}

    def _validated(self, value):
        if isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) <= MAX_DIGITS:
            value = int(value.strip())
        elif isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
            value = int(value)
        else:
            raise self.make_error("invalid", input=value)
        if value < 0:
            raise ValidationError("Must be 0 or more.")
        if value >= 10**MAX_DIGITS:
            raise ValidationError(f"Must be less than {10**MAX_DIGITS}.")
        return value


class CropSchema(Schema):
    """One crop: {"uuid", "x1", "y1", "x2", "y2", "format"?}."""

    uuid = fields.UUID(required=True)
    x1 = Pixel(required=True)
    y1 = Pixel(required=True)
    x2 = Pixel(required=True)
    y2 = Pixel(required=True)
    format = fields.String(validate=OneOf(FORMATS, error="Must be one of: webp, jpeg, png."))

    def __init__(self, *, max_side, max_pixels, default_format, **kwargs):
        super().__init__(**kwargs)
        self.max_side = max_side
        self.max_pixels = max_pixels
        self.default_format = default_format

    @pre_load
    def normalise_format(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(data.get("format"), str):
            fmt = data["format"].strip().lower()
            data = {**data, "format": FORMAT_ALIASES.get(fmt, fmt)}
        return data

    @validates_schema
    def check_box(self, data, **kwargs):
        if not all(k in data for k in ("x1", "y1", "x2", "y2")):
            return  # the missing field already has its own message
        box = Box(data["x1"], data["y1"], data["x2"], data["y2"])
        errors = {}
        if box.x2 <= box.x1:
            errors["x2"] = ["Must be greater than x1."]
        if box.y2 <= box.y1:
            errors["y2"] = ["Must be greater than y1."]
        if errors:
            raise ValidationError(errors)
        if max(box.width, box.height) > self.max_side:
            raise ValidationError(f"A crop side may be at most {self.max_side} pixels.")
        if box.width * box.height > self.max_pixels:
            raise ValidationError(f"A crop may have at most {self.max_pixels} pixels.")

    @post_load
    def make_request(self, data, **kwargs):
        box = Box(data["x1"], data["y1"], data["x2"], data["y2"])
        return CropRequest(str(data["uuid"]), box, data.get("format", self.default_format))


class BatchSchema(Schema):
    """The object form of a batch: {"crops": [...], "format"?}; a bare list is accepted too."""

    crops = fields.List(fields.Raw(), required=True)
    format = fields.String(validate=OneOf(FORMATS, error="Must be one of: webp, jpeg, png."))

    @pre_load
    def accept_bare_list(self, data, **kwargs):
        return {"crops": data} if isinstance(data, list) else data

    normalise_format = CropSchema.normalise_format


def batch_items(body, max_crops):
    """Split a batch body into its raw items and its default format; the items are validated one by one."""
    batch = BatchSchema().load(body)
    if len(batch["crops"]) > max_crops:
        raise TooManyCropsError(
            f"A batch may ask for at most {max_crops} crops; this one asks for {len(batch['crops'])}.",
            max_crops=max_crops, crops=len(batch["crops"]),
        )
    items = batch["crops"]
    if "format" in batch:  # the batch's format for items that name none
        items = [{"format": batch["format"], **item} if isinstance(item, dict) else item for item in items]
    return items
