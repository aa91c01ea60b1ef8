"""GET /metrics: the service's metrics summed over every Gunicorn worker, for the monitoring networks only."""

import os

from flask import Blueprint, current_app

from .. import metrics
from ..errors import ForbiddenError
from .hooks import client_in

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape():
    """The metrics in Prometheus' text format, for the networks METRICS_ALLOW names only."""
    if not client_in(current_app.config["SETTINGS"].metrics_allow):
        raise ForbiddenError("Metrics are only for the monitoring networks (METRICS_ALLOW).")
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    metrics.metrics()  # so a fresh worker's metrics exist, at zero
    registry = REGISTRY
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")  # prometheus_client's own variable (set by gunicorn_settings)
    if folder:
        registry = CollectorRegistry()
        registry.register(metrics.SizedFiles(folder))
    return generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}
