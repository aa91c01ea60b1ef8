"""Request bodies: marshmallow schemas that turn JSON into validated CropRequests.

Every crop option (pad, square, width, height, fit, enlarge, background, quality, format) is read by
`OptionsSchema`, so single crops, batches (whose top-level options apply to items naming none) and
concept crops accept the same ones, spelled the same way.
"""

import math
import re
from fractions import Fraction

from marshmallow import Schema, ValidationError, fields, post_load, pre_load, validates_schema
from marshmallow.validate import Length, OneOf, Range

from . import formats
from .crops import DEFAULT_BACKGROUND, FITS, MAX_DIGITS, Box, CropRequest, Pad
from .errors import TooManyCropsError

MAX_PAD_PERCENT = 1000
MAX_COLLECTION_PAGE = 100_000  # a concept's collection pages: far past any concept's boxes, and offsets stay small
PERCENT = re.compile(r"\s*([0-9]{1,4}(?:\.[0-9]{1,2})?)\s*%\s*")
COLOUR = re.compile(r"#?([0-9a-fA-F]{6})")


def shown(value):
    """A client's value as it may appear in an error message: short, whatever was sent."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Whole(fields.Integer):
    """A whole number >= 0, also as a numeric string (query strings; the earlier API's clients send "100").

    Not marshmallow's Integer, which reads 2.5 as 2 and "+1_0" as 10.
    """

    default_error_messages = {"invalid": "Must be a whole number, not {input}."}
    minimum = 0

    def _validated(self, value):
        text = value.strip() if isinstance(value, str) else ""
        # Longer numbers are refused before int() parses them; ASCII digits only (int() reads "١٠" as 10).
        if text.isascii() and text.isdecimal() and len(text) <= MAX_DIGITS:
            value = int(text)
        elif isinstance(value, int) and not isinstance(value, bool):
            pass  # any size: a 310-digit number is refused below, never turned into a float
        elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        else:
            raise self.make_error("invalid", input=shown(value))
        if value < self.minimum:
            raise ValidationError(f"Must be {self.minimum} or more.")
        if value >= 10**MAX_DIGITS:
            raise ValidationError(f"Must be less than {10**MAX_DIGITS}.")
        return value


class Pixel(Whole):
    """A pixel coordinate: a whole number >= 0."""

    default_error_messages = {"invalid": "Must be a whole number of pixels, not {input}."}


PIXEL = Pixel()  # PadField's reader of a pad in pixels


class Side(Pixel):
    """An output side in pixels: a whole number >= 1."""

    minimum = 1


class PadField(fields.Field):
    """Pixels on each side (16), or a percentage of the box's width and height ("10%")."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and (match := PERCENT.fullmatch(value)):
            percent = Fraction(match.group(1))  # exactly the decimal asked for
            if percent > MAX_PAD_PERCENT:
                raise ValidationError(f"A percentage may be at most {MAX_PAD_PERCENT}%.")
            return Pad(percent, percent=True)
        try:
            return Pad(PIXEL.deserialize(value))
        except ValidationError:
            raise ValidationError(f'Must be a whole number of pixels or a percentage such as "10%", '
                                  f"not {shown(value)}.") from None


class Colour(fields.String):
    """A hex colour, #rrggbb or rrggbb, as lower-case rrggbb."""

    def _deserialize(self, value, attr, data, **kwargs):
        match = COLOUR.fullmatch(super()._deserialize(value, attr, data, **kwargs).strip())
        if match is None:
            raise ValidationError(f'Must be a hex colour such as "#1a2b3c", not {shown(value)}.')
        return match.group(1).lower()


class FormatName(fields.String):
    """A name or alias from the format table, as its canonical name."""

    def _deserialize(self, value, attr, data, **kwargs):
        fmt = formats.lookup(super()._deserialize(value, attr, data, **kwargs))
        if fmt is None:
            raise ValidationError(f"Must be one of: {', '.join(formats.names())}.")
        return fmt.name


class OptionsSchema(Schema):
    """The options any crop may have."""

    pad = PadField()
    square = fields.Boolean()
    width = Side()
    height = Side()
    fit = fields.String(validate=OneOf(FITS, error=f"Must be one of: {', '.join(FITS)}."))
    enlarge = fields.Boolean()
    background = Colour()
    quality = Whole(validate=Range(1, 100, error="Must be from 1 to 100."))
    format = FormatName()

    def __init__(self, *, max_side, max_pixels, default_format, **kwargs):
        super().__init__(**kwargs)
        self.max_side = max_side
        self.max_pixels = max_pixels
        self.default_format = default_format

    @validates_schema
    def check_output_size(self, data, **kwargs):
        for name in ("width", "height"):
            if data.get(name, 0) > self.max_side:
                raise ValidationError(f"Must be at most {self.max_side} pixels.", name)
        if data.get("width", 0) * data.get("height", 0) > self.max_pixels:
            raise ValidationError(f"An output may have at most {self.max_pixels} pixels.", "width")
        self.check_options_agree(data)

    def check_options_agree(self, data):
        if data.get("fit") and not (data.get("width") and data.get("height")):
            raise ValidationError("A fit needs both width and height.", "fit")
        if "background" in data and data.get("fit") != "letterbox":
            raise ValidationError("A background is the colour of a letterbox: it needs fit letterbox.", "background")

    def options(self, data):
        """The CropRequest arguments of the options in data, defaults filled in."""
        return {"pad": data.get("pad"), "square": data.get("square", False), "width": data.get("width"),
                "height": data.get("height"), "fit": data.get("fit", "contain"), "enlarge": data.get("enlarge", True),
                "background": data.get("background", DEFAULT_BACKGROUND), "quality": data.get("quality"),
                "format": data.get("format", self.default_format)}


class CropSchema(OptionsSchema):
    """One crop: an image and a box {"uuid", "x1", "y1", "x2", "y2"}, or an annotation {"box_uuid"}; options."""

    uuid = fields.UUID()
    box_uuid = fields.UUID()
    x1 = Pixel()
    y1 = Pixel()
    x2 = Pixel()
    y2 = Pixel()

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def check_what_to_crop(self, data, original, **kwargs):
        if not isinstance(original, dict):
            return  # "Invalid input type." says it all
        given = set(original)
        if "box_uuid" in given:
            if given & {"uuid", "x1", "y1", "x2", "y2"}:
                raise ValidationError("A crop names a box_uuid, or a uuid and a box: not both.", "box_uuid")
            return
        missing = {name: ["Missing data for required field."] for name in ("uuid", "x1", "y1", "x2", "y2")
                   if name not in given}
        if missing:
            raise ValidationError(missing)
        if not all(name in data for name in ("x1", "y1", "x2", "y2")):
            return  # a corner that is not valid already has its own message
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
        if "box_uuid" in data:
            return CropRequest(box_uuid=str(data["box_uuid"]), **self.options(data))
        box = Box(data["x1"], data["y1"], data["x2"], data["y2"])
        return CropRequest(uuid=str(data["uuid"]), box=box, **self.options(data))


# What a batch's top level may set for its items: the options' fields (the limits do not change their names).
OPTIONS = tuple(OptionsSchema(max_side=1, max_pixels=1, default_format="webp").fields)


class BatchSchema(OptionsSchema):
    """The object form of a batch: {"crops": [...], options?}; a bare list is accepted too."""

    crops = fields.List(fields.Raw(allow_none=True), required=True)  # a null item is answered in place too

    def check_options_agree(self, data):
        """Not for the batch's own options: its items may complete them (a fit with their own width and
        height); each item is checked with the batch's options merged in."""

    @pre_load
    def accept_bare_list(self, data, **kwargs):
        return {"crops": data} if isinstance(data, list) else data


class ConceptSchema(OptionsSchema):
    """A page of FathomNet's boxes of one concept: {"concept", "limit"?, "offset"?, options?}."""

    concept = fields.String(required=True, validate=Length(1, 256))
    limit = Whole(validate=Range(1, error="Must be 1 or more."))
    offset = Whole()  # 0 or more, below a billion


class ConceptCollectionSchema(Schema):
    """The query of a concept's IIIF collection: ?name=<concept>&page=<n> (a query, as concepts may hold "/")."""

    name = fields.String(required=True, validate=Length(1, 256))
    page = Whole(load_default=1, validate=Range(1, MAX_COLLECTION_PAGE,
                                                error=f"Must be from 1 to {MAX_COLLECTION_PAGE}."))


def batch_items(body, max_crops, batch_schema):
    """Split a batch body into its raw items, each with the batch's options unless it names its own."""
    batch = batch_schema.load(body)
    if len(batch["crops"]) > max_crops:
        raise TooManyCropsError(
            f"A batch may ask for at most {max_crops} crops; this one asks for {len(batch['crops'])}.",
            max_crops=max_crops, crops=len(batch["crops"]),
        )
    raw = body if isinstance(body, dict) else {}
    defaults = {name: raw[name] for name in OPTIONS if name in raw}
    return [{**defaults, **item} if isinstance(item, dict) else item for item in batch["crops"]]
