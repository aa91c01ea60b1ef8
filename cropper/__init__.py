"""FathomNet Cropper: crops of FathomNet images, cached on disk, served by URL."""

import functools

from flask import Flask, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from . import iiif_routes, metrics, openapi
from .cache import file_stores
from .cluster import cluster_of
from .config import Settings
from .errors import register_error_handlers
from .eviction import Pruner
from .fathomnet import FathomNetClient
from .routes import JSONRequest, bp, parse_json
from .schemas import BatchSchema, ConceptSchema, CropSchema
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
    app.register_blueprint(openapi.bp)
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
    crop_schema = app.extensions["cropper.schema.crop"] = CropSchema(**limits)
    # Parsing and validating a crop body is most of a cache hit's cost: identical bodies are read once.
    app.extensions["cropper.crop_memo"] = functools.lru_cache(maxsize=4096)(
        lambda data: crop_schema.load(parse_json(data)))
    app.extensions["cropper.schema.concept"] = ConceptSchema(**limits)
    app.extensions["cropper.schema.batch"] = BatchSchema(**limits)


def crop_service(settings):
    """The crop service over the stores, the FathomNet client, the evictor and the cluster the settings name."""
    crop_store, source_store = stores(settings)
    pruner = Pruner(crop_store, source_store, settings)
    return CropService(settings, crop_store, source_store, FathomNetClient(settings), pruner, cluster_of(settings))


def stores(settings):
    """The crop store and the source store the settings name: crops in CACHE_DIR or in the S3 bucket."""
    crop_store, source_store = file_stores(settings.cache_dir, settings.lock_timeout)
    if settings.cache_backend == "s3":
        from .s3store import S3CropStore  # boto3 is imported only by hosts that use it

        crop_store = S3CropStore(settings.s3_bucket, settings.s3_endpoint_url or None, source_store.locks,
                                 region=settings.s3_region, connect_timeout=settings.connect_timeout,
                                 read_timeout=settings.read_timeout, ready_timeout=settings.ready_timeout)
    return crop_store, source_store


def register_cors(app, settings):
    """Let browser tools on the configured origins call the API and draw crops on a canvas; IIIF for everyone."""
    CORS(
        app, resources={r"/cropper*": {}, r"/crops/*": {}, r"/images/*": {}, r"/boxes/*": {},
                        r"/iiif/*": {"origins": "*", "send_wildcard": True}},  # IIIF: every viewer, as "*"
        origins=list(settings.cors_origins),
        methods=["GET", "HEAD", "POST", "OPTIONS"], expose_headers=["X-Cropper-Cache"], max_age=86400,
    )
    # A POST without an Origin is no browser's cross-origin call, and its answer is never cached for
    # one: skip flask-cors's work there (a tenth of a cache hit's time). GETs keep it, as caches may
    # keep their answers for browsers.
    cors_after_request = app.after_request_funcs[None].pop()

    @app.after_request
    def cors_when_a_browser_asks(response):
        if request.method == "POST" and "Origin" not in request.headers:
            return response
        return cors_after_request(response)
