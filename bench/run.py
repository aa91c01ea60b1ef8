"""Benchmarks of the crop service on this machine: `python -m bench.run [--quick]`.

Starts the FathomNet stand-in in its own process with 50 ms added to every request (a
remote server), real Gunicorn in front of a fresh cache, and prints medians and p95s.
Every loop is bounded in count and time, and all traffic stays on 127.0.0.1.
"""

import argparse
import os
import shutil
import statistics
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.common import percentile, post_json, python_load, summary, timed, wrk
from tests.servers import Gunicorn, StandInProcess

LATENCY_MS = 50


def crop_body(image, box, fmt="webp"):
    x1, y1, x2, y2 = box
    return {"uuid": image["uuid"], "x1": x1, "y1": y1, "x2": x2, "y2": y2, "format": fmt}


class Bench:
    def __init__(self, standin, app, cache_dir, runs):
        self.standin, self.app, self.cache_dir, self.runs = standin, app, Path(cache_dir), runs
        self.catalog = standin.catalog()
        self.session = requests.Session()
        self.crop_url = f"{app.url}/cropper/"
        self.rows = []

    def forget(self, uuid):
        """Drop an image's source and crops, so its next request is cold."""
        shutil.rmtree(self.cache_dir / "crops" / uuid[:2] / uuid, ignore_errors=True)
        for suffix in (".json", ".pix"):
            (self.cache_dir / "sources" / uuid[:2] / f"{uuid}{suffix}").unlink(missing_ok=True)

    def report(self, name, stats, note=""):
        self.rows.append((name, stats, note))
        median = f"{stats['median_ms']:8.1f}" if "median_ms" in stats else " " * 8
        p95 = f"{stats['p95_ms']:8.1f}" if "p95_ms" in stats else " " * 8
        print(f"{name:<48} {median} {p95}  {note}", flush=True)

    def warm_standin(self):
        """Have the stand-in generate its images before anything is timed."""
        for image in self.catalog.values():
            if image["name"] not in ("huge", "bomb", "offhost"):
                requests.get(image["url"], timeout=60)
        self.standin.reset()

    def upstream_round_trip(self):
        image = self.catalog["framegrab"]
        url = f"{self.standin.api_url}/images/{image['uuid']}"
        times = [timed(lambda: self.session.get(url, timeout=10))[0] for _ in range(self.runs)]
        self.report("baseline: one FathomNet API call (stand-in)", summary(times))
        return statistics.median(times)

    def cold_crop(self):
        image = self.catalog["framegrab"]
        times = []
        for i in range(self.runs):
            self.forget(image["uuid"])
            times.append(timed(lambda: post_json(self.session, self.crop_url, crop_body(image, (100, 100, 405, 400))))[0])
        stats = summary(times)
        self.report("cold crop (1920x1080 PNG, lookup+download)", stats)
        return stats

    def second_box(self):
        image = self.catalog["framegrab-0"]
        self.forget(image["uuid"])
        post_json(self.session, self.crop_url, crop_body(image, (0, 0, 10, 10)))
        times = []
        for i in range(self.runs):
            box = (10 + 7 * i, 20 + 5 * i, 310 + 7 * i, 320 + 5 * i)
            times.append(timed(lambda: post_json(self.session, self.crop_url, crop_body(image, box)))[0])
        stats = summary(times)
        self.report("second box of the same image", stats, f"downloads: {self.standin.counts(image['uuid'])['downloads']}")
        return stats

    def cached_repeat(self, seconds):
        image = self.catalog["framegrab"]
        body = crop_body(image, (100, 100, 405, 400))
        post_json(self.session, self.crop_url, body)
        before = self.standin.counts()["api"]
        times = [timed(lambda: post_json(self.session, self.crop_url, body))[0] for _ in range(self.runs * 5)]
        self.report("cached repeat POST", summary(times))
        load = wrk(self.crop_url, seconds=seconds, body=body)
        tool = "wrk -t2 -c8"
        if load is None:
            tool = "8 Python threads (wrk missing)"
            load = python_load(lambda s: post_json(s, self.crop_url, body), seconds=seconds)
        calls = self.standin.counts()["api"] - before
        self.report("cached repeat POST, 8 concurrent clients", {},
                    f"{load['rps']:.0f} req/s ({tool}; non-2xx {load['non_2xx']}; FathomNet calls {calls})")
        return load

    def thundering_herd(self, clients=32):
        image = self.catalog["large"]
        body = crop_body(image, (640, 360, 1280, 720))
        latencies, downloads = [], []
        for _ in range(max(3, self.runs // 3)):
            self.forget(image["uuid"])
            self.standin.reset()
            barrier = threading.Barrier(clients)

            def one(_):
                session = requests.Session()
                barrier.wait()
                return timed(lambda: post_json(session, self.crop_url, body))[0]

            with ThreadPoolExecutor(clients) as pool:
                latencies += list(pool.map(one, range(clients)))
            downloads.append(self.standin.counts(image["uuid"])["downloads"])
        self.report(f"{clients} identical cold requests at once (3840x2160)", summary(latencies),
                    f"downloads per round: {downloads}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="timed repetitions per figure")
    parser.add_argument("--seconds", type=int, default=5, help="length of each load test")
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter loads")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.seconds = 5, 2
    with tempfile.TemporaryDirectory() as tmp, StandInProcess(latency_ms=LATENCY_MS) as standin:
        env = {"CACHE_DIR": f"{tmp}/cache", "FATHOMNET_API_URL": standin.api_url, "ALLOWED_IMAGE_HOSTS": "127.0.0.1"}
        with Gunicorn(env, cwd=tmp, workers=int(os.environ.get("GUNICORN_WORKERS", 3))) as app:
            bench = Bench(standin, app, f"{tmp}/cache", args.runs)
            bench.warm_standin()
            print(f"{'':<48} {'median':>8} {'p95':>8}  (ms; stand-in adds {LATENCY_MS} ms per request)")
            bench.upstream_round_trip()
            bench.cold_crop()
            bench.second_box()
            bench.cached_repeat(args.seconds)
            bench.thundering_herd()


if __name__ == "__main__":
    main()
