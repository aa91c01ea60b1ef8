"""The cached path against its floor (issue #13): a bare Flask app that parses the same body and
answers a URL (bench/bare_app.py), in process and under identical Gunicorn settings; and how
Gunicorn's workers share keep-alive load.
"""

import glob
import os
import statistics
import tempfile
import time

from bench.common import wrk
from devtools.servers import ROOT, Gunicorn


def in_process(settings, body, requests_per_round=2000, rounds=5):
    """Microseconds per cached POST, service and bare app alternating (ABAB), median of the rounds.

    Flask's test client, no sockets: the figure is the app's own cost, steadier than HTTP load.
    """
    from bench.bare_app import create_app as bare_app
    from cropper import create_app

    clients = {"service": create_app(settings).test_client(), "bare": bare_app().test_client()}
    assert clients["service"].post("/cropper/", json=body).status_code == 200  # cached from here on
    times = {name: [] for name in clients}
    for _ in range(rounds):
        for name, client in clients.items():
            for _ in range(200):  # warm up this round's caches
                client.post("/cropper/", json=body)
            started = time.perf_counter()
            for _ in range(requests_per_round):
                client.post("/cropper/", json=body)
            times[name].append((time.perf_counter() - started) / requests_per_round * 1e6)
    return {name: statistics.median(values) for name, values in times.items()} | {"rounds": times}


def over_http(service, env, run_dir, body, seconds, rounds=5):
    """Requests/s of a cached POST, wrk -t2 -c8, to the service and to the bare app under the same
    Gunicorn settings, alternating (ABAB) so drifts of the machine hit both; median of each."""
    # Its own metrics folder: Gunicorn wipes it at start, and the service's workers count in theirs.
    env = {**env, "CACHE_PRUNE_INTERVAL": "0", "PYTHONPATH": str(ROOT), "METRICS_DIR": f"{run_dir}/metrics"}
    os.makedirs(run_dir, exist_ok=True)
    with Gunicorn(env, cwd=run_dir, workers=service.workers, app="bench.bare_app:create_app()") as bare:
        rates = {"service": [], "bare": []}
        for _ in range(rounds):
            for name, app in (("service", service), ("bare", bare)):
                rates[name].append(wrk(f"{app.url}/cropper/", seconds=seconds, body=body)["rps"])
    return {name: statistics.median(values) for name, values in rates.items()} | {"rounds": rates}


def requests_per_worker(metrics_dir, pids):
    """Requests each worker answered so far, from its own file of prometheus_client's multiprocess mode."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    counts = {}
    for pid in pids:
        files = glob.glob(f"{metrics_dir}/counter_{pid}.db")
        if not files:
            counts[pid] = 0
            continue
        with tempfile.TemporaryDirectory() as one:  # the collector reads a folder: give it this file alone
            os.symlink(files[0], f"{one}/counter_{pid}.db")
            registry = CollectorRegistry()
            MultiProcessCollector(registry, one)
            counts[pid] = sum(sample.value for metric in registry.collect() if metric.name == "cropper_requests"
                              for sample in metric.samples if sample.name == "cropper_requests_total")
    return counts


def worker_share(app, url, body, metrics_dir, seconds, connections=64):
    """Requests per worker during one wrk run of `connections` keep-alive connections to url.

    Only workers alive for the whole run are compared; ones Gunicorn recycled (max_requests) are counted apart.
    """
    before_pids = set(app.worker_pids())
    before = requests_per_worker(metrics_dir, before_pids)
    result = wrk(url, seconds=seconds, connections=connections, body=body)
    after_pids = set(app.worker_pids())
    whole = sorted(before_pids & after_pids)
    after = requests_per_worker(metrics_dir, whole)
    counts = sorted(after[pid] - before[pid] for pid in whole)
    return {"rps": result["rps"], "counts": counts, "recycled": len(before_pids - after_pids),
            "spread": counts[-1] / counts[0] if counts and counts[0] else float("inf")}

