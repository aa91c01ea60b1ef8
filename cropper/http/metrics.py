"""GET /metrics: the service's metrics summed over every Gunicorn worker, for the monitoring networks only."""

import ipaddress
import os

from flask import Blueprint, current_app, request

from .. import metrics
from ..errors import ForbiddenError

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape():
    """The metrics in Prometheus' text format, for the networks METRICS_ALLOW names only."""
    allowed = current_app.config["SETTINGS"].metrics_allow
    client = ipaddress.ip_address(request.remote_addr or "0.0.0.0")
    if not any(client in ipaddress.ip_network(network) for network in allowed):
        raise ForbiddenError("Metrics are only for the monitoring networks (METRICS_ALLOW).")
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    metrics.metrics()  # so a fresh worker's metrics exist, at zero
    registry = REGISTRY
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")  # prometheus_client's own variable (set by gunicorn_settings)
    if folder:
        registry = CollectorRegistry()
        registry.register(metrics.SizedFiles(folder))
    return generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}
