"""HTTP routes: the only module that touches the request."""

from flask import Blueprint, Request, current_app, jsonify, request, send_file
from marshmallow import ValidationError
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from .cache import crop_relpath, parse_crop_relpath
from .errors import BoxOutsideImageError, CropNotFoundError, error_body
from .imaging import CONTENT_TYPES
from .schemas import CropRequest, batch_items
from .service import CropFailure

bp = Blueprint("cropper", __name__)

ONE_YEAR = 365 * 24 * 3600


class JSONRequest(Request):
    """A request whose JSON errors tell the client what to fix."""

    def on_json_loading_failed(self, error):
        if error is None:
            raise UnsupportedMediaType("Send the body as JSON, with Content-Type: application/json.")
        raise BadRequest(f"The body is not valid JSON: {error}")


def settings():
    return current_app.config["SETTINGS"]


def crop_service():
    return current_app.extensions["cropper"]


def crop_schema():
    return current_app.extensions["cropper.schema"]


def request_for_path(relpath):
    """The CropRequest a crop path names, held to the same limits as a POST; only canonical paths count."""
    fields = parse_crop_relpath(relpath)
    try:
        req = crop_schema().load(fields or {})
    except ValidationError:
        req = None
    if req is None or crop_relpath(req) != relpath:
        raise CropNotFoundError("There is no crop at this path.")
    return req


def public_url(relpath):
    """The absolute URL of a crop, from PUBLIC_URL or else from the request (after ProxyFix)."""
    base = settings().public_url or request.url_root
    return f"{base.rstrip('/')}/crops/{relpath}"


@bp.post("/cropper")
@bp.post("/cropper/")
def create_crop():
    """Crop a FathomNet image and answer with the public URL of the cached file."""
    req = crop_schema().load(request.get_json())
    result = crop_service().get_or_create(req)
    response = jsonify(result.to_json(public_url(result.relpath)))
    response.headers["X-Cropper-Cache"] = "hit" if result.cached else "miss"
    return response


@bp.post("/cropper-list")
@bp.post("/cropper-list/")
def create_crops():
    """Crop many boxes at once: one answer per item, in order; one bad item never fails the rest."""
    items = batch_items(request.get_json(), settings().batch_max_crops)
    loaded = [load_item(item) for item in items]
    results = iter(crop_service().get_or_create_many([x for x in loaded if isinstance(x, CropRequest)]))
    return jsonify([batch_answer(next(results)) if isinstance(x, CropRequest) else x for x in loaded])


def load_item(item):
    """A batch item as a CropRequest, or its error answer when it is not valid."""
    try:
        return crop_schema().load(item)
    except ValidationError as error:
        fields = item if isinstance(item, dict) else {}
        box = [fields.get(name) for name in ("x1", "y1", "x2", "y2")]
        return failed_item(fields.get("uuid"), box, "validation_error", "This crop is not valid.", error.messages)


def batch_answer(result):
    if isinstance(result, CropFailure):
        req, error = result.request, result.error
        return failed_item(req.uuid, list(req.box), error.code, error.message, error.details)
    return result.to_json(public_url(result.relpath))


def failed_item(uuid, box, code, message, details):
    return {"uuid": uuid, "box": box, **error_body(code, message, details)}


@bp.get("/crops/<path:relpath>")
def get_crop(relpath):
    """Serve a crop file, making it again first if it is gone (links never break)."""
    try:
        result = crop_service().get_or_create(request_for_path(relpath))
    except BoxOutsideImageError:
        raise CropNotFoundError("There is no crop at this path.") from None
    req = result.request
    response = send_file(result.path, mimetype=CONTENT_TYPES[req.format], max_age=ONE_YEAR, conditional=True)
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
