"""The operator endpoints (blueprint "admin", only when ADMIN_TOKEN is set): purges, made on every host.

    DELETE /admin/images/<uuid>          every crop of the image, its tiles, pixels and metadata
    DELETE /admin/boxes/<uuid>           what is remembered of a box, so FathomNet is asked again
    DELETE /admin/concepts?name=<name>   what is remembered of every box of a concept

Each answers what it removed, per host (cropper/purges.py). They demand `Authorization: Bearer
<ADMIN_TOKEN>` and are open to the ADMIN_ALLOW networks only: nginx refuses the others first, and
the app again (when Gunicorn answers alone).
"""

import hmac

from flask import Blueprint, current_app, request

from ..errors import BoxNotFoundError, ForbiddenError, ImageNotFoundError, InvalidRequestError, UnauthorizedError
from ..purges import MAX_CONCEPT
from .crops import path_uuid, settings
from .hooks import client_in

bp = Blueprint("admin", __name__, url_prefix="/admin")


def purges():
    return current_app.extensions["cropper.purges"]


@bp.before_request
def operators_only():
    if not client_in(settings().admin_allow):
        raise ForbiddenError("The operator endpoints are only for the networks ADMIN_ALLOW names.")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings().admin_token.encode()):
        raise UnauthorizedError("The operator endpoints need the header Authorization: Bearer <ADMIN_TOKEN>.")


@bp.delete("/images/<uuid>")
def purge_image(uuid):
    """Purge an image everywhere: its crops in every size and format, its IIIF tiles, its pixels and metadata."""
    return purges().image(path_uuid(uuid, ImageNotFoundError, "image"))


@bp.delete("/boxes/<box_uuid>")
def purge_box(box_uuid):
    """Purge what every host remembers of a box, so FathomNet is asked for it again."""
    return purges().box(path_uuid(box_uuid, BoxNotFoundError, "bounding box"))


@bp.delete("/concepts")
def purge_concept():
    """Purge what every host remembers of the boxes of a concept: /admin/concepts?name=<name>."""
    name = request.args.get("name", "")
    if not 0 < len(name) <= MAX_CONCEPT:
        raise InvalidRequestError(f"Name the concept: /admin/concepts?name=<name>, 1 to {MAX_CONCEPT} characters.")
    return purges().concept(name)
