"""FathomNet Cropper: crops of FathomNet images, cached on disk, served by URL."""

import logging

from flask import Flask
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import Settings
from .errors import register_error_handlers
from .eviction import Pruner
from .routes import JSONRequest, bp
from .schemas import CropSchema
from .service import CropService


def create_app(settings=None):
    """Build the app from settings (default: `.env` and the environment)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.request_class = JSONRequest
    app.json.sort_keys = False  # keep answers in the documented order
    app.config.update(SETTINGS=settings, MAX_CONTENT_LENGTH=settings.max_body_bytes)
    register_proxy_fix(app, settings)
    register_services(app, settings)
    register_cors(app, settings)
    register_error_handlers(app)
    app.register_blueprint(bp)
    register_logging()
    return app


def register_logging():
    """Send the service's own lines (warnings, prune reports) to stderr, beside Gunicorn's."""
    log = logging.getLogger("cropper")
    log.setLevel(logging.INFO)
    if not log.handlers and not logging.getLogger().handlers:  # a host that set up logging keeps its own
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
                                               "%Y-%m-%d %H:%M:%S %z"))
        log.addHandler(handler)


def register_proxy_fix(app, settings):
    """Trust X-Forwarded-* only from as many proxies as we are told sit in front."""
    n = settings.trusted_proxies
    if n > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)


def register_services(app, settings):
    service = CropService(settings)
    app.extensions["cropper"] = service
    Pruner(service.cache, settings).run_in_background()
    app.extensions["cropper.schema"] = CropSchema(
        max_side=settings.max_crop_side, max_pixels=settings.max_crop_pixels, default_format=settings.default_format
    )


def register_cors(app, settings):
    """Let browser tools on the configured origins call the API and draw crops on a canvas."""
    CORS(
        app, resources={r"/cropper*": {}, r"/crops/*": {}}, origins=list(settings.cors_origins),
        methods=["GET", "HEAD", "POST", "OPTIONS"], expose_headers=["X-Cropper-Cache"], max_age=86400,
    )
