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
from tests.servers import Gunicorn, NginxServer, StandInProcess

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
        print(f"{name:<60} {median} {p95}  {note}", flush=True)

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

    def cached_get(self, seconds, nginx=None):
        """GET requests/s for one cached crop: Gunicorn alone, and nginx from disk, same run."""
        image = self.catalog["framegrab"]
        url = post_json(self.session, self.crop_url, crop_body(image, (100, 100, 405, 400)))["url"]
        path = "/crops/" + url.split("/crops/", 1)[1]
        results = {}
        for name, base in (("Gunicorn alone", self.app.url), ("nginx", nginx.url if nginx else None)):
            if base is None:
                continue
            load = wrk(base + path, seconds=seconds)
            if load is None:
                load = python_load(lambda s: s.get(base + path, timeout=10).raise_for_status(), seconds=seconds)
            results[name] = load["rps"]
            self.report(f"cached crop GET via {name}, 8 concurrent clients", {},
                        f"{load['rps']:.0f} req/s (non-2xx {load['non_2xx']})")
        if len(results) == 2:
            ratio = results["nginx"] / results["Gunicorn alone"]
            self.report("  nginx / Gunicorn alone", {}, f"{ratio:.1f}x")
        return results

    def cached_during_slow_downloads(self, slow_clients=6, slow_seconds=1.0):
        """Cached POST latency while other requests wait on a slow image host (head-of-line blocking)."""
        cached = crop_body(self.catalog["framegrab"], (100, 100, 405, 400))
        post_json(self.session, self.crop_url, cached)
        slow_images = [self.catalog[f"framegrab-{i}"] for i in range(4, 4 + slow_clients)]
        requests.post(f"{self.standin.url}/_standin/fault", timeout=5,
                      json={"kind": "slow", "target": "image", "slow_seconds": slow_seconds})
        stop = threading.Event()

        def keep_busy(image):
            session = requests.Session()
            while not stop.is_set():
                self.forget(image["uuid"])
                session.post(self.crop_url, json=crop_body(image, (0, 0, 100, 100)), timeout=30)

        busy = [threading.Thread(target=keep_busy, args=(image,)) for image in slow_images]
        for thread in busy:
            thread.start()
        times = []
        try:
            threading.Event().wait(0.3)
            for _ in range(self.runs * 4):
                times.append(timed(lambda: post_json(self.session, self.crop_url, cached))[0])
        finally:
            stop.set()
            for thread in busy:
                thread.join()
            requests.post(f"{self.standin.url}/_standin/fault", json={"kind": None}, timeout=5)
        self.report(f"cached POST while {slow_clients} crops wait {slow_seconds:.0f} s on the image host",
                    summary(times))

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
    parser.add_argument("--worker-classes", default="gthread",
                        help="comma-separated Gunicorn worker classes to measure in turn, e.g. sync,gthread")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.seconds = 5, 2
    with tempfile.TemporaryDirectory() as tmp, StandInProcess(latency_ms=LATENCY_MS) as standin:
        for worker_class in args.worker_classes.split(","):
            cache = f"{tmp}/{worker_class}/cache"
            env = {"CACHE_DIR": cache, "FATHOMNET_API_URL": standin.api_url, "ALLOWED_IMAGE_HOSTS": "127.0.0.1",
                   "GUNICORN_WORKER_CLASS": worker_class}
            os.makedirs(f"{tmp}/{worker_class}")
            with Gunicorn(env, cwd=f"{tmp}/{worker_class}", workers=int(os.environ.get("GUNICORN_WORKERS", 3))) as app:
                nginx = start_nginx(app, cache, f"{tmp}/{worker_class}")
                try:
                    bench = Bench(standin, app, cache, args.runs)
                    bench.warm_standin()
                    print(f"\nGunicorn {worker_class}, {app.workers} workers"
                          f"{'' if nginx else ' (nginx not installed: no nginx figures)'}")
                    print(f"{'':<60} {'median':>8} {'p95':>8}  (ms; stand-in adds {LATENCY_MS} ms per request)")
                    bench.upstream_round_trip()
                    bench.cold_crop()
                    bench.second_box()
                    bench.cached_repeat(args.seconds)
                    bench.cached_get(args.seconds, nginx)
                    bench.cached_during_slow_downloads()
                    bench.thundering_herd()
                finally:
                    if nginx:
                        nginx.stop()


def start_nginx(app, cache_dir, run_dir):
    """nginx in front of app, with rate limits far above the load, or None when nginx is missing."""
    from cropper.serve import find_nginx

    if find_nginx() is None:
        return None
    limits = {"api_rate": "100000r/s", "api_burst": 100000, "regen_rate": "100000r/s", "regen_burst": 100000}
    return NginxServer(app, cache_dir, run_dir, **limits).start()


if __name__ == "__main__":
    main()
