"""The HTTP layer: the Flask app, its blueprints, hooks and error handlers. The only place Flask is imported."""

import functools

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .. import wiring
from ..config import Settings
from ..schemas import BatchSchema, ConceptCollectionSchema, ConceptSchema, CropSchema, OptionsSchema
from . import admin, crops, datasets, iiif, metrics, openapi
from .bodies import JSONRequest, parse_json
from .errors import register_error_handlers
from .hooks import register_cors, register_headers, register_metrics, register_staleness


def create_app(settings=None, source=None, service=None):
    """Build the app from settings (default: `.env` and the environment); starts nothing, writes nothing.

    source: the image source (an upstream.ImageSource) instead of FathomNet; service: a whole CropService.
    """
    settings = settings or Settings.from_env()
    app = Flask("cropper")  # the package's folder: its static/ holds the page
    app.request_class = JSONRequest
    app.json.sort_keys = False  # keep answers in the documented order
    app.config.update(SETTINGS=settings, MAX_CONTENT_LENGTH=settings.max_body_bytes)
    register_proxy_fix(app, settings)
    register_services(app, settings, service or wiring.crop_service(settings, source=source))
    register_cors(app, settings)
    register_error_handlers(app)
    register_metrics(app)
    register_headers(app, settings)
    register_staleness(app)
    for blueprint in (crops.bp, iiif.bp, iiif.presentation_bp, openapi.bp, metrics.bp, datasets.bp):
        app.register_blueprint(blueprint)
    if settings.admin_token:  # without it the operator endpoints do not exist: 404, whatever the method
        app.register_blueprint(admin.bp)
    return app


def register_proxy_fix(app, settings):
    """Trust X-Forwarded-For, -Proto and -Host, the ones nginx sets, from as many proxies as sit in front.

    Not -Port or -Prefix: nginx clears them, and a deployment under another address or path says so
    with PUBLIC_URL. Trusted, a client's own would put its host in every URL the answers hand out.
    """
    n = settings.trusted_proxies
    if n > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=0, x_prefix=0)


def register_services(app, settings, service):
    """The crop service, its purges, data-set jobs, and the schemas requests are read with."""
    app.extensions["cropper"] = service
    app.extensions["cropper.purges"] = wiring.purges(settings, service)
    app.extensions["cropper.datasets"] = wiring.datasets(settings, service)
    limits = {"max_side": settings.max_crop_side, "max_pixels": settings.max_crop_pixels,
              "default_format": settings.default_format}
    crop_schema = app.extensions["cropper.schema.crop"] = CropSchema(**limits)
    # Parsing and validating a crop body is most of a cache hit's cost: identical bodies are read once.
    app.extensions["cropper.crop_memo"] = functools.lru_cache(maxsize=4096)(
        lambda data: crop_schema.load(parse_json(data)))
    app.extensions["cropper.schema.concept"] = ConceptSchema(**limits)
    app.extensions["cropper.schema.batch"] = BatchSchema(**limits)
    app.extensions["cropper.schema.options"] = OptionsSchema(**limits)
    app.extensions["cropper.schema.collection"] = ConceptCollectionSchema()
