"""What a data-set job is asked: the body of POST /datasets read into a `DatasetRequest`, normalised.

Normalised means every default filled in and every list in one order, so two bodies that ask for
the same data set are equal (and share one job), whatever they left out or however they ordered it.
"""

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime

from marshmallow import Schema, ValidationError, fields, validates_schema
from marshmallow.validate import Length, OneOf, Range

from ..schemas import PadField, Whole

SPLIT_NAMES = ("train", "validation", "test")  # the names Hugging Face's loaders know, in this order
DEFAULT_SPLIT = {"train": 0.8, "validation": 0.1, "test": 0.1}
LABELS = ("concept", "asked")
OUTPUT_FORMATS = ("imagefolder", "webdataset")  # what a finished data set is written as (imagefolder.py, webdataset.py)
DEFAULT_TAXA_PROVIDER = "fathomnet"
MAX_CONCEPTS = 20
SPLIT_TOLERANCE = 0.001
# FathomNet's box-query constraints, by their names in the body (FathomNet's own) and in upstream.BoxQuery.
FATHOMNET_FILTERS = {
    "minDepth": "min_depth", "maxDepth": "max_depth", "minLatitude": "min_latitude",
    "maxLatitude": "max_latitude", "minLongitude": "min_longitude", "maxLongitude": "max_longitude",
    "startTimestamp": "start_timestamp", "endTimestamp": "end_timestamp", "includeVerified": "include_verified",
    "includeUnverified": "include_unverified", "includeRejected": "include_rejected",
    "includeUnknown": "include_unknown",
}


# The ISO 8601 forms a timestamp filter takes (described so in /openapi.json), then read by datetime.
TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
                       r"(?:Z|[+-][0-9]{2}:[0-9]{2})?)?")
PROVIDER = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class Flag(fields.Field):
    """true or false, as JSON spells them (not 1, 0 or "yes": a data set's request is plain JSON)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is not bool:
            raise ValidationError("Must be true or false.")
        return value


class Finite(fields.Field):
    """A JSON number, finite, within bounds (not a numeric string: a filter is plain JSON)."""

    def __init__(self, bound, **kwargs):
        super().__init__(**kwargs)
        self.bound = bound

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) not in (int, float) or not math.isfinite(value) or abs(value) > 10**15:
            raise ValidationError("Must be a number.")
        if not -self.bound <= value <= self.bound:
            raise ValidationError(f"Must be from {-self.bound} to {self.bound}.")
        return value


class Timestamp(fields.String):
    """An ISO 8601 date or time, as FathomNet's startTimestamp and endTimestamp take; kept as given."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            if not TIMESTAMP.fullmatch(text):
                raise ValueError
            datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError("Must be an ISO 8601 date or time, such as 2021-06-01T00:00:00Z.") from None
        return text


class FiltersSchema(Schema):
    """What FathomNet's box query constrains (its names), and what only this service judges."""

    minDepth = Finite(20_000)
    maxDepth = Finite(20_000)
    minLatitude = Finite(90)
    maxLatitude = Finite(90)
    minLongitude = Finite(180)
    maxLongitude = Finite(180)
    startTimestamp = Timestamp()
    endTimestamp = Timestamp()
    includeVerified = Flag()
    includeUnverified = Flag()
    includeRejected = Flag()
    includeUnknown = Flag()
    min_side = Whole(validate=Range(1, 100_000, error="Must be from 1 to 100000 pixels."))
    exclude_occluded = Flag()
    exclude_truncated = Flag()

    @validates_schema
    def check_ranges(self, data, **kwargs):
        for low, high in (("minDepth", "maxDepth"), ("minLatitude", "maxLatitude"),
                          ("minLongitude", "maxLongitude")):
            if low in data and high in data and data[low] > data[high]:
                raise ValidationError(f"Must not be above {high}.", low)


class SplitField(fields.Dict):
    """Fractions over the split names: {"train": 0.8, "validation": 0.1, "test": 0.1}, summing to 1."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        unknown = [name for name in value if name not in SPLIT_NAMES]
        if unknown:
            raise ValidationError(f"{unknown[0][:40]!r} is not a split; use {', '.join(SPLIT_NAMES)}.")
        if not value:
            raise ValidationError("Name at least one split.")
        for name, fraction in value.items():
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or \
                    not math.isfinite(fraction) or not 0 < fraction <= 1:
                raise ValidationError(f"The fraction of {name} must be a number more than 0 and at most 1.")
        if abs(sum(value.values()) - 1) > SPLIT_TOLERANCE:
            raise ValidationError(f"The fractions must add up to 1 (they add up to {sum(value.values()):g}).")
        return {name: float(value[name]) for name in SPLIT_NAMES if name in value}


class DatasetSchema(Schema):
    """The body of POST /datasets."""

    concepts = fields.List(fields.String(validate=Length(1, 256)), required=True,
                           validate=Length(1, MAX_CONCEPTS, error=f"Name 1 to {MAX_CONCEPTS} concepts."))
    descendants = Flag()
    taxa_provider = fields.String(validate=lambda name: PROVIDER.fullmatch(name) is not None or _refuse(
        "Must be a taxa provider's name, such as fathomnet."))
    label = fields.String(validate=OneOf(LABELS, error=f"Must be one of: {', '.join(LABELS)}."))
    filters = fields.Nested(FiltersSchema)
    crop = fields.Dict()  # read by the crop options' own schema, with this deployment's limits
    split = SplitField()
    seed = Whole()
    max_boxes = Whole(validate=Range(1, error="Must be 1 or more."))
    include_contributors = Flag()
    formats = fields.List(fields.String(validate=OneOf(OUTPUT_FORMATS, error=f"Must be one of: "
                                                       f"{', '.join(OUTPUT_FORMATS)}.")),
                          validate=Length(1, len(OUTPUT_FORMATS)))


@dataclass(frozen=True)
class DatasetRequest:
    """A data-set job's request, normalised: equal requests ask for the same data set."""

    concepts: tuple
    descendants: bool = False
    taxa_provider: str = DEFAULT_TAXA_PROVIDER
    label: str = "concept"
    filters: dict = field(default_factory=dict)  # every filter's name, None where not set
    crop: dict = field(default_factory=dict)  # every crop option, defaults filled in (CropRequest's arguments)
    split: dict = field(default_factory=lambda: dict(DEFAULT_SPLIT))
    seed: int = 0
    max_boxes: int = 10_000
    include_contributors: bool = False
    formats: tuple = ("imagefolder",)

    def to_dict(self):
        """As JSON: what the job's answer repeats as "the request as understood"."""
        data = asdict(self)
        crop = dict(data["crop"])
        if crop.get("pad") is not None:  # a Pad: its amount, or "n%"
            pad = self.crop["pad"]
            crop["pad"] = f"{float(pad.amount):g}%" if pad.percent else int(pad.amount)
        data.update(concepts=list(self.concepts), formats=list(self.formats), crop=crop)
        return data

    @classmethod
    def from_dict(cls, data):
        """Read back what to_dict() wrote (a job's record)."""
        crop = dict(data["crop"])
        if crop.get("pad") is not None:
            crop["pad"] = PadField().deserialize(crop["pad"])
        return cls(**{**data, "concepts": tuple(data["concepts"]), "formats": tuple(data["formats"]), "crop": crop})

    @property
    def key(self):
        """The request's fingerprint: equal requests, equal keys."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def _refuse(message):
    raise ValidationError(message)


def read_request(body, options_schema, max_boxes):
    """The DatasetRequest of a body, or ValidationError naming each field that is wrong."""
    data = DatasetSchema().load(body)
    try:
        crop = options_schema.load(data.get("crop", {}))
    except ValidationError as error:
        raise ValidationError({"crop": error.messages}) from None
    asked = data.get("max_boxes", max_boxes)
    if asked > max_boxes:
        raise ValidationError({"max_boxes": [f"A data set holds at most {max_boxes} boxes."]})
    filters = {name: data.get("filters", {}).get(name) for name in FiltersSchema().fields}
    for flag in ("exclude_occluded", "exclude_truncated"):
        filters[flag] = bool(filters[flag])
    return DatasetRequest(
        concepts=tuple(sorted(set(data["concepts"]))), descendants=data.get("descendants", False),
        taxa_provider=data.get("taxa_provider", DEFAULT_TAXA_PROVIDER), label=data.get("label", "concept"),
        filters=filters, crop=options_schema.options(crop), split=data.get("split", dict(DEFAULT_SPLIT)),
        seed=data.get("seed", 0), max_boxes=asked, include_contributors=data.get("include_contributors", False),
        formats=tuple(name for name in OUTPUT_FORMATS if name in data.get("formats", ["imagefolder"])),
    )
