"""IIIF over FathomNet images: the Image API 3.0 (blueprint "iiif") and the Presentation API 3.0
(blueprint "iiif_presentation"), which viewers (OpenSeadragon, Mirador) talk to.

An image's identifier is its FathomNet uuid. Its info.json costs one metadata lookup; an image
request is read by cropper/iiif/image.py into a region, a size, a rotation and a quality, made like any crop
(same sources, same locks, same store, family "iiif") and stored under its explicit name, which is
what nginx serves directly the next time. An image's manifest (with its boxes as annotations) is built by
cropper/iiif/presentation.py from the image's remembered record, and a concept's collection from a page
of FathomNet's boxes. CORS is open to every origin here, as the specifications require.
"""

from flask import Blueprint, jsonify, redirect, request
from marshmallow import ValidationError

from ..crops import Crop
from ..errors import ImageNotFoundError, InvalidRequestError
from ..iiif import image as iiif
from ..iiif import presentation
from .crops import base_url, crop_service, path_uuid, schema, send_crop, settings, store_failure
from .hooks import answers_crops

bp = Blueprint("iiif", __name__, url_prefix=iiif.PATH)
presentation_bp = Blueprint("iiif_presentation", __name__)

PROFILE_LINK = iiif.PROFILE_LINK
LD_JSON = f'application/ld+json;profile="{iiif.CONTEXT}"'


def base_uri(uuid):
    return iiif.base_uri(base_url(), uuid)


def image_of(identifier):
    """(uuid, image metadata) of an identifier: a FathomNet image's uuid."""
    uuid = path_uuid(identifier, ImageNotFoundError, "image")
    return uuid, crop_service().sources.info(uuid)


def limits():
    return {"max_width": settings().max_crop_side, "max_height": settings().max_crop_side,
            "max_area": settings().max_crop_pixels}


@bp.get("/<identifier>")
def base(identifier):
    """The base URI leads to the image's information (303, as the spec recommends)."""
    uuid = path_uuid(identifier, ImageNotFoundError, "image")
    return redirect(f"{base_uri(uuid)}/info.json", 303)


@bp.get("/<identifier>/info.json")
def info(identifier):
    """The image information document: size, limits, sizes and tiles for deep zoom."""
    uuid, image = image_of(identifier)
    # profileLinkHeader only: every image answer has that Link, nginx's from disk too. The canonical Link
    # is sent by the app alone (a canonical path needs the image's size for "full" and "max", which nginx
    # does not know), so it is not promised: tiles fetched again come from nginx without it.
    document = iiif.info_json(base_uri(uuid), image.width, image.height, tile_size=settings().iiif_tile_size,
                              extra_features=("profileLinkHeader",), **limits())
    response = jsonify(document)
    # JSON-LD unless the client prefers plain JSON (5.1).
    wanted = request.accept_mimetypes.best_match(["application/ld+json", "application/json"], "application/ld+json")
    if wanted == "application/ld+json":
        response.headers["Content-Type"] = LD_JSON
    response.headers["Link"] = PROFILE_LINK
    return response


@bp.get("/<identifier>/<region>/<size>/<rotation>/<quality_format>")
@answers_crops
def image(identifier, region, size, rotation, quality_format):
    """An image request: made once, stored, and served (by nginx next time, when asked by its explicit name)."""
    uuid, image_meta = image_of(identifier)
    asked = iiif.parse_image_request(region, size, rotation, quality_format, image_meta.width, image_meta.height,
                                     **limits())
    crop = Crop(uuid, asked.region, asked.format, asked.size, mirror=asked.mirror, rotation=asked.rotation,
                colour=asked.colour, family="iiif")
    opened, cached = crop_service().open(crop, store_failure())
    response = send_crop(opened, crop.media_type, "hit" if cached else "miss")
    response.headers["Link"] = f'<{base_uri(uuid)}/{asked.canonical}>;rel="canonical", {PROFILE_LINK}'
    return response


# -- the Presentation API


def links():
    return presentation.Links(base_url(), settings().fathomnet_api_url)


@presentation_bp.get(f"{presentation.MANIFESTS}/<identifier>")
def manifest(identifier):
    """An image's manifest: one canvas, deep-zoomed from this service's tiles, with its boxes as annotations."""
    uuid = path_uuid(identifier, ImageNotFoundError, "image")
    return presentation_answer(presentation.manifest(crop_service().sources.info_with_boxes(uuid), links()))


@presentation_bp.get(presentation.CONCEPT_COLLECTION)
def concept_collection():
    """A page of FathomNet's boxes of a concept, as a collection of their images' manifests."""
    try:
        asked = schema("collection").load(request.args.to_dict())
    except ValidationError as error:
        raise InvalidRequestError.from_validation_error(error, "The query is not valid.") from None
    size = settings().concept_page_max
    first = (asked["page"] - 1) * size
    boxes, total, next_offset = crop_service().sources.concept_page(asked["name"], size, first)
    return presentation_answer(presentation.concept_collection(
        asked["name"], asked["page"], first, boxes, total, next_offset is not None, links()))


def presentation_answer(document):
    """A manifest or collection as JSON-LD. Its URLs are PUBLIC_URL's, or this request's own scheme and host:
    only the first may be kept by nginx (and other shared caches) for every client."""
    response = jsonify(document)
    response.headers["Content-Type"] = presentation.MEDIA_TYPE
    response.cache_control.max_age = settings().iiif_manifest_max_age
    if settings().public_url:
        response.cache_control.public = True
    else:
        response.cache_control.private = True
    return response
