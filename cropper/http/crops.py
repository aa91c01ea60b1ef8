"""The crop API's routes (blueprint "cropper"): crops, batches, concept pages, annotations, crop files,
the cluster's internal calls, the pages (the web page and its Mirador viewer), and health. Each reads
the request, makes one call to the service, and writes the answer.
"""

import functools
import hmac
import json
import math

from flask import Blueprint, current_app, jsonify, redirect, request, send_file
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from .. import batch, cluster, crops, spreadsheets
from ..crops import CropRequest, canonical_uuid
from ..datasets.worker import HOUSEKEEPING_SECONDS as DATASET_HEARTBEAT
from ..errors import (
    BoxNotFoundError,
    BoxOutsideImageError,
    CropNotFoundError,
    CropperError,
    ImageNotFoundError,
    InvalidRequestError,
    NotFoundError,
    body_of,
)
from ..purges import Purge
from ..schemas import batch_items
from .hooks import answers_crops

bp = Blueprint("cropper", __name__)

ONE_YEAR = 365 * 24 * 3600


def echoed(value):
    """A batch item's field as its error answer repeats it: only short text and modest finite numbers."""
    if isinstance(value, str) and len(value) <= 64:
        return value if value.isprintable() else None  # no lone surrogate ("\ud800") or control characters
    if isinstance(value, bool):
        return None
    # An int is compared as an int: a 400-digit one cannot become a float (math.isfinite would raise).
    if isinstance(value, int) and abs(value) < 10**15:
        return value
    if isinstance(value, float) and math.isfinite(value) and abs(value) < 10**15:
        return value
    return None


def settings():
    return current_app.config["SETTINGS"]


def crop_service():
    return current_app.extensions["cropper"]


def schema(name):
    """One of the app's request schemas: crop, concept."""
    return current_app.extensions[f"cropper.schema.{name}"]


MEMO_BODY_BYTES = 2048  # a single crop's body; larger ones are validated each time, not remembered


def crop_request_of(data):
    """The CropRequest of a crop body; the same bytes are parsed and validated once (tools repeat requests)."""
    memo = current_app.extensions["cropper.crop_memo"]
    return memo(data) if len(data) <= MEMO_BODY_BYTES else memo.__wrapped__(data)


def base_url():
    """The service's base URL: PUBLIC_URL, else the request's scheme and host (after ProxyFix)."""
    return settings().public_url.rstrip("/") or f"{request.scheme}://{request.host}{request.root_path}"


def public_url(crop):
    """The absolute URL of a crop."""
    return f"{base_url()}{crop.url_path}"


def crop_answer(resolved, cached, base=None):
    """What a client hears of a crop: its URL, what was asked, what was cut, and the output."""
    crop = resolved.crop
    width, height = crop.output_size
    answer = {"url": f"{base or base_url()}{crop.url_path}", "uuid": crop.uuid, "box": list(resolved.box),
              "region": list(crop.region), "width": width, "height": height, "format": crop.format,
              "cached": cached}
    if resolved.annotation:
        annotation = resolved.annotation
        answer.update(box_uuid=annotation.uuid, concept=annotation.concept, review=annotation.review)
    return answer


def asked_of(crop_request):
    """What a batch item's failure repeats of a valid item: what it asked for."""
    fields = {"uuid": crop_request.uuid, "box": list(crop_request.box) if crop_request.box else None}
    if crop_request.box_uuid:
        fields["box_uuid"] = crop_request.box_uuid
    return fields


@functools.lru_cache(maxsize=4096)
def crop_answer_json(base, resolved, cached):
    """crop_answer as jsonify writes it (compact, key order kept), remembered: tools repeat their requests."""
    return json.dumps(crop_answer(resolved, cached, base), separators=(",", ":")) + "\n"


@bp.post("/cropper")
@bp.post("/cropper/")
@answers_crops
def create_crop():
    """Crop a FathomNet image (or annotation) and answer with the public URL of the stored file."""
    made = crop_service().crop(crop_request_of(request.json_bytes()))
    response = current_app.response_class(crop_answer_json(base_url(), made.resolved, made.cached),
                                          mimetype="application/json")
    response.headers["X-Cropper-Cache"] = "hit" if made.cached else "miss"
    return response


@bp.post("/cropper-list")
@bp.post("/cropper-list/")
def create_crops():
    """Crop many boxes at once: one answer per item, in order; one bad item never fails the rest."""
    raw = batch_items(request.json_body(), settings().batch_max_crops, schema("batch"))
    return jsonify(answers([read_item(item) for item in raw]))


def answers(read, annotations=None):
    """The answer to each (Item, what its failure repeats), in order, every valid item's crop made in one go."""
    items = [item for item, _ in read]
    outcomes = batch.make_all(crop_service(), items, settings().batch_concurrency, annotations)
    base = base_url()
    return [crop_answer(outcome.resolved, outcome.cached, base) if outcome.error is None
            else {**asked, **body_of(outcome.error)} for (_, asked), outcome in zip(read, outcomes)]


def read_item(item):
    """A batch item as (batch.Item, what its failure repeats): its CropRequest, or why it is not valid."""
    try:
        crop_request = schema("crop").load(item)
    except ValidationError as error:
        fields = item if isinstance(item, dict) else {}
        box = [echoed(fields.get(name)) for name in ("x1", "y1", "x2", "y2")]
        uuid = echoed(fields.get("uuid"))
        uuid = uuid if isinstance(uuid, str) else None  # a uuid is echoed only as the short string it was
        invalid = InvalidRequestError.from_validation_error(error, "This crop is not valid.")
        return batch.Item(error=invalid), {"uuid": uuid, "box": box}  # only plain JSON echoed
    return batch.Item(crop_request), asked_of(crop_request)


CSV_COLUMNS = ("url", "label", "box_uuid", "image_uuid", "x1", "y1", "x2", "y2")


@bp.post("/cropper-concept")
@bp.post("/cropper-concept/")
def crop_concept():
    """Crop a page of FathomNet's annotations of one concept, for a data set; JSON, or CSV on request."""
    concept_schema = schema("concept")
    data = concept_schema.load(request.json_body())
    page_max = settings().concept_page_max
    limit, offset = data.get("limit", page_max), data.get("offset", 0)
    if limit > page_max:
        raise ValidationError({"limit": [f"A page is at most {page_max} boxes."]})
    boxes, total, next_offset = crop_service().sources.concept_page(data["concept"], limit, offset)
    options = concept_schema.options(data)
    wanted = [CropRequest(box_uuid=box.uuid, **options) for box in boxes]
    made = answers([(batch.Item(crop_request), asked_of(crop_request)) for crop_request in wanted],
                   annotations={box.uuid: box for box in boxes})
    if request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv":
        return csv_answer(made)
    return {"crops": made, "next_offset": next_offset, "total": total}


def csv_answer(answered):
    """The crops made, one row each (failed ones are in the JSON answer, and counted in a header)."""
    made = [a for a in answered if "url" in a]
    rows = ([a["url"], a["concept"], a["box_uuid"], a["uuid"], *a["region"]] for a in made)
    response = current_app.response_class(spreadsheets.csv_text(CSV_COLUMNS, rows), mimetype="text/csv")
    response.headers["X-Cropper-Failed"] = str(len(answered) - len(made))
    return response


@bp.get("/images/<uuid>/boxes")
def image_boxes(uuid):
    """An image's FathomNet annotations, each with the request (and the URL) of its crop."""
    uuid = path_uuid(uuid, ImageNotFoundError, "image")
    info = crop_service().sources.info_with_boxes(uuid)
    default, base = schema("crop").options({}), base_url()
    listed = []
    for box in info.boxes or ():  # None: a record kept before boxes were, which FathomNet could not confirm now
        try:
            resolved = crop_service().resolve(CropRequest(box_uuid=box.uuid, **default), info, box)
        except CropperError:  # a box entirely outside its image: listed, with nothing to crop
            resolved = None
        listed.append({"box_uuid": box.uuid, "concept": box.concept, "review": box.review, "box": list(box.box),
                       "region": list(resolved.crop.region) if resolved else None,
                       "request": {"box_uuid": box.uuid},
                       "url": f"{base}{resolved.crop.url_path}" if resolved else None})
    return {"uuid": uuid, "width": info.width, "height": info.height, "boxes": listed}


@bp.get("/boxes/<box_uuid>.<extension>")
def box_crop(box_uuid, extension):
    """Redirect to the crop of an annotation (options as query parameters), so an <img> can show it by uuid."""
    box_uuid = path_uuid(box_uuid, BoxNotFoundError, "bounding box")
    query = {**request.args.to_dict(), "box_uuid": box_uuid, "format": extension}
    resolved = crop_service().resolve(schema("crop").load(query))
    response = redirect(public_url(resolved.crop), 302)
    # An annotation may be edited in FathomNet, and its crop's URL then changes: kept no longer than we keep it.
    response.cache_control.max_age = int(settings().metadata_ttl)
    return response


def path_uuid(text, not_found, what):
    try:
        return canonical_uuid(text)
    except ValueError:
        raise not_found(f"{text[:64]!r} is not the uuid of a FathomNet {what}.") from None


def crop_for_path(relpath):
    """The Crop a path names, within the same limits as a POST; only canonical paths count."""
    crop = crops.parse_relpath(relpath)
    if crop is None or crops.over_limits(crop, settings().max_crop_side, settings().max_crop_pixels):
        raise CropNotFoundError("There is no crop at this path.")
    return crop


# What this host's nginx found when it read the shared store before handing a crop's GET over
# (cropper-proxy.conf): the status it got, by nginx's own numbers.
STORE_STATUS_HEADER = "X-Cropper-Store-Status"
STORE_FAILURES = {"504": "this host's nginx got no answer from it in time",
                  "502": "this host's nginx could not connect to it"}


def store_failure():
    """Why this host's nginx could not read the shared store just before, or None.

    nginx always sets the header (empty unless it tried the store), so a client's own never gets
    here through it; believed only behind nginx (TRUSTED_PROXIES), as X-Forwarded-For is.
    """
    if not settings().trusted_proxies:
        return None
    return STORE_FAILURES.get(request.headers.get(STORE_STATUS_HEADER, "").rpartition(" ")[2])


@bp.get("/crops/<path:relpath>")
@answers_crops
def get_crop(relpath):
    """Serve a crop, making it again first if it is gone (links never break)."""
    crop = crop_for_path(relpath)
    try:
        opened, cached = crop_service().open(crop, store_failure())
    except BoxOutsideImageError:
        raise CropNotFoundError("There is no crop at this path.") from None
    return send_crop(opened, crop.media_type, "hit" if cached else "regenerated")


def nginx_etag(opened):
    """The ETag nginx gives the same file, so a client revalidates whoever served it: from disk "<mtime>-<size>"
    in hex; from the shared store the store's own, which nginx passes on."""
    return opened.etag or f"{int(opened.modified):x}-{opened.size:x}"


def send_crop(opened, media_type, cache_status):
    """A stored crop's bytes (a storage.OpenedCrop), cached by browsers for good (its bytes never change)."""
    response = send_file(opened.file, mimetype=media_type, max_age=ONE_YEAR, conditional=False,
                         etag=nginx_etag(opened), last_modified=opened.modified)
    # send_file knows no length of an open file: without it the answer is chunked, a HEAD has no
    # Content-Length and a Range is answered whole. The length is known: answer as nginx does from disk.
    response.content_length = opened.size
    try:
        response = response.make_conditional(request.environ, accept_ranges=True, complete_length=opened.size)
    except HTTPException:  # 416: a range past the end
        opened.file.close()
        raise
    response.cache_control.public = True
    response.cache_control.immutable = True
    response.headers["X-Cropper-Cache"] = cache_status
    return response


def from_the_cluster():
    """Refuse a cluster-internal call that does not carry CLUSTER_KEY, as a URL that is not there."""
    if not settings().cluster_key or not hmac.compare_digest(
            request.headers.get(cluster.KEY_HEADER, "").encode(), settings().cluster_key.encode()):
        if settings().cluster_key and request.headers.get(cluster.KEY_HEADER):  # a host of another key, or a guess
            cluster.log_refused_key(request.remote_addr, request.headers.get(cluster.FROM_HEADER, ""))
        raise NotFoundError("The requested URL was not found on the server.")  # as if it were not there


@bp.post("/_cluster/make")
def make_for_another_host():
    """Another host of the cluster asks this one, its images' owner, to make crops: {"paths": [store paths]}.

    Answers one {"cached"} or error object per path, in order; a path no request would make is a 404 item.
    """
    from_the_cluster()
    body = request.json_body()
    paths = body.get("paths") if isinstance(body, dict) else None
    if not isinstance(paths, list) or len(paths) > settings().batch_max_crops:
        raise InvalidRequestError("The body must be {\"paths\": [...]}, with at most BATCH_MAX_CROPS paths.")
    wanted = cluster.crops_of_paths(paths)
    made = iter(batch.get_or_create_many(crop_service(), [crop for crop in wanted if crop],
                                         settings().batch_concurrency, here=True))
    replies = []
    for crop in wanted:
        result = next(made) if crop else batch.CropFailure(None, CropNotFoundError("There is no crop at this path."))
        if isinstance(result, batch.CropFailure):
            replies.append({"status": result.error.status, "retry_after": result.error.retry_after,
                            **body_of(result.error)})
        else:
            replies.append({"cached": result.cached})
    return jsonify(replies)


@bp.post("/_cluster/purge")
def purge_for_another_host():
    """Another host of the cluster made a purge (a purges.Purge as JSON): apply it here, answer what went."""
    from_the_cluster()
    try:
        purge = Purge.of(request.json_body())
    except ValueError as error:
        raise InvalidRequestError(f"This is not a purge: {error}.") from None
    return current_app.extensions["cropper.purges"].apply(purge)


@bp.get("/")
def page():
    """The web page (nginx serves it itself; this is for Gunicorn alone)."""
    return current_app.send_static_file("index.html")


@bp.get("/mirador")
def mirador():
    """Mirador on an image's manifest, ?image=<uuid> (nginx serves it itself; this is for Gunicorn alone)."""
    return current_app.send_static_file("mirador.html")


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers."""
    return {"status": "ok"}


# A data-set worker that is down is reported, but keeps no crop from being served: it does not make a host unready.
NOT_GATING = ("datasets",)


@bp.get("/readyz")
def readyz():
    """Readiness: the cache folder is writable with space to spare, FathomNet answers, (several hosts) the
    shared store answers and the other hosts take this one's CLUSTER_KEY (and how the data-set worker does)."""
    checks = crop_service().readiness()
    if settings().dataset_worker:
        problem = current_app.extensions["cropper.datasets"].readiness_problem(3 * DATASET_HEARTBEAT)
        checks["datasets"] = {"ok": problem is None, **({"error": problem} if problem else {})}
    ready = all(check["ok"] for name, check in checks.items() if name not in NOT_GATING)
    return {"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503
