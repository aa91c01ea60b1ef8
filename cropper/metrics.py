"""Prometheus metrics: what the service counts, and /metrics, summed over every Gunicorn worker.

Under Gunicorn, prometheus_client's multiprocess mode keeps each process's values in files in
PROMETHEUS_MULTIPROC_DIR (gunicorn_conf.py sets and wipes it, and marks dead workers), and
/metrics adds them up. prometheus_client picks that mode when it is imported, so it is imported
here only at first use, in a worker, after the folder is set: never at import time.

Crops nginx serves from disk never reach Python; nginx's own counters (stub_status, on a
local-only location) and the access log cover those.
"""

import functools
import ipaddress
import os
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

from flask import Blueprint, current_app, g, request

from .errors import CropperError

bp = Blueprint("metrics", __name__)

SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class MetricsForbiddenError(CropperError):
    status = 403
    code = "forbidden"


_made = threading.Lock()  # two threads' first requests must not both register the metrics
_metrics = None


def metrics():
    """The service's metrics, made once per process at first use (see the module's docstring)."""
    global _metrics
    if _metrics is None:
        with _made:
            if _metrics is None:
                _metrics = _make_metrics()
    return _metrics


def _make_metrics():
    from prometheus_client import Counter, Gauge, Histogram

    return SimpleNamespace(
        requests=Counter("cropper_requests_total", "HTTP requests the app answered.", ["endpoint", "status"]),
        request_seconds=Histogram("cropper_request_seconds", "Time to answer, by endpoint.", ["endpoint"],
                                  buckets=SECONDS),
        crops=Counter("cropper_crops_total", "Crops asked of the app, by outcome: hit, miss (made), "
                      "regenerated (made again for a URL), failed.", ["outcome"]),
        failures=Counter("cropper_crop_failures_total", "Crops that failed, by error code.", ["code"]),
        upstream=Counter("cropper_fathomnet_calls_total", "Calls to FathomNet's API and image hosts, by call "
                         "and outcome (ok, not_found, or an error code).", ["call", "outcome"]),
        upstream_seconds=Histogram("cropper_fathomnet_seconds", "Time of each call to FathomNet or an image host.",
                                   ["call"], buckets=SECONDS),
        downloaded_bytes=Counter("cropper_download_bytes_total", "Bytes of images downloaded."),
        decode_seconds=Histogram("cropper_decode_seconds", "Time to decode a downloaded image.", buckets=SECONDS),
        encode_seconds=Histogram("cropper_encode_seconds", "Time to cut, scale and encode a crop, by format.",
                                 ["format"], buckets=SECONDS),
        lock_wait_seconds=Histogram("cropper_lock_wait_seconds", "Time spent waiting for another request making "
                                    "the same file.", buckets=SECONDS),
        busy=Counter("cropper_busy_total", "503 busy answers, by reason: lock (identical work took too long), "
                     "slots (the worker's crop-making slots and queue were full).", ["reason"]),
        evictions=Counter("cropper_eviction_runs_total", "Eviction passes (the pruner's, and writes making room)."),
        evicted_files=Counter("cropper_evicted_files_total", "Files evicted, by store.", ["store"]),
        evicted_bytes=Counter("cropper_evicted_bytes_total", "Bytes evicted, by store.", ["store"]),
        cache_bytes=Gauge("cropper_cache_bytes", "Bytes each store holds, as last measured.", ["store"],
                          multiprocess_mode="mostrecent"),
        cache_files=Gauge("cropper_cache_files", "Entries each store holds, as last measured.", ["store"],
                          multiprocess_mode="mostrecent"),
    )


# -- what other modules report


def crop_outcome(outcome, code=None):
    _crops(outcome).inc()
    if code:
        _failures(code).inc()


@functools.lru_cache(maxsize=16)  # the labelled children, looked up once: this runs on every crop
def _crops(outcome):
    return metrics().crops.labels(outcome)


@functools.lru_cache(maxsize=256)
def _failures(code):
    return metrics().failures.labels(code)


@contextmanager
def upstream_call(call):
    """Count and time a call to FathomNet or an image host; its outcome is ok, the error's code, or what
    the caller sets on the object yielded (not_found: FathomNet's 404)."""
    started, counted = time.perf_counter(), SimpleNamespace(outcome="ok")
    try:
        yield counted
    except CropperError as error:
        counted.outcome = error.code
        raise
    finally:
        metrics().upstream.labels(call, counted.outcome).inc()
        metrics().upstream_seconds.labels(call).observe(time.perf_counter() - started)


def downloaded(nbytes):
    metrics().downloaded_bytes.inc(nbytes)


def decoded(seconds):
    metrics().decode_seconds.observe(seconds)


def encoded(format_name, seconds):
    metrics().encode_seconds.labels(format_name).observe(seconds)


def lock_waited(seconds):
    metrics().lock_wait_seconds.observe(seconds)


def busy(reason):
    metrics().busy.labels(reason).inc()


def evicted(store, files, nbytes):
    metrics().evictions.inc()
    metrics().evicted_files.labels(store).inc(files)
    metrics().evicted_bytes.labels(store).inc(nbytes)


def measured(store, files, nbytes):
    metrics().cache_files.labels(store).set(files)
    metrics().cache_bytes.labels(store).set(nbytes)


# -- the app's side: requests, crop outcomes, and /metrics


@functools.lru_cache(maxsize=1024)  # the labelled children, looked up once: this runs on every request
def _requests(endpoint, status):
    return metrics().requests.labels(endpoint, str(status))


@functools.lru_cache(maxsize=256)
def _request_seconds(endpoint):
    return metrics().request_seconds.labels(endpoint)


def register(app):
    """Count every request by endpoint and status, and the crops single requests make or find."""

    @app.before_request
    def start_clock():
        g.metrics_started = time.perf_counter()

    @app.after_request
    def count(response):
        endpoint = request.endpoint or "unknown"
        _requests(endpoint, response.status_code).inc()
        if hasattr(g, "metrics_started"):
            _request_seconds(endpoint).observe(time.perf_counter() - g.metrics_started)
        if endpoint in ("cropper.create_crop", "cropper.get_crop", "iiif.image") and request.method != "OPTIONS":
            # (a CORS preflight asks no crop)
            if response.status_code < 400:
                crop_outcome(response.headers.get("X-Cropper-Cache", "hit"))
            else:
                crop_outcome("failed", g.get("error_code", "unknown"))
        return response

    app.register_blueprint(bp)


@bp.get("/metrics")
def scrape():
    """The metrics in Prometheus' text format, for the networks METRICS_ALLOW names only."""
    allowed = current_app.config["SETTINGS"].metrics_allow
    client = ipaddress.ip_address(request.remote_addr or "0.0.0.0")
    if not any(client in ipaddress.ip_network(network) for network in allowed):
        raise MetricsForbiddenError("Metrics are only for the monitoring networks (METRICS_ALLOW).")
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

    metrics()  # so a fresh worker's metrics exist, at zero
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # prometheus_client's own variable (set by gunicorn_conf)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}
