"""The HTTP API described in OpenAPI 3.1, built at run time, and GET /openapi.json and GET /docs.

Request bodies come from the marshmallow schemas the service validates with (`cropper.schemas`), read
by apispec's MarshmallowPlugin from the very instances the factory made, so the limits in the
description are this deployment's (`MAX_CROP_SIDE`, `BATCH_MAX_CROPS`, ...). Where a field takes
more than its marshmallow type says (pixels as numeric strings, marshmallow's spellings of a boolean,
a pad in percent) `accepted_forms` says so, and what JSON Schema can say of a body beyond its fields
(the two ways to name a crop, options that need one another) is added to the generated schemas here.
The answers' shapes are the marshmallow schemas below; every answer carries the one error shape of
`errors.py`, nginx's own included. What no schema can say (a box must fit in its image, x2 > x1, an
output of at most MAX_CROP_PIXELS) is in the words of the descriptions, and answered 422.

/docs is Redoc (vendored under static/vendor/redoc/, nothing loaded from elsewhere) over /openapi.json;
nginx proxies both here.
"""

import copy
import re
from importlib import metadata

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app, jsonify
from marshmallow import Schema, fields
from marshmallow.validate import Length, OneOf, Range

from .. import crops, formats, schemas
from ..datasets import request as dataset_request
from ..datasets.jobs import STATUSES as DATASET_STATUSES
from ..datasets.request import OUTPUT_FORMATS, SPLIT_NAMES, DatasetSchema
from ..iiif import image as iiif
from ..iiif import presentation
from ..purges import MAX_CONCEPT
from .crops import CSV_COLUMNS

bp = Blueprint("openapi", __name__)

ERROR_CODES = {
    400: "`bad_request`: the body is not valid JSON (NaN, Infinity and nesting too deep included), a chunked body "
         "is malformed, or the request is not valid HTTP (nginx, Gunicorn).",
    403: "`forbidden`: the client is not on the monitoring networks (`METRICS_ALLOW`).",
    413: "`request_entity_too_large`: the body is over `MAX_BODY_BYTES` (app, nginx).",
    410: "`image_withdrawn`: FathomNet no longer has the image; what was made of it is purged, and its URLs are gone.",
    415: "`unsupported_media_type`: the body is not sent as `application/json`.",
    429: "`too_many_requests` (nginx): past the per-client rate limit and burst; `Retry-After` says when to retry.",
    501: "`not_implemented`: a rotation by other than a multiple of 90 degrees (IIIF 7.3).",
    502: "`upstream_error`: FathomNet or the image host failed or sent something unusable; or "
         "`service_unavailable` (nginx): Gunicorn is not answering. Retry later.",
    503: "`busy`: another request is still making the same file after `LOCK_TIMEOUT` seconds, or this worker "
         "has `MISS_SLOTS` + `MISS_QUEUE` crops in the making; retry after `Retry-After`.",
    504: "`upstream_timeout`: FathomNet or the image host did not answer in time; or `service_timeout` (nginx): "
         "Gunicorn took longer than nginx waits. Retry later.",
    507: "`insufficient_storage`: the cache's disk is full or read-only, new crops cannot be stored (crops "
         "already made are still served). Not a reason to retry at once.",
}
VALIDATION = "`validation_error`: a field is missing, malformed or out of range; `details` has a message per field."
BOX_OUTSIDE = "`box_outside_image`: the box does not fit inside the image (the message gives its size)."
TOO_LARGE = "`image_too_large`: the image is over `MAX_IMAGE_PIXELS`, or its file over `MAX_DOWNLOAD_BYTES`."
TOO_MANY = "; or `too_many_crops`: a batch of more than `BATCH_MAX_CROPS` crops"
PROXIED = (502, 504)  # nginx's own, for anything it proxies to Gunicorn
FRAMEGRAB = "9e140d51-2a43-5870-9337-eb66c5a4de6d"  # the README's examples
FRAMEGRAB_BOX = "8c52826d-e7f4-5fc8-a932-ed86f257fc53"
MAX_WHOLE = 10**crops.MAX_DIGITS - 1


# -- the answers' shapes


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"description": "What went wrong, for programs: see each status.",
                                                  "examples": ["box_outside_image"]})
    message = fields.String(required=True, metadata={"description": "What went wrong, for people."})
    details = fields.Dict(required=True, metadata={"description": "More about it; `{}` when there is nothing more."})


class ErrorSchema(Schema):
    """The one error shape: from the app, nginx and Gunicorn alike."""

    error = fields.Nested(ErrorDetailSchema, required=True)


def _corners(description, nullable=False):
    return fields.List(fields.Integer(), required=True, allow_none=nullable, validate=Length(equal=4),
                       metadata={"description": description})


class CropAnswerSchema(Schema):
    url = fields.Url(required=True, metadata={"description": "The crop's public URL (`PUBLIC_URL`, or the request's "
                                              "own scheme and host): `GET` it for the image."})
    uuid = fields.UUID(required=True, metadata={"description": "The image's uuid, in canonical lower case."})
    box = _corners("The box asked for (an annotation's box as FathomNet has it: it may reach past the image), "
                   "x1, y1, x2, y2.")
    region = _corners("The source pixels cut: the box with its padding, squared and kept inside the image.")
    width = fields.Integer(required=True, validate=Range(1), metadata={"description": "The crop's width in pixels."})
    height = fields.Integer(required=True, validate=Range(1),
                            metadata={"description": "The crop's height in pixels."})
    format = fields.String(required=True, validate=OneOf(formats.names()))
    cached = fields.Boolean(required=True, metadata={"description": "Whether the file was already made."})
    box_uuid = fields.UUID(metadata={"description": "The annotation cropped, when one was asked for."})
    concept = fields.String(metadata={"description": "The annotation's concept, when one was asked for."})
    review = fields.String(metadata={"description": "The annotation's review state as FathomNet has it (VERIFIED, "
                                     "UNVERIFIED, REJECTED, UNKNOWN; empty where the source has none), when one "
                                     "was asked for."})


class FailedItemSchema(Schema):
    uuid = fields.String(required=True, allow_none=True,
                         metadata={"description": "The item's uuid as sent, when it was a short string."})
    box = fields.List(fields.Raw(), required=True, allow_none=True, validate=Length(equal=4),
                      metadata={"description": "The item's x1, y1, x2, y2 as sent (numbers and short strings; null "
                                "for anything else), or null for an annotation."})
    box_uuid = fields.UUID(metadata={"description": "The annotation asked for, if any."})
    error = fields.Nested(ErrorDetailSchema, required=True)


class ConceptPageSchema(Schema):
    crops = fields.List(fields.Raw(), required=True, metadata={"description": "One answer per box of the page."})
    next_offset = fields.Integer(required=True, allow_none=True,
                                 metadata={"description": "The offset of the next page, or null on the last."})
    total = fields.Integer(required=True, validate=Range(1), metadata={"description": "Boxes of the concept."})


class BoxRequestSchema(Schema):
    box_uuid = fields.UUID(required=True)


class BoxListingSchema(Schema):
    box_uuid = fields.UUID(required=True)
    concept = fields.String(required=True)
    review = fields.String(required=True, metadata={"description": "FathomNet's review state, e.g. VERIFIED."})
    box = _corners("The annotation's box as FathomNet has it (it may reach past the image), x1, y1, x2, y2.")
    region = _corners("The region its crop cuts, or null for a box entirely outside the image.", nullable=True)
    request = fields.Nested(BoxRequestSchema, required=True,
                            metadata={"description": "The body that asks `POST /cropper/` for its crop."})
    url = fields.Url(required=True, allow_none=True, metadata={"description": "Its crop's URL (default options)."})


class ImageBoxesSchema(Schema):
    uuid = fields.UUID(required=True)
    width = fields.Integer(required=True)
    height = fields.Integer(required=True)
    boxes = fields.List(fields.Nested(BoxListingSchema), required=True)


class HealthSchema(Schema):
    status = fields.String(required=True, validate=OneOf(["ok"]))


class CheckSchema(Schema):
    ok = fields.Boolean(required=True)
    error = fields.String(metadata={"description": "Why not, when not ok."})
    warning = fields.String(metadata={"description": "What is wrong elsewhere but does not stop this host "
                                                     "(another host with another CLUSTER_KEY, or one that "
                                                     "could not be asked)."})


class ReadinessSchema(Schema):
    status = fields.String(required=True, validate=OneOf(["ready", "not_ready"]))
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(CheckSchema), required=True,
                         metadata={"description": "Each check (`cache`, `fathomnet`; with CACHE_BACKEND=s3 `store`; "
                                                  "with CLUSTER_HOSTS `cluster`, the CLUSTER_KEY) and its outcome."})


class IIIFInfoSchema(Schema):
    """IIIF Image API 3.0 image information (spec 5), level 2."""

    context = fields.String(required=True, data_key="@context", validate=OneOf([iiif.CONTEXT]))
    id = fields.Url(required=True)
    type = fields.String(required=True, validate=OneOf(["ImageService3"]))
    protocol = fields.String(required=True, validate=OneOf([iiif.PROTOCOL]))
    profile = fields.String(required=True, validate=OneOf(["level2"]))
    width = fields.Integer(required=True)
    height = fields.Integer(required=True)
    maxWidth = fields.Integer()
    maxHeight = fields.Integer()
    maxArea = fields.Integer()
    sizes = fields.List(fields.Dict())
    tiles = fields.List(fields.Dict())
    extraFormats = fields.List(fields.String())
    extraQualities = fields.List(fields.String())
    extraFeatures = fields.List(fields.String())


class IIIFManifestSchema(Schema):
    """IIIF Presentation API 3.0 manifest (validated against the IIIF consortium's schema in the tests)."""

    context = fields.Raw(required=True, data_key="@context",
                         metadata={"description": "Presentation 3's context, after navPlace's where there is a place."})
    id = fields.Url(required=True)
    type = fields.String(required=True, validate=OneOf(["Manifest"]))
    label = fields.Dict(required=True)
    items = fields.List(fields.Dict(), required=True, validate=Length(equal=1),
                        metadata={"description": "The one canvas, its boxes in its `annotations`."})


class IIIFCollectionSchema(Schema):
    """IIIF Presentation API 3.0 collection."""

    context = fields.String(required=True, data_key="@context", validate=OneOf([presentation.CONTEXT]))
    id = fields.Url(required=True)
    type = fields.String(required=True, validate=OneOf(["Collection"]))
    label = fields.Dict(required=True)
    items = fields.List(fields.Dict(), required=True,
                        metadata={"description": "The images' manifests, then the next page while there is one."})


# -- what a field accepts, beyond its marshmallow type


def whole_number(lo, hi):
    """A whole number from lo to hi, as JSON sends it or as a numeric string (query strings, older clients)."""
    return {"anyOf": [{"type": "integer", "minimum": lo, "maximum": hi},
                      {"type": "string", "pattern": rf"^\s*(?:{digits_between(lo, hi)})\s*$"}]}


def digits_between(lo, hi, max_digits=crops.MAX_DIGITS):
    """A regex for the strings of at most max_digits ASCII digits (leading zeros allowed) worth lo to hi (lo 0 or 1)."""
    top = str(hi)
    if lo == 0 and top == "9" * max_digits:
        return f"[0-9]{{1,{max_digits}}}"
    choices = ["0{1,%d}" % max_digits] if lo == 0 else []
    for length in range(1, len(top) + 1):
        significant = _at_most(top) if length == len(top) else "[1-9]" + _digits(length - 1)
        zeros = max_digits - length
        choices.append(("0?" if zeros == 1 else "0{0,%d}" % zeros if zeros else "") + f"(?:{significant})")
    return "|".join(choices)


def _digits(n):
    return f"[0-9]{{{n}}}" if n > 1 else "[0-9]" if n == 1 else ""


def _at_most(top):
    """A regex for the numbers with as many digits as top (no leading zero) that are at most top."""
    if set(top) == {"9"}:
        return "[1-9]" + _digits(len(top) - 1)
    choices = []
    for i, digit in enumerate(map(int, top)):
        low = 1 if i == 0 else 0
        if digit > low:
            span = str(low) if digit - 1 == low else f"[{low}-{digit - 1}]"
            choices.append(top[:i] + span + _digits(len(top) - i - 1))
    return "|".join([*choices, top])


def case_insensitive(word):
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


def _range(field, lo, hi):
    """lo and hi narrowed by the field's Range validators."""
    for validator in field.validators:
        if isinstance(validator, Range):
            lo = validator.min if validator.min is not None and (lo is None or validator.min > lo) else lo
            hi = validator.max if validator.max is not None and (hi is None or validator.max < hi) else hi
    return lo, hi


def _replace(ret, new):
    for key in ("type", "format", "minimum", "maximum", "pattern", "enum"):
        ret.pop(key, None)
    return new


def accepted_forms(self, field, ret, **kwargs):
    """apispec attribute function: the JSON a field accepts where its marshmallow type says less."""
    if isinstance(field, schemas.Whole):  # Pixel and Side too
        hi = getattr(field.parent, "max_side", MAX_WHOLE) if isinstance(field, schemas.Side) else MAX_WHOLE
        return _replace(ret, whole_number(*_range(field, field.minimum, hi)))
    if isinstance(field, fields.Boolean) and field.parent.__module__ == schemas.__name__:
        strings = sorted(v for v in field.truthy | field.falsy if isinstance(v, str))
        return _replace(ret, {"anyOf": [{"type": "boolean"}, {"enum": [0, 1]}, {"type": "string", "enum": strings}]})
    if isinstance(field, schemas.PadField):
        # Up to 4 digits worth at most MAX_PAD_PERCENT (1000), then up to 2 decimals.
        percent = (rf"^\s*(?:(?:[0-9]{{1,3}}|0[0-9]{{3}})(?:\.[0-9]{{1,2}})?|{schemas.MAX_PAD_PERCENT}(?:\.0{{1,2}})?)"
                   rf"\s*%\s*$")
        forms = whole_number(0, MAX_WHOLE)["anyOf"] + [{"type": "string", "pattern": percent}]
        return _replace(ret, {"anyOf": forms, "description": "Context around the box on each side: pixels (16), or "
                              "a percentage of the box's width and height "
                              f"(\"10%\", at most {schemas.MAX_PAD_PERCENT}%)."})
    if isinstance(field, schemas.Colour):
        return _replace(ret, {"type": "string", "pattern": r"^\s*#?[0-9a-fA-F]{6}\s*$", "examples": ["#ffffff"]})
    if isinstance(field, schemas.FormatName):
        return _replace(ret, {"type": "string", "pattern": format_pattern(), "examples": list(formats.names())})
    return dataset_forms(field, ret)


def dataset_forms(field, ret):
    """The data-set request's own fields, which take plain JSON only."""
    if isinstance(field, dataset_request.Flag):
        return _replace(ret, {"type": "boolean"})
    if isinstance(field, dataset_request.Finite):
        return _replace(ret, {"type": "number", "minimum": -field.bound, "maximum": field.bound})
    if isinstance(field, dataset_request.Timestamp):
        return _replace(ret, {"type": "string", "pattern": f"^{dataset_request.TIMESTAMP.pattern}$",
                              "examples": ["2021-06-01T00:00:00Z"]})
    if field.name == "taxa_provider":
        return _replace(ret, {"type": "string", "pattern": f"^{dataset_request.PROVIDER.pattern}$",
                              "examples": ["fathomnet"]})
    return {}


class DatasetFileSchema(Schema):
    name = fields.String(required=True, metadata={"description": "The file's name: imagefolder.zip, "
                                                  "train-000000.tar (a WebDataset shard), labels.txt, ..."})
    format = fields.String(required=True, validate=OneOf([*OUTPUT_FORMATS, "metadata"]),
                           metadata={"description": "imagefolder (the zip), webdataset (a shard), or metadata "
                                     "(labels.txt, manifest.csv, failures.csv, README.md beside the shards)."})
    split = fields.String(validate=OneOf(SPLIT_NAMES), metadata={"description": "A shard's split."})
    samples = fields.Integer(metadata={"description": "A shard's samples (crops)."})
    url = fields.Url(required=True, metadata={"description": "Where to GET it (nginx serves it from disk)."})
    size = fields.Integer(required=True, metadata={"description": "Bytes."})
    sha256 = fields.String(required=True, metadata={"description": "Its sha256, in hex, to check a download."})


class DatasetProgressSchema(Schema):
    boxes_total = fields.Integer(required=True, allow_none=True,
                                 metadata={"description": "Boxes the data set holds; null while they are listed."})
    crops_done = fields.Integer(required=True)
    crops_failed = fields.Integer(required=True, metadata={"description": "Boxes that could not be cropped "
                                                           "(failures.csv says why)."})
    images_downloaded = fields.Integer(required=True)
    eta_seconds = fields.Float(metadata={"description": "While running: seconds left, as the pace so far says."})


class DatasetJobSchema(Schema):
    id = fields.String(required=True, metadata={"description": "The job's id: 32 hex digits."})
    url = fields.Url(required=True, metadata={"description": "The job's URL: GET it to follow it, DELETE it to "
                                              "cancel or remove it."})
    status = fields.String(required=True, validate=OneOf(DATASET_STATUSES))
    progress = fields.Nested(DatasetProgressSchema, required=True)
    request = fields.Dict(required=True, metadata={"description": "The request as understood: every default "
                                                   "filled in, the concepts in order."})
    created = fields.String(required=True, metadata={"description": "ISO 8601, UTC."})
    started = fields.String(required=True, allow_none=True)
    finished = fields.String(required=True, allow_none=True)
    error = fields.Nested(ErrorDetailSchema(only=("code", "message")),
                          metadata={"description": "Why a failed job failed."})
    files = fields.List(fields.Nested(DatasetFileSchema), metadata={"description": "Once done: its files."})
    counts = fields.Dict(metadata={"description": "Once done: crops per split, then per label."})


class ConceptsSchema(Schema):
    concepts = fields.List(fields.String(), required=True)
    total = fields.Integer(required=True, metadata={"description": "Names that start with the prefix, in all."})


class DatasetQueuedSchema(Schema):
    id = fields.String(required=True)
    url = fields.Url(required=True)
    status = fields.String(required=True, validate=OneOf(["queued"]))


def format_pattern():
    """The format names and aliases, in any case."""
    names = [name for fmt in formats.FORMATS.values() for name in (fmt.name, *fmt.aliases)]
    return rf"^\s*(?:{'|'.join(case_insensitive(name) for name in names)})\s*$"


FIELD_TEXT = {
    "uuid": "A FathomNet image's uuid.",
    "box_uuid": "A FathomNet annotation's uuid, instead of `uuid` and a box: its box is cropped (clamped to the "
                "image where it reaches past an edge).",
    "x1": "Left edge, inclusive, in the pixels FathomNet reports for the image (an integer or a numeric string).",
    "y1": "Top edge, inclusive.",
    "x2": "Right edge, exclusive: more than x1.",
    "y2": "Bottom edge, exclusive: more than y1.",
    "square": "Grow the region to a square, centred, shifted inside the image where it fits.",
    "width": "Output width in pixels (one side alone keeps the aspect).",
    "height": "Output height in pixels.",
    "fit": "How the region fits width x height (both needed): contain (default), cover, fill, letterbox.",
    "enlarge": "Whether a region smaller than the size asked for is scaled up (default true).",
    "background": "The letterbox colour (needs fit letterbox), rrggbb or #rrggbb; default black.",
    "quality": "Encoder quality, 1 to 100, for the lossy formats (" + ", ".join(
        fmt.name for fmt in formats.FORMATS.values() if fmt.lossy) + "); default `QUALITY`.",
    "format": ", ".join(f"{fmt.name}" + (f" ({', '.join(fmt.aliases)})" if fmt.aliases else "")
                        for fmt in formats.FORMATS.values()) + ", in any case; default `DEFAULT_FORMAT`.",
    "concept": "A FathomNet concept (taxon) name, exactly.",
    "limit": "Boxes in the page.",
    "offset": "Boxes to skip.",
    "crops": "The crops, each a crop request as for `POST /cropper/` (this batch's options apply to items that name "
             "none); an item that is not one is answered in place with its error.",
}

QUERY_RULES = {  # what OPTION_RULES say for a body, in words (query parameters are described one by one)
    "fit": "Needs width and height.",
    "background": "Needs fit=letterbox.",
}

OPTION_RULES = {
    "dependentRequired": {"fit": ["width", "height"]},
    "dependentSchemas": {"background": {"required": ["fit"], "properties": {"fit": {"const": "letterbox"}}}},
}


def crop_forms():
    corners = ["uuid", "x1", "y1", "x2", "y2"]
    return {"oneOf": [
        {"title": "an image and a box", "required": corners, "not": {"required": ["box_uuid"]}},
        {"title": "a FathomNet annotation", "required": ["box_uuid"],
         "not": {"anyOf": [{"required": [name]} for name in corners]}},
    ]}


# -- the description


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def batch_item():
    """A batch's item: a crop request, or anything else (answered in place with its error, the batch still 200)."""
    return {"anyOf": [ref("CropRequest"), {"description": "Anything else: answered in place with its error."}]}


def error_response(status, text):
    response = {"description": text, "content": {"application/json": {"schema": ref("Error")}}}
    if status == 429:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    elif status in (502, 503, 504):
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfterMaybe"}}
    return response


def answers(ok, *statuses, **texts):
    """An operation's responses: ok (status: response) and the errors, each with its text (or the common one)."""
    out = {str(status): response for status, response in ok.items()}
    for status in statuses:
        out[str(status)] = error_response(status, texts.get(f"e{status}", ERROR_CODES.get(status, "")))
    return out


def json_ok(description, schema, headers=None, **extra):
    response = {"description": description, "content": {"application/json": {"schema": schema, **extra}}}
    if headers:
        response["headers"] = headers
    return response


def cache_header(values, text):
    return {"X-Cropper-Cache": {"description": text, "required": True,
                                "schema": {"type": "string", "enum": list(values)}}}


def image_ok(description, cache_values):
    media = sorted({fmt.media_type for fmt in formats.FORMATS.values()})
    return {"description": description, "content": {media_type: {} for media_type in media},
            "headers": {**cache_header(cache_values, "Where the file came from: the cache (`hit`), made now "
                                                     "(`miss`), or made again for its URL (`regenerated`)."),
                        "Cache-Control": {"description": "`public, max-age=31536000, immutable`: a file's bytes "
                                          "never change for its name.", "schema": {"type": "string"}}}}


def iiif_image_ok():
    response = image_ok("The image.", ("hit", "miss"))
    response["headers"]["Link"] = {"description": "The canonical URI and the profile.", "schema": {"type": "string"}}
    return response


def redirect(text, location):
    return {"description": text, "headers": {"Location": {"description": location, "required": True,
                                                          "schema": {"type": "string"}}},
            "content": {"text/html": {"schema": {"type": "string"}}}}


def presentation_ok(description, schema):
    return {"description": description, "content": {"application/ld+json": {"schema": ref(schema)}},
            "headers": {"Cache-Control": {"description": "`public, max-age=IIIF_MANIFEST_MAX_AGE` with `PUBLIC_URL` "
                                          "set (nginx keeps it), else `private`: its URLs are then the request's.",
                                          "schema": {"type": "string"}}}}


def query_param(name, text, schema, example, required=False):
    return {"name": name, "in": "query", "required": required, "description": text, "schema": schema,
            "example": example}


def path_param(name, text, schema, example=None):
    param = {"name": name, "in": "path", "required": True, "description": text, "schema": schema}
    if example is not None:
        param["example"] = example
    return param


def uuid_param(name, text, example):
    return path_param(name, f"{text} Any other text is a 404.", {"type": "string", "format": "uuid"}, example)


def build(app):
    """The description of the whole HTTP API of app, with its limits."""
    settings = app.config["SETTINGS"]
    crop_schema, concept_schema = app.extensions["cropper.schema.crop"], app.extensions["cropper.schema.concept"]
    limits = {"max_side": crop_schema.max_side, "max_pixels": crop_schema.max_pixels,
              "default_format": crop_schema.default_format}
    batch_schema = app.extensions["cropper.schema.batch"]
    plugin = MarshmallowPlugin(schema_name_resolver=lambda schema: None)
    spec = APISpec(
        title="FathomNet Cropper", version=_version(), openapi_version="3.1.0", plugins=[plugin],
        info={"description": DESCRIPTION.format(max_side=settings.max_crop_side, max_pixels=settings.max_crop_pixels,
                                                batch=settings.batch_max_crops)},
        tags=[{"name": "crops", "description": "Crops of FathomNet images, made once and cached."},
              {"name": "annotations", "description": "FathomNet's annotations (bounding boxes) and their crops."},
              {"name": "iiif", "description": "IIIF Image API 3.0 (level 2) over FathomNet images, and IIIF "
                                              "Presentation API 3.0 manifests with their boxes as annotations."},
              {"name": "datasets", "description": "Training sets from FathomNet's annotations, made by a worker."},
              {"name": "service", "description": "Probes, metrics, this description and the pages."}],
    )
    plugin.converter.add_attribute_function(accepted_forms)
    for name, schema in (("Error", ErrorSchema), ("ErrorDetail", ErrorDetailSchema), ("CropAnswer", CropAnswerSchema),
                         ("FailedItem", FailedItemSchema), ("ConceptPage", ConceptPageSchema),
                         ("ImageBoxes", ImageBoxesSchema), ("BoxListing", BoxListingSchema),
                         ("BoxRequest", BoxRequestSchema), ("Health", HealthSchema), ("Check", CheckSchema),
                         ("Readiness", ReadinessSchema), ("IIIFInfo", IIIFInfoSchema),
                         ("IIIFManifest", IIIFManifestSchema), ("IIIFCollection", IIIFCollectionSchema),
                         ("CropRequest", crop_schema), ("BatchRequest", batch_schema),
                         ("CropOptions", schemas.OptionsSchema(exclude=("format",), **limits)),
                         ("ConceptRequest", concept_schema), ("DatasetRequest", DatasetSchema),
                         ("DatasetCropOptions", schemas.OptionsSchema(**limits)), ("DatasetJob", DatasetJobSchema),
                         ("DatasetQueued", DatasetQueuedSchema), ("Concepts", ConceptsSchema)):
        spec.components.schema(name, schema=schema)
    spec.components.schema("BatchItem", {"oneOf": [ref("CropAnswer"), ref("FailedItem")]})
    spec.components.header("RetryAfter", {"description": "Seconds to wait before retrying.", "required": True,
                                          "schema": {"type": "string", "pattern": "^[0-9]+$"}})
    spec.components.header("RetryAfterMaybe", {"description": "Seconds to wait before retrying, when said.",
                                               "schema": {"type": "string", "pattern": "^[0-9]+$"}})
    options = copy.deepcopy(spec.to_dict()["components"]["schemas"]["CropOptions"]["properties"])
    described = paths(settings, options)
    if settings.admin_token:  # the operator endpoints exist only then (http/admin.py)
        spec.tag({"name": "admin", "description": "Purges, made on every host: for operators, from the networks "
                                                  "`ADMIN_ALLOW` names, with `ADMIN_TOKEN` (docs/freshness.md)."})
        spec.components.security_scheme("adminToken", {"type": "http", "scheme": "bearer",
                                                       "description": "`ADMIN_TOKEN`."})
        described.update(admin_paths())
    for path, operations in described.items():
        spec.path(path=path, operations=operations)
    description = spec.to_dict()
    del description["components"]["schemas"]["CropOptions"]  # only the query parameters of /boxes/ use it
    refine(description["components"]["schemas"], settings)
    return description


def refine(components, settings):
    """What JSON Schema says of the request bodies beyond their fields, and the words for each field."""
    for name in ("CropRequest", "BatchRequest", "ConceptRequest"):
        for field, prop in components[name]["properties"].items():
            if field in FIELD_TEXT:
                prop.setdefault("description", FIELD_TEXT[field])
        if name != "BatchRequest":  # a batch's options may be completed by its items (each checked merged)
            components[name].update(OPTION_RULES)
    crop = components["CropRequest"]
    crop["properties"]["format"]["default"] = settings.default_format  # the page reads its choice from here
    crop.update(crop_forms())
    crop["description"] = ("One crop: an image's `uuid` and a box (`x1`, `y1`, `x2`, `y2`), or a FathomNet "
                           "annotation's `box_uuid`; and options. Unknown fields are refused. Beyond what this schema "
                           "says: x2 > x1, y2 > y1, the box inside the image (else 422 `box_outside_image`), a side of "
                           "at most "
                           f"{settings.max_crop_side} and at most {settings.max_crop_pixels} pixels, cut and output.")
    crop["examples"] = [{"uuid": FRAMEGRAB, "x1": 100, "y1": 100, "x2": 405, "y2": 400,
                         "format": formats.names()[0]},
                        {"box_uuid": FRAMEGRAB_BOX, "pad": "10%", "square": True, "width": 224, "height": 224}]
    batch = components["BatchRequest"]
    batch["properties"]["crops"].update(items=batch_item(), maxItems=settings.batch_max_crops)
    batch["description"] = "The object form of a batch: its crops and the options of those that name none."
    concept = components["ConceptRequest"]
    concept["properties"]["limit"] = whole_number(1, settings.concept_page_max)
    concept["properties"]["limit"]["description"] = f"Boxes in the page, at most {settings.concept_page_max}."
    concept["properties"]["offset"]["description"] = FIELD_TEXT["offset"]
    concept["examples"] = [{"concept": "Bathochordaeus mcnutti", "limit": 10, "width": 224, "height": 224}]
    components["ConceptPage"]["properties"]["crops"]["items"] = ref("BatchItem")
    for name in ("IIIFInfo", "IIIFManifest", "IIIFCollection"):
        components[name]["additionalProperties"] = True  # a document says more than its required parts
    refine_dataset(components["DatasetRequest"], components["DatasetCropOptions"], settings)


def refine_dataset(request, crop_options, settings):
    """The data-set request's crop options and split, which its schema reads by hand."""
    crop_options.update(OPTION_RULES)
    request["properties"]["crop"] = {**ref("DatasetCropOptions"), "description": "The options crops take "
                                     "(pad, square, width, height, fit, background, enlarge, quality, format), "
                                     "with the same defaults."}
    request["properties"]["split"] = {
        "type": "object", "minProperties": 1, "additionalProperties": False,
        "properties": {name: {"type": "number", "exclusiveMinimum": 0, "maximum": 1} for name in SPLIT_NAMES},
        "description": "Fractions over the splits, adding up to 1 (within 0.001); default train 0.8, validation "
                       "0.1, test 0.1. By image: every box of an image is in the same split.",
        "default": dict(dataset_request.DEFAULT_SPLIT)}
    request["properties"]["formats"]["default"] = list(dataset_request.DatasetRequest(concepts=()).formats)
    request["properties"]["max_boxes"] = {**whole_number(1, settings.dataset_max_boxes),
                                          "description": f"At most this many boxes (default and ceiling "
                                                         f"{settings.dataset_max_boxes})."}
    request["properties"]["concepts"]["description"] = "One to 20 exact FathomNet concept names."
    request["properties"]["concepts"]["uniqueItems"] = False
    request["examples"] = [{"concepts": ["Bathochordaeus mcnutti"], "descendants": True,
                            "crop": {"pad": "10%", "square": True, "width": 224, "height": 224}}]


def paths(settings, options):
    crop_errors = (400, 404, 410, 413, 415, 422, 429, 502, 503, 504, 507)
    crop_422 = f"{VALIDATION} Or {BOX_OUTSIDE} Or {TOO_LARGE}"
    body = {"required": True, "content": {"application/json": {"schema": ref("CropRequest")}}}
    crop_ok = {200: json_ok("The crop's URL and what was cut.", ref("CropAnswer"),
                            cache_header(("hit", "miss"), "`hit` when the file was already made, else `miss`."))}
    create = {"post": {
        "tags": ["crops"], "summary": "Crop an image (or an annotation)",
        "description": "Looks the image up in FathomNet, downloads it once, cuts the box, stores the crop and answers "
                       "its public URL. The same request never downloads or crops twice.",
        "requestBody": body,
        "responses": answers(crop_ok, *crop_errors, e404="`image_not_found`, or `box_not_found` for a box_uuid.",
                             e422=crop_422)}}
    batch_body = {"required": True, "content": {"application/json": {"schema": {
        "oneOf": [{"type": "array", "items": batch_item(), "maxItems": settings.batch_max_crops,
                   "title": "a list of crops"}, ref("BatchRequest")]}}}}
    create_many = {"post": {
        "tags": ["crops"], "summary": "Crop many boxes at once",
        "description": "A list of crops, or `{\"crops\": [...], options}`. The answer is a list in request order, one "
                       "entry per item: the crop's answer or the item's error. One bad item never fails the rest.",
        "requestBody": batch_body,
        "responses": answers({200: json_ok("One answer per item, in order.",
                                           {"type": "array", "items": ref("BatchItem")})},
                             400, 413, 415, 422, 429, 502, 503, 504,
                             e413=ERROR_CODES[413] + TOO_MANY + f" ({settings.batch_max_crops}).",
                             e422=VALIDATION + " (the batch's form or options; items are answered in place)")}}
    csv_columns = ",".join(CSV_COLUMNS)
    concept = {"post": {
        "tags": ["annotations"], "summary": "Crop a page of a concept's annotations",
        "description": "For a data set: a page of FathomNet's boxes of one concept, each cropped. JSON, or CSV "
                       f"(`{csv_columns}`, the crops made) when `Accept` prefers `text/csv`. A text cell a "
                       "spreadsheet would run as a formula (one starting with =, +, -, @, a tab or a carriage "
                       "return, as a concept's name may) is written with a leading `'`; numbers as they are.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref("ConceptRequest")}}},
        "responses": answers({200: {
            "description": "The page's crops (failed ones with their error), the total and the next page's offset.",
            "content": {"application/json": {"schema": ref("ConceptPage")},
                        "text/csv": {"schema": {"type": "string"}}},
            "headers": {"X-Cropper-Failed": {"description": "CSV only: boxes that could not be cropped.",
                                             "schema": {"type": "string", "pattern": "^[0-9]+$"}}}}},
            400, 404, 413, 415, 422, 429, 502, 503, 504,
            e404="`concept_not_found`: FathomNet has no boxes of this concept.", e422=VALIDATION)}}
    name_pattern = crops.url_path_pattern().split("/", 4)[4]
    option_params = [{"name": name, "in": "query", "required": False, "schema": schema,
                      "description": " ".join(filter(None, (schema.pop("description", FIELD_TEXT.get(name)),
                                                            QUERY_RULES.get(name))))}
                     for name, schema in options.items()]
    iiif_extensions = sorted(formats.iiif_names())
    return {
        "/cropper/": create,
        "/cropper": _alias(create, "/cropper/"),
        "/cropper-list/": create_many,
        "/cropper-list": _alias(create_many, "/cropper-list/"),
        "/cropper-concept/": concept,
        "/cropper-concept": _alias(concept, "/cropper-concept/"),
        "/images/{uuid}/boxes": {"get": {
            "tags": ["annotations"], "summary": "An image's annotations",
            "description": "Each of the image's FathomNet annotations, with the request and the URL of its crop.",
            "parameters": [uuid_param("uuid", "A FathomNet image's uuid.", FRAMEGRAB)],
            "responses": answers({200: json_ok("The image's size and its annotations.", ref("ImageBoxes"))},
                                 404, 410, 429, 502, 503, 504, 507, e404="`image_not_found`.")}},
        "/boxes/{box_uuid}.{format}": {"get": {
            "tags": ["annotations"], "summary": "Redirect to an annotation's crop",
            "description": "So an `<img>` can show an annotation by its uuid; the options are query parameters.",
            "parameters": [uuid_param("box_uuid", "A FathomNet annotation's uuid.", FRAMEGRAB_BOX),
                           path_param("format", FIELD_TEXT["format"], {"type": "string", "pattern": format_pattern()},
                                      formats.names()[0]),
                           *option_params],
            "responses": answers({302: redirect("To the crop's URL (cacheable for `METADATA_TTL` seconds: an "
                                                "annotation may be edited).", "The crop's URL.")},
                                 404, 410, 422, 429, 502, 503, 504, 507,
                                 e404="`box_not_found`, or `image_not_found` for its image.",
                                 e422=f"{VALIDATION} Or {TOO_LARGE}")}},
        "/crops/{shard}/{uuid}/{name}": {"get": {
            "tags": ["crops"], "summary": "A crop's file",
            "description": "The URL a crop's answer gives. nginx serves made files from disk; a file that is gone is "
                           "made again first, so a link never breaks. A path that is not exactly one the service "
                           "would make is a 404.",
            "parameters": [path_param("shard", "The uuid's first two hex digits.",
                                      {"type": "string", "pattern": "^[0-9a-f]{2}$"}, FRAMEGRAB[:2]),
                           path_param("uuid", "The image's uuid, lower case.",
                                      {"type": "string", "pattern": f"^{crops.UUID}$"}, FRAMEGRAB),
                           path_param("name", "x1_y1_x2_y2, then _WxH (scaled), _lbWxH and _rrggbb (letterbox), "
                                      "_qN (quality), and the format's extension.",
                                      {"type": "string", "pattern": f"^{name_pattern}$"},
                                      f"100_100_405_400.{formats.names()[0]}")],
            "responses": answers({200: image_ok("The crop.", ("hit", "regenerated"))},
                                 404, 410, 422, 429, 502, 503, 504, 507,
                                 e404="`crop_not_found`: not a path the service would make; or `image_not_found`.",
                                 e422=TOO_LARGE,
                                 e429=ERROR_CODES[429] + " (only files made again count)")}},
        "/iiif/3/{identifier}": {"get": {
            "tags": ["iiif"], "summary": "An image's IIIF base URI",
            "parameters": [uuid_param("identifier", "A FathomNet image's uuid.", FRAMEGRAB)],
            "responses": answers({303: redirect("To the image's info.json.", "The info.json's URL.")},
                                 404, 410, 429, *PROXIED, e404="`image_not_found`.")}},
        "/iiif/3/{identifier}/info.json": {"get": {
            "tags": ["iiif"], "summary": "An image's IIIF image information",
            "description": "Size, limits, sizes and tiles for deep zoom. JSON-LD unless plain JSON is preferred.",
            "parameters": [uuid_param("identifier", "A FathomNet image's uuid.", FRAMEGRAB)],
            "responses": answers({200: {"description": "The image information document.",
                                        "headers": {"Link": {"description": "The level 2 profile.", "required": True,
                                                             "schema": {"type": "string"}}},
                                        "content": {"application/ld+json": {"schema": ref("IIIFInfo")},
                                                    "application/json": {"schema": ref("IIIFInfo")}}}},
                                 404, 410, 429, 502, 503, 504, 507, e404="`image_not_found`.")}},
        "/iiif/3/{identifier}/{region}/{size}/{rotation}/{quality}.{format}": {"get": {
            "tags": ["iiif"], "summary": "An IIIF image request",
            "description": "Made like a crop, stored under its canonical name (which nginx serves next time).",
            "parameters": [
                uuid_param("identifier", "A FathomNet image's uuid.", FRAMEGRAB),
                path_param("region", "full, square, x,y,w,h or pct:x,y,w,h.",
                           {"type": "string", "pattern": _iiif_pattern(r"full|square", iiif.REGION_PIXELS,
                                                                       iiif.REGION_PERCENT)}, "full"),
                path_param("size", "max, w,, ,h, pct:n, w,h or !w,h; each may start with ^ to upscale.",
                           {"type": "string", "pattern": _iiif_pattern(iiif.SIZE)}, "max"),
                path_param("rotation", "Degrees clockwise, after ! to mirror; only multiples of 90 are made.",
                           {"type": "string", "pattern": _iiif_pattern(iiif.ROTATION)}, "0"),
                path_param("quality", "The colours.", {"type": "string", "enum": list(iiif.QUALITIES)}, "default"),
                path_param("format", "The image format.", {"type": "string", "enum": iiif_extensions},
                           iiif_extensions[0])],
            "responses": answers({200: iiif_image_ok()},
                                 400, 404, 410, 422, 429, 501, 502, 503, 504, 507,
                                 e400="`bad_request`: the IIIF syntax, or a request this image refuses (a region "
                                      "outside it, a size over the limits or scaling up without ^).",
                                 e404="`image_not_found`.", e422=TOO_LARGE)}},
        f"{presentation.MANIFESTS}/{{uuid}}": {"get": {
            "tags": ["iiif"], "summary": "An image's IIIF Presentation 3.0 manifest, its boxes as annotations",
            "description": "One canvas at FathomNet's size, deep-zoomed from this service's Image API, with each of "
                           "FathomNet's boxes a tagging annotation of its region (clamped to the image; a box wholly "
                           "outside it is left out). Built from the image's remembered record, asked of FathomNet "
                           "again once `METADATA_TTL` has passed. For Mirador, Tify, Annona and other IIIF viewers.",
            "parameters": [uuid_param("uuid", "A FathomNet image's uuid.", FRAMEGRAB)],
            "responses": answers({200: presentation_ok("The manifest.", "IIIFManifest")},
                                 404, 410, 429, 502, 503, 504, 507, e404="`image_not_found`.")}},
        presentation.CONCEPT_COLLECTION: {"get": {
            "tags": ["iiif"], "summary": "A concept's images, a page at a time, as an IIIF collection",
            "description": f"The manifests of the images of a page of FathomNet's boxes of the concept (at most "
                           f"{settings.concept_page_max} boxes, each image once, in the order of its first box), "
                           "then the next page, as a collection, while FathomNet has more.",
            "parameters": [
                query_param("name", "The concept (a query parameter: a concept's name may hold a /).",
                            {"type": "string", "minLength": 1, "maxLength": 256}, "Bathochordaeus mcnutti", True),
                query_param("page", "The page, from 1.", whole_number(1, schemas.MAX_COLLECTION_PAGE), 1)],
            "responses": answers({200: presentation_ok("The collection.", "IIIFCollection")},
                                 404, 422, 429, 502, 503, 504,
                                 e404="`concept_not_found`: FathomNet has no boxes of this concept.",
                                 e422=VALIDATION + " (of the query).")}},
        **dataset_paths(),
        "/healthz": {"get": {"tags": ["service"], "summary": "Liveness: the process answers",
                             "responses": answers({200: json_ok("Alive.", ref("Health"))}, *PROXIED)}},
        "/readyz": {"get": {
            "tags": ["service"], "summary": "Readiness: the cache is writable and FathomNet answers",
            "responses": {"200": json_ok("Ready.", ref("Readiness")),
                          "503": json_ok("Not ready: a check failed (it says why).", ref("Readiness")),
                          **answers({}, *PROXIED)}}},
        "/metrics": {"get": {
            "tags": ["service"], "summary": "Prometheus metrics, summed over Gunicorn's workers",
            "description": "Only for the monitoring networks (`METRICS_ALLOW`).",
            "responses": answers({200: {"description": "Prometheus' text format.",
                                        "content": {"text/plain": {"schema": {"type": "string"}}}}},
                                 403, *PROXIED)}},
        "/openapi.json": {"get": {
            "tags": ["service"], "summary": "This description",
            "responses": answers({200: json_ok("OpenAPI 3.1.", {"type": "object"})}, *PROXIED)}},
        "/docs": {"get": {"tags": ["service"], "summary": "This description, to read (Redoc)",
                          "responses": answers({200: {"description": "The page.",
                                                      "content": {"text/html": {"schema": {"type": "string"}}}}},
                                               *PROXIED)}},
        "/": {"get": {"tags": ["service"], "summary": "The web page",
                      "responses": {"200": {"description": "The page.",
                                            "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/mirador": {"get": {"tags": ["service"], "summary": "Mirador on an image's manifest (?image=<uuid>)",
                             "responses": {"200": {"description": "The viewer page.",
                                                   "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    }


def admin_paths():
    """DELETE /admin/...: what is purged, and the answer (what was removed, in the store and per host)."""
    report = json_ok("What was removed: in the crop store, and on each host (a host that could not be reached "
                     "says so, `pending`: it applies the purge when it can).", {"type": "object"})
    refused = {"e401": "`unauthorized`: no `Authorization: Bearer <ADMIN_TOKEN>`, or another token.",
               "e403": "`forbidden`: the client is not on the networks `ADMIN_ALLOW` names (nginx, then the app).",
               "e503": "`store_unavailable`: the shared crop store (`CACHE_BACKEND=s3`) cannot be reached; retry "
                       "after `Retry-After`."}

    def purge(summary, description, parameters, *errors, **texts):
        return {"delete": {"tags": ["admin"], "summary": summary, "description": description,
                           "security": [{"adminToken": []}], "parameters": parameters,
                           "responses": answers({200: report}, 401, 403, *errors, 503, *PROXIED, **refused,
                                                **texts)}}

    return {
        "/admin/images/{uuid}": purge(
            "Purge an image", "Every crop of the image in every size and format, its IIIF tiles, its pixels and "
            "what is remembered of it and its boxes, in the store and on every host, nginx's copies included.",
            [uuid_param("uuid", "The FathomNet image's uuid.", FRAMEGRAB)], 404, e404="`image_not_found`."),
        "/admin/boxes/{box_uuid}": purge(
            "Purge what is remembered of a box", "On every host, so FathomNet is asked for it again; crops stay "
            "(their URLs name their region).", [uuid_param("box_uuid", "The bounding box's uuid.", FRAMEGRAB_BOX)],
            404, e404="`box_not_found`."),
        "/admin/concepts": purge(
            "Purge what is remembered of a concept's boxes", "On every host, so FathomNet is asked for them again.",
            [query_param("name", "The concept's exact name.",
                         {"type": "string", "minLength": 1, "maxLength": MAX_CONCEPT}, "Bathochordaeus mcnutti",
                         required=True)], 422,
            e422=f"`validation_error`: no concept named, or a name of more than {MAX_CONCEPT} characters."),
    }


def dataset_paths():
    gone = "`dataset_gone`: the data set was cancelled, removed or expired (`details.status`, `details.removed`)."
    job_id = path_param("job_id", "The job's id.", {"type": "string", "pattern": "^[0-9a-f]{32}$"}, "0" * 32)
    job = json_ok("The job: its status and progress, the request as understood, and once done its files.",
                  ref("DatasetJob"))
    create = {"post": {
        "tags": ["datasets"], "summary": "Start a data-set job",
        "description": "A training set from FathomNet's annotations: every box of the concepts asked (and their "
                       "descendants), cropped, split by image, as a Hugging Face ImageFolder zip with provenance. "
                       "An identical request (once normalised) while its job is queued, running or done is "
                       "answered 200 with that job.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref("DatasetRequest")}}},
        "responses": answers({202: {**json_ok("Queued.", ref("DatasetQueued")),
                                    "headers": {"Location": {"description": "The job's URL.", "required": True,
                                                             "schema": {"type": "string"}}}},
                              200: job},
                             400, 413, 415, 422, 429, 502, 503, 504,
                             e422=f"{VALIDATION} Or `unknown_concept`: FathomNet has no concept of that exact name "
                                  "(`details.suggestions` has close ones).",
                             e429=ERROR_CODES[429] + " Or `too_many_jobs`: `DATASET_QUEUE_MAX` jobs wait already.")}}
    concepts = {"get": {
        "tags": ["datasets"], "summary": "FathomNet's concept names",
        "description": "The names a data set may ask for (exact names), remembered for an hour: all of them, or "
                       "those that start with `prefix` (in any case), in FathomNet's order.",
        "parameters": [{"name": "prefix", "in": "query", "required": False, "description": "What the names start with.",
                        "schema": {"type": "string", "maxLength": 256}},
                       {"name": "limit", "in": "query", "required": False, "description": "At most this many names.",
                        "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,2}$|^1000$"}}],
        "responses": answers({200: json_ok("The names, and how many start with the prefix.", ref("Concepts"))},
                             422, 429, 502, 503, 504, e422=VALIDATION)}}
    return {
        "/concepts": concepts,
        "/datasets/": create,
        "/datasets": _alias(create, "/datasets/"),
        "/datasets/{job_id}": {
            "get": {"tags": ["datasets"], "summary": "A data-set job", "parameters": [job_id],
                    "responses": answers({200: job}, 404, 410, 429, *PROXIED, e404="`dataset_not_found`.",
                                         e410=gone)},
            "delete": {"tags": ["datasets"], "summary": "Cancel a data-set job, or remove a finished one",
                       "description": "A queued or running job is cancelled (its partial files go; crops already "
                                      "made stay cached); a finished one's files are removed. Then GET is a 410.",
                       "parameters": [job_id],
                       "responses": answers({200: job}, 404, 410, 429, *PROXIED, e404="`dataset_not_found`.",
                                            e410=gone)}},
        "/datasets/{job_id}/files/{name}": {"get": {
            "tags": ["datasets"], "summary": "A finished data set's file",
            "parameters": [job_id, path_param("name", "The file's name, as the job lists it.",
                                              {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"},
                                              "imagefolder.zip")],
            "responses": answers({200: {"description": "The file (an attachment).",
                                        "content": {"application/zip": {}, "application/x-tar": {}}}},
                                 404, 410, *PROXIED, e404="`dataset_not_found`: no such job, or no such file.",
                                 e410=gone)}},
    }


def _alias(operations, canonical):
    """The same operations under the path without its slash."""
    return {method: {**operation, "summary": f"{operation['summary']} (as {canonical})"}
            for method, operation in operations.items()}


def _iiif_pattern(*choices):
    """Anchored alternatives, from IIIF's own regexes (Python's named groups as plain ones)."""
    texts = [choice if isinstance(choice, str) else re.sub(r"\(\?P<\w+>", "(?:", choice.pattern) for choice in choices]
    return f"^(?:{'|'.join(texts)})$"


def _version():
    try:
        return metadata.version("fathomnet-cropper")
    except metadata.PackageNotFoundError:
        return "0"


DESCRIPTION = """\
Crops of [FathomNet](https://fathomnet.org) images for lab tools: POST an image's uuid and a box (or an
annotation's uuid), get the crop's URL. Each crop is made once and cached; its URL never changes.

Coordinates are pixels in the grid whose size FathomNet reports for the image: x1, y1 inclusive, x2, y2
exclusive. A crop's side is at most {max_side} pixels and its area at most {max_pixels} pixels, cut and
output alike; a batch has at most {batch} crops.

Every error, the app's, nginx's and Gunicorn's alike, is JSON in one shape:
`{{"error": {{"code", "message", "details"}}}}`. The API's endpoints are rate limited per client by nginx
(429 with `Retry-After`).

What FathomNet says of annotations is asked again after `METADATA_TTL`; an answer that used what was
remembered while FathomNet could not be asked carries `X-Cropper-Stale: 1`. An image FathomNet withdrew
answers 410 (`image_withdrawn`).
"""


@bp.get("/openapi.json")
def openapi_json():
    """The description, built once per app."""
    app = current_app._get_current_object()
    if "cropper.openapi" not in app.extensions:
        app.extensions["cropper.openapi"] = build(app)
    return jsonify(app.extensions["cropper.openapi"])


@bp.get("/docs")
def docs():
    """The reference page: Redoc, from /static/vendor/redoc/, over /openapi.json."""
    return current_app.send_static_file("api.html")
