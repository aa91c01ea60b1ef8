"""Request bodies: marshmallow schemas that turn JSON into a validated Crop."""

import math

from marshmallow import Schema, ValidationError, fields, post_load, pre_load, validates_schema

from . import formats
from .crops import MAX_DIGITS, Box, Crop
from .errors import TooManyCropsError


class Pixel(fields.Integer):
    """A pixel coordinate: a whole number >= 0, also as a numeric string (the earlier API's clients send "100")."""

    default_error_messages = {"invalid": "Must be a whole number of pixels, not {input}."}

    def _validated(self, value):
        # Longer numbers are refused before int() parses them.
        if isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) <= MAX_DIGITS:
            value = int(value.strip())
        elif isinstance(value, int) and not isinstance(value, bool):
            pass  # any size: a 310-digit number is refused below, never turned into a float
        elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        else:
            raise self.make_error("invalid", input=shown(value))
        if value < 0:
            raise ValidationError("Must be 0 or more.")
        if value >= 10**MAX_DIGITS:
            raise ValidationError(f"Must be less than {10**MAX_DIGITS}.")
        return value


def shown(value):
    """A client's value as it may appear in an error message: short, whatever was sent."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class FormatName(fields.String):
    """A name or alias from the format table, as its canonical name."""

    def _deserialize(self, value, attr, data, **kwargs):
        fmt = formats.lookup(super()._deserialize(value, attr, data, **kwargs))
        if fmt is None:
            raise ValidationError(f"Must be one of: {', '.join(formats.names())}.")
        return fmt.name


class CropSchema(Schema):
    """One crop: {"uuid", "x1", "y1", "x2", "y2", "format"?}."""

    uuid = fields.UUID(required=True)
    x1 = Pixel(required=True)
    y1 = Pixel(required=True)
    x2 = Pixel(required=True)
    y2 = Pixel(required=True)
    format = FormatName()

    def __init__(self, *, max_side, max_pixels, default_format, **kwargs):
        super().__init__(**kwargs)
        self.max_side = max_side
        self.max_pixels = max_pixels
        self.default_format = default_format

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
    def make_crop(self, data, **kwargs):
        box = Box(data["x1"], data["y1"], data["x2"], data["y2"])
        return Crop(str(data["uuid"]), box, data.get("format", self.default_format))


class BatchSchema(Schema):
    """The object form of a batch: {"crops": [...], "format"?}; a bare list is accepted too."""

    crops = fields.List(fields.Raw(), required=True)
    format = FormatName()

    @pre_load
    def accept_bare_list(self, data, **kwargs):
        return {"crops": data} if isinstance(data, list) else data


def batch_items(body, max_crops):
    """Split a batch body into its raw items, each with the batch's format unless it names one."""
    batch = BatchSchema().load(body)
    if len(batch["crops"]) > max_crops:
        raise TooManyCropsError(
            f"A batch may ask for at most {max_crops} crops; this one asks for {len(batch['crops'])}.",
            max_crops=max_crops, crops=len(batch["crops"]),
        )
    items = batch["crops"]
    if "format" in batch:
        items = [{"format": batch["format"], **item} if isinstance(item, dict) else item for item in items]
    return items
