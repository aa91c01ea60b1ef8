"""Prometheus metrics: what the service counts, and the one function each count is made through.

Under Gunicorn, prometheus_client's multiprocess mode keeps each process's values in files in
PROMETHEUS_MULTIPROC_DIR (ops/gunicorn_settings.py sets and wipes it, and marks dead workers), and
/metrics (http/metrics.py) adds them up. prometheus_client picks that mode when it is imported, so
it is imported here only at first use, in a worker, after the folder is set: never at import time.
No Flask here: the storage, upstream and image modules report through these functions.

Crops nginx serves from disk never reach Python; nginx's own counters (stub_status, on a
local-only location) and the access log cover those.
"""

import functools
import glob
import os
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

from .errors import CropperError

SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


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
        dataset_jobs=Counter("cropper_dataset_jobs_total", "Data-set jobs, by status: queued (submitted), done, "
                             "failed, cancelled.", ["status"]),
        dataset_crops=Counter("cropper_dataset_crops_total", "Crops of finished data-set jobs, by outcome: made "
                              "(or found), failed.", ["outcome"]),
        dataset_seconds=Histogram("cropper_dataset_job_seconds", "Time a data-set job ran, start to end.",
                                  buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)),
        revalidations=Counter("cropper_revalidations_total", "Remembered FathomNet records asked about again, by "
                              "outcome: confirmed, changed, withdrawn, stale (FathomNet could not be asked: the "
                              "remembered one was served).", ["outcome"]),
        purges=Counter("cropper_purges_total", "Purges applied on this host (an operator's, or of an image "
                       "FathomNet withdrew), by kind: image, box, concept.", ["kind"]),
        purged_bytes=Counter("cropper_purged_bytes_total", "Bytes purges removed on this host (and from the crop "
                             "store, by the host that ran the purge), by kind.", ["kind"]),
        cache_files=Gauge("cropper_cache_files", "Entries each store holds, as last measured.", ["store"],
                          multiprocess_mode="mostrecent"),
        # Set by the pruner process itself, and kept after it dies: older than twice the interval, no
        # pruner runs (killed, frozen, or its cache read-only).
        pruned=Gauge("cropper_cache_pruned_timestamp_seconds", "When the cache's pruner last finished a pass "
                     "(Unix time).", multiprocess_mode="mostrecent"),
        prune_interval=Gauge("cropper_cache_prune_interval_seconds", "Seconds between the pruner's passes "
                             "(CACHE_PRUNE_INTERVAL).", multiprocess_mode="mostrecent"),
    )


class SizedFiles:
    """prometheus_client's multiprocess collector over the files their processes have sized.

    A process makes its file, then sizes it: a scrape in between, or a process killed there (a pruner
    SIGKILLed at its first pass: then for good), would fail the whole scrape on the empty file
    (prometheus/client_python#1199). An empty file holds no value yet, so it is left out.
    """

    def __init__(self, folder):
        self.folder = folder

    def collect(self):
        from prometheus_client.multiprocess import MultiProcessCollector

        files = [path for path in glob.glob(os.path.join(self.folder, "*.db")) if _size(path) > 0]
        return MultiProcessCollector.merge(files, accumulate=True)


def _size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:  # a dead worker's, removed meanwhile
        return 0


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


def dataset_job(status, seconds=None, crops_made=0, crops_failed=0):
    """A data-set job queued, or ended: done, failed or cancelled, after seconds; its crops when done."""
    metrics().dataset_jobs.labels(status).inc()
    if seconds is not None:
        metrics().dataset_seconds.observe(seconds)
    if crops_made or crops_failed:
        metrics().dataset_crops.labels("made").inc(crops_made)
        metrics().dataset_crops.labels("failed").inc(crops_failed)


def pruned(interval):
    """A pass of the pruner that runs every interval seconds is done."""
    metrics().prune_interval.set(interval)
    metrics().pruned.set(time.time())


def revalidated(outcome):
    metrics().revalidations.labels(outcome).inc()


def purge_applied(kind, nbytes):
    metrics().purges.labels(kind).inc()
    metrics().purged_bytes.labels(kind).inc(nbytes)


def purged_from_store(kind, nbytes):
    metrics().purged_bytes.labels(kind).inc(nbytes)


def measured(store, files, nbytes):
    metrics().cache_files.labels(store).set(files)
    metrics().cache_bytes.labels(store).set(nbytes)


# -- requests, counted by the HTTP layer's hooks


def answered(endpoint, status, seconds=None):
    """A request answered: counted by endpoint and status, and timed."""
    _requests(endpoint, status).inc()
    if seconds is not None:
        _request_seconds(endpoint).observe(seconds)


@functools.lru_cache(maxsize=1024)  # the labelled children, looked up once: this runs on every request
def _requests(endpoint, status):
    return metrics().requests.labels(endpoint, str(status))


@functools.lru_cache(maxsize=256)
def _request_seconds(endpoint):
    return metrics().request_seconds.labels(endpoint)
