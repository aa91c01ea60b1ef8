"""What happens around every request: metrics, CORS, the headers every answer carries, and whether its client may."""

import ipaddress
import time

from flask import current_app, g, request
from flask_cors import CORS

from .. import metrics, pages, sources


def client_in(networks):
    """Whether this request's client (as the proxy in front reported it) is on one of networks."""
    client = ipaddress.ip_address(request.remote_addr or "0.0.0.0")
    return any(client in ipaddress.ip_network(network) for network in networks)


def answers_crops(view):
    """Mark a view whose answers are crops: its outcomes (hit, miss, regenerated, failed) are counted."""
    view.answers_crops = True
    return view


def register_metrics(app):
    """Count every request by endpoint and status, and the crops the views marked answers_crops make or find."""

    @app.before_request
    def start_clock():
        g.metrics_started = time.perf_counter()

    @app.after_request
    def count(response):
        endpoint = request.endpoint or "unknown"
        started = g.get("metrics_started")
        metrics.answered(endpoint, response.status_code, time.perf_counter() - started if started else None)
        view = current_app.view_functions.get(request.endpoint)
        if getattr(view, "answers_crops", False) and request.method != "OPTIONS":  # a CORS preflight asks no crop
            if response.status_code < 400:
                metrics.crop_outcome(response.headers.get("X-Cropper-Cache", "hit"))
            else:
                metrics.crop_outcome("failed", g.get("error_code", "unknown"))
        return response


def register_cors(app, settings):
    """Let browser tools on the configured origins call the API and draw crops on a canvas; IIIF for everyone."""
    CORS(
        app, resources={r"/cropper*": {}, r"/crops/*": {}, r"/images/*": {}, r"/boxes/*": {}, r"/datasets*": {},
                        r"/concepts": {},
                        r"/iiif/*": {"origins": "*", "send_wildcard": True}},  # IIIF: every viewer, as "*"
        origins=list(settings.cors_origins),
        methods=["GET", "HEAD", "POST", "DELETE", "OPTIONS"], expose_headers=["X-Cropper-Cache", "X-Cropper-Stale"],
        max_age=86400,
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


def register_headers(app, settings):
    # Each page's content security policy (pages.py), as nginx sends it for the page it serves itself.
    page = pages.page_policy(settings.public_url)
    policies = {"cropper.page": page, "static": page, "openapi.docs": pages.docs_policy(),
                "cropper.mirador": pages.mirador_policy(settings.public_url)}

    @app.after_request
    def no_sniffing(response):
        """Browsers must take our content types at their word (a crop is never run as HTML); pages get their policy."""
        response.headers["X-Content-Type-Options"] = "nosniff"
        policy = policies.get(request.endpoint)
        if policy:
            response.headers["Content-Security-Policy"] = policy
        return response


def register_staleness(app):
    """An answer that used metadata remembered from FathomNet while it could not be asked says so."""

    @app.after_request
    def say_stale(response):
        if sources.stale_noted():
            response.headers["X-Cropper-Stale"] = "1"
        return response
