"""FathomNet Cropper: crops of FathomNet images, cached on disk, served by URL."""

from flask import Flask
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from . import iiif_routes, metrics
from .cache import file_stores
from .config import Settings
from .errors import register_error_handlers
from .eviction import Pruner
from .fathomnet import FathomNetClient
from .routes import JSONRequest, bp
from .schemas import ConceptSchema, CropSchema
from .service import CropService


def create_app(settings=None):
    """Build the app from settings (default: `.env` and the environment); starts nothing, writes nothing."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.request_class = JSONRequest
    app.json.sort_keys = False  # keep answers in the documented order
    app.config.update(SETTINGS=settings, MAX_CONTENT_LENGTH=settings.max_body_bytes)
    register_proxy_fix(app, settings)
    register_services(app, settings)
    register_cors(app, settings)
    register_error_handlers(app)
    metrics.register(app)
    app.register_blueprint(bp)
    app.register_blueprint(iiif_routes.bp)
    return app


def register_proxy_fix(app, settings):
    """Trust X-Forwarded-* only from as many proxies as we are told sit in front."""
    n = settings.trusted_proxies
    if n > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)


def register_services(app, settings):
    """The crop service over its stores and FathomNet client, and the schema requests are read with."""
    app.extensions["cropper"] = crop_service(settings)
    limits = {"max_side": settings.max_crop_side, "max_pixels": settings.max_crop_pixels,
              "default_format": settings.default_format}
    app.extensions["cropper.schema.crop"] = CropSchema(**limits)
    app.extensions["cropper.schema.concept"] = ConceptSchema(**limits)


def crop_service(settings):
    """The crop service over the stores, the FathomNet client and the evictor the settings name."""
    crop_store, source_store = stores(settings)
    pruner = Pruner(crop_store, source_store, settings)
    return CropService(settings, crop_store, source_store, FathomNetClient(settings), pruner)


def stores(settings):
    """The crop store and the source store the settings name."""
    return file_stores(settings.cache_dir, settings.lock_timeout)


def register_cors(app, settings):
    """Let browser tools on the configured origins call the API and draw crops on a canvas; IIIF for everyone."""
    CORS(
        app, resources={r"/cropper*": {}, r"/crops/*": {}, r"/images/*": {}, r"/boxes/*": {},
                        r"/iiif/*": {"origins": "*", "send_wildcard": True}},  # IIIF: every viewer, as "*"
        origins=list(settings.cors_origins),
        methods=["GET", "HEAD", "POST", "OPTIONS"], expose_headers=["X-Cropper-Cache"], max_age=86400,
    )
