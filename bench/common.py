"""Timing helpers for the benchmarks: bounded loops, medians and percentiles, wrk."""

import json
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

import requests


def percentile(values, pct):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def summary(seconds):
    """Median and p95 in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {"median_ms": statistics.median(ms), "p95_ms": percentile(ms, 95), "n": len(ms)}


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def post_json(session, url, body):
    response = session.post(url, json=body, timeout=60)
    response.raise_for_status()
    return response.json()


def wrk(url, seconds=5, connections=8, threads=2, body=None, paths=None):
    """Requests/s from Debian's wrk; None when wrk is missing.

    body: POST it as JSON. paths: GET these paths of url's host in turn.
    """
    if shutil.which("wrk") is None:
        return None
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    lua = ""
    if body is not None:
        lua = ('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
               f"wrk.body = {json.dumps(json.dumps(body))}\n")
    if paths:
        listed = ", ".join(json.dumps(path) for path in paths)
        lua += (f"local paths = {{{listed}}}\nlocal i = 0\n"
                "request = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n")
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if lua:
            script.write(lua)
            script.flush()
            args += ["-s", script.name]
        out = subprocess.run(args + [url], capture_output=True, text=True, timeout=seconds + 30).stdout
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(rate.group(1)) if rate else 0.0, "non_2xx": int(errors.group(1)) if errors else 0}


def python_load(fn, seconds=5, clients=8):
    """Requests/s from `clients` Python threads calling fn (a fallback for wrk; client-bound)."""
    stop = time.monotonic() + seconds
    counts = [0] * clients

    def loop(i):
        session = requests.Session()
        while time.monotonic() < stop:
            fn(session)
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"rps": sum(counts) / seconds, "non_2xx": 0}
