"""HTTP routes: the only module that touches the request."""

import json
import math

from flask import Blueprint, Request, current_app, jsonify, request, send_file
from marshmallow import ValidationError
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType
from werkzeug.wsgi import get_input_stream

from . import batch, crops
from .errors import BoxOutsideImageError, CropNotFoundError, InvalidRequestError, body_of
from .schemas import batch_items

bp = Blueprint("cropper", __name__)

ONE_YEAR = 365 * 24 * 3600


class JSONRequest(Request):
    """A request whose body is read within MAX_CONTENT_LENGTH however it is sent, and parsed as strict JSON."""

    def json_body(self):
        if not self.is_json:
            raise UnsupportedMediaType("Send the body as JSON, with Content-Type: application/json.")
        return parse_json(self._body_within_limit())

    def _body_within_limit(self):
        limit = self.max_content_length
        if self.content_length is not None and self.content_length > limit:
            raise RequestEntityTooLarge()
        # The raw stream: Werkzeug's own would quietly cut a chunked body at the limit.
        stream = get_input_stream(self.environ, safe_fallback=False, max_content_length=None)
        try:
            data = stream.read(limit + 1)
        except Exception:  # the server's parse error for a malformed chunked body, or a client gone
            raise BadRequest("The request body could not be read: its chunked encoding is malformed.") from None
        if len(data) > limit:
            raise RequestEntityTooLarge()
        return data


def parse_json(data):
    """Strict JSON: no NaN or Infinity (they are not JSON), and no nesting deeper than Python can follow."""
    try:
        return json.loads(data, parse_constant=_not_json)
    except RecursionError:
        raise BadRequest("The body is not valid JSON: it nests too deeply.") from None
    except ValueError as error:
        raise BadRequest(f"The body is not valid JSON: {error}") from None


def _not_json(constant):
    raise ValueError(f"{constant} is not a JSON value")


def echoed(value):
    """A batch item's field as its error answer repeats it: only short strings and finite numbers."""
    if isinstance(value, str) and len(value) <= 64:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and \
            abs(value) < 10**15:
        return value
    return None


def settings():
    return current_app.config["SETTINGS"]


def crop_service():
    return current_app.extensions["cropper"]


def crop_schema():
    return current_app.extensions["cropper.schema"]


def crop_for_path(relpath):
    """The Crop a path names, held to the same limits as a POST; only canonical paths count."""
    crop = crops.parse_relpath(relpath)
    if crop is not None:
        body = {"uuid": crop.uuid, **crop.box._asdict(), "format": crop.format}
        try:
            crop_schema().load(body)
        except ValidationError:
            crop = None
    if crop is None:
        raise CropNotFoundError("There is no crop at this path.")
    return crop


def public_url(crop):
    """The absolute URL of a crop, from PUBLIC_URL or else from the request (after ProxyFix)."""
    base = settings().public_url or request.url_root
    return f"{base.rstrip('/')}/crops/{crop.relpath}"


@bp.post("/cropper")
@bp.post("/cropper/")
def create_crop():
    """Crop a FathomNet image and answer with the public URL of the stored file."""
    crop = crop_schema().load(request.json_body())
    result = crop_service().get_or_create(crop)
    response = jsonify(result.to_json(public_url(result.crop)))
    response.headers["X-Cropper-Cache"] = "hit" if result.cached else "miss"
    return response


@bp.post("/cropper-list")
@bp.post("/cropper-list/")
def create_crops():
    """Crop many boxes at once: one answer per item, in order; one bad item never fails the rest."""
    items = batch_items(request.json_body(), settings().batch_max_crops)
    loaded = [load_item(item) for item in items]
    wanted = [x for x in loaded if isinstance(x, crops.Crop)]
    results = iter(batch.get_or_create_many(crop_service(), wanted, settings().batch_concurrency))
    return jsonify([item_answer(next(results)) if isinstance(x, crops.Crop) else x for x in loaded])


def load_item(item):
    """A batch item as a Crop, or its error answer when it is not valid."""
    try:
        return crop_schema().load(item)
    except ValidationError as error:
        fields = item if isinstance(item, dict) else {}
        box = [echoed(fields.get(name)) for name in ("x1", "y1", "x2", "y2")]
        invalid = InvalidRequestError.from_validation_error(error, "This crop is not valid.")
        return failed_item(echoed(fields.get("uuid")), box, invalid)


def item_answer(result):
    if isinstance(result, batch.CropFailure):
        return failed_item(result.crop.uuid, list(result.crop.box), result.error)
    return result.to_json(public_url(result.crop))


def failed_item(uuid, box, error):
    return {"uuid": uuid, "box": box, **body_of(error)}


@bp.get("/crops/<path:relpath>")
def get_crop(relpath):
    """Serve a crop, making it again first if it is gone (links never break)."""
    try:
        result = crop_service().get_or_create(crop_for_path(relpath))
    except BoxOutsideImageError:
        raise CropNotFoundError("There is no crop at this path.") from None
    opened = crop_service().crop_store.open(result.crop)
    if opened is None:  # evicted between making and sending: make it once more
        result = crop_service().make(result.crop)
        opened = crop_service().crop_store.open(result.crop)
    response = send_file(opened.file, mimetype=result.crop.media_type, max_age=ONE_YEAR, conditional=True,
                         etag=f"{opened.size:x}-{int(opened.modified * 1e6):x}", last_modified=opened.modified)
    response.cache_control.public = True
    response.cache_control.immutable = True
    response.headers["X-Cropper-Cache"] = "hit" if result.cached else "regenerated"
    return response


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """Readiness: the cache folder is writable with space to spare, and FathomNet answers."""
    checks = crop_service().readiness()
    ready = all(check["ok"] for check in checks.values())
    return {"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503


@bp.after_app_request
def no_sniffing(response):
    """Browsers must take our content types at their word (a crop is never run as HTML)."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
