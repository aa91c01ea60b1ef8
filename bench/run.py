"""Benchmarks of the crop service on this machine: `python -m bench.run [--quick]`.

Starts the FathomNet stand-in in its own process with 50 ms added to every request (a remote
server), real Gunicorn on a fresh cache and real nginx in front, then prints medians and p95s,
and at the end each target of issue #4 beside its measured figure and the earlier FastAPI
version's. Every loop is bounded in count and time; all traffic stays on 127.0.0.1. Load
figures use Debian's wrk (-t2 -c8) when installed, else a slower Python client.
"""

import argparse
import io
import os
import shutil
import statistics
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.common import post_json, python_load, summary, timed, wrk
from cropper import imaging
from cropper.crops import Box
from devtools.servers import Gunicorn, NginxServer, StandInProcess

LATENCY_MS = 50
SLOW_LATENCY_MS = 2000
BOX = (100, 100, 405, 400)
MAX_PIXELS = 40_000_000
# The earlier FastAPI version on this kind of machine, stand-in adding 50 ms (from issue #4).
EARLIER = {
    "cold": "176 ms", "second": "185 ms", "batch": "22 crops/s", "post": "141 req/s (1,143 with no added latency)",
    "get": "1,891 req/s (thumbor 1,675)", "memory": "n/a", "huge": "downloaded it",
}


def crop_body(image, box, fmt="webp"):
    x1, y1, x2, y2 = box
    return {"uuid": image["uuid"], "x1": x1, "y1": y1, "x2": x2, "y2": y2, "format": fmt}


def median_ms(seconds):
    return statistics.median(seconds) * 1000


class Bench:
    def __init__(self, standin, app, nginx, cache_dir, runs, seconds):
        self.standin, self.app, self.nginx = standin, app, nginx
        self.cache_dir, self.runs, self.seconds = Path(cache_dir), runs, seconds
        self.catalog = standin.catalog()
        self.session = requests.Session()
        self.crop_url = f"{app.url}/cropper/"
        self.targets = []  # (what, measured, target, earlier, met)

    # -- helpers
    def forget(self, uuid):
        """Drop an image's source and crops, so its next request is cold."""
        shutil.rmtree(self.cache_dir / "crops" / uuid[:2] / uuid, ignore_errors=True)
        for suffix in (".json", ".pix"):
            (self.cache_dir / "sources" / uuid[:2] / f"{uuid}{suffix}").unlink(missing_ok=True)

    def report(self, name, stats=None, note=""):
        stats = stats or {}
        median = f"{stats['median_ms']:8.1f}" if "median_ms" in stats else " " * 8
        p95 = f"{stats['p95_ms']:8.1f}" if "p95_ms" in stats else " " * 8
        print(f"  {name:<62} {median} {p95}  {note}", flush=True)

    def target(self, what, measured, goal, earlier, met):
        self.targets.append((what, measured, goal, earlier, "meets" if met else "MISSES"))

    def load(self, url, body=None, repeats=3):
        """Requests/s with 8 concurrent clients: the median of `repeats` runs, and every run's figure."""
        runs = []
        for _ in range(repeats):
            result = wrk(url, seconds=self.seconds, body=body)
            if result is None:
                if body:
                    def send(s):
                        return post_json(s, url, body)
                else:
                    def send(s):
                        return s.get(url, timeout=10).raise_for_status()
                result = python_load(send, seconds=self.seconds)
            runs.append(result)
        return {"rps": statistics.median(r["rps"] for r in runs), "non_2xx": sum(r["non_2xx"] for r in runs),
                "runs": ", ".join(f"{r['rps']:,.0f}" for r in runs)}

    def set_latency(self, ms):
        requests.post(f"{self.standin.url}/_standin/latency", json={"ms": ms}, timeout=5)

    def warm_standin(self):
        """Have the stand-in generate its images before anything is timed."""
        for image in self.catalog.values():
            if image["name"] not in ("huge", "bomb", "offhost"):
                requests.get(image["url"], timeout=60)
        self.standin.reset()

    # -- measurements
    def cold_crop(self):
        """A cold crop, and its unavoidable parts timed alone: lookup, download, decode, encode."""
        image = self.catalog["framegrab"]
        times = []
        for _ in range(self.runs):
            self.forget(image["uuid"])
            times.append(timed(lambda: post_json(self.session, self.crop_url, crop_body(image, BOX)))[0])
        self.report("cold crop (1920x1080 PNG: lookup, download, decode, crop, store)", summary(times))
        api_url = f"{self.standin.api_url}/images/{image['uuid']}"
        lookup = [timed(lambda: self.session.get(api_url, timeout=10).json())[0] for _ in range(self.runs)]
        download = [timed(lambda: self.session.get(image["url"], timeout=10).content)[0] for _ in range(self.runs)]
        data = self.session.get(image["url"], timeout=10).content
        decode = [timed(lambda: imaging.decode(io.BytesIO(data), MAX_PIXELS, (1920, 1080)))[0]
                  for _ in range(self.runs)]
        decoded = imaging.decode(io.BytesIO(data), MAX_PIXELS, (1920, 1080))
        encode = [timed(lambda: imaging.encode(decoded.crop(BOX), "webp", 90))[0] for _ in range(self.runs)]
        parts = {"lookup": lookup, "download": download, "decode": decode, "encode": encode}
        for name, seconds in parts.items():
            self.report(f"  part alone: {name}", summary(seconds))
        total = sum(median_ms(seconds) for seconds in parts.values())
        ratio = median_ms(times) / total
        self.report("  cold crop / sum of its parts' medians",
                    note=f"{ratio:.2f} ({median_ms(times):.1f} / {total:.1f} ms)")
        self.target("cold crop vs its unavoidable parts", f"{median_ms(times):.0f} ms = {ratio:.2f}x parts",
                    "<= 1.20x", EARLIER["cold"], ratio <= 1.2)

    def second_box(self):
        """A new box of a cached image, and what keeping raw pixels saves over decoding the PNG again."""
        image = self.catalog["framegrab-0"]
        self.forget(image["uuid"])
        post_json(self.session, self.crop_url, crop_body(image, (0, 0, 10, 10)))
        times = []
        for i in range(self.runs):
            box = (10 + 7 * i, 20 + 5 * i, 310 + 7 * i, 320 + 5 * i)
            times.append(timed(lambda: post_json(self.session, self.crop_url, crop_body(image, box)))[0])
        downloads = self.standin.counts(image["uuid"])["downloads"]
        self.report("second box of the same image (over HTTP)", summary(times), f"downloads of the image: {downloads}")
        pix = self.cache_dir / "sources" / image["uuid"][:2] / f"{image['uuid']}.pix"
        png = self.session.get(image["url"], timeout=10).content

        def from_raw():
            with imaging.RawImage(open(pix, "rb")) as source:
                return imaging.encode(source.crop(Box(*BOX)), "webp", 90)

        def from_png():
            return imaging.encode(imaging.decode(io.BytesIO(png), MAX_PIXELS, (1920, 1080)).crop(BOX), "webp", 90)

        raw = [timed(from_raw)[0] for _ in range(self.runs)]
        decoded = [timed(from_png)[0] for _ in range(self.runs)]
        self.report("  in-process: cut from the memory-mapped raw pixels + encode", summary(raw))
        self.report("  in-process: decode the PNG again + cut + encode (baseline)", summary(decoded),
                    f"raw pixels are {median_ms(decoded) / median_ms(raw):.1f}x faster")
        self.target("second box of a cached 1920x1080 PNG", f"{median_ms(times):.1f} ms median", "< 20 ms",
                    EARLIER["second"], median_ms(times) < 20)

    def cached_repeat(self):
        body = crop_body(self.catalog["framegrab"], BOX)
        post_json(self.session, self.crop_url, body)
        times = [timed(lambda: post_json(self.session, self.crop_url, body))[0] for _ in range(self.runs * 5)]
        self.report("cached repeat POST, one client", summary(times))
        rates = {}
        for latency in (LATENCY_MS, SLOW_LATENCY_MS):
            self.set_latency(latency)
            before = self.standin.counts()["api"]
            result = self.load(self.crop_url, body)
            rates[latency] = result["rps"]
            self.report(f"cached repeat POST, 8 clients, FathomNet answering in {latency} ms", note=(
                f"{result['rps']:,.0f} req/s median of [{result['runs']}] (non-2xx {result['non_2xx']}; "
                f"FathomNet calls {self.standin.counts()['api'] - before})"))
        self.set_latency(LATENCY_MS)
        slowest = min(rates.values())
        self.target("cached repeat POST, wrk -t2 -c8, to Gunicorn (median of 3)",
                    f"{rates[LATENCY_MS]:,.0f} / {rates[SLOW_LATENCY_MS]:,.0f} req/s (FathomNet 50 ms / 2 s)",
                    ">= 3,000 req/s", EARLIER["post"], slowest >= 3000)

    def cached_get(self):
        """GET requests/s for one cached crop: Gunicorn alone and nginx from disk, same run."""
        url = post_json(self.session, self.crop_url, crop_body(self.catalog["framegrab"], BOX))["url"]
        path = "/crops/" + url.split("/crops/", 1)[1]
        rates = {}
        for name, base in (("Gunicorn alone", self.app.url), ("nginx", self.nginx.url if self.nginx else None)):
            if base:
                result = self.load(base + path)
                rates[name] = result["rps"]
                self.report(f"cached crop GET via {name}, 8 clients", note=f"{result['rps']:,.0f} req/s "
                            f"median of [{result['runs']}] (non-2xx {result['non_2xx']})")
        if "nginx" in rates:
            self.report("  nginx / Gunicorn alone", note=f"{rates['nginx'] / rates['Gunicorn alone']:.1f}x")
            self.target("cached image GET through nginx (median of 3)", f"{rates['nginx']:,.0f} req/s",
                        ">= 50,000 req/s",
                        EARLIER["get"], rates["nginx"] >= 50000)

    def batch(self):
        """100 crops over 10 images in one /cropper-list/ request, every image cold."""
        images = [self.catalog[f"framegrab-{i}"] for i in range(10)]
        body = [crop_body(image, (15 * j, 9 * j, 15 * j + 260, 9 * j + 180)) for image in images for j in range(10)]
        times, downloads, decodes = [], [], []
        for _ in range(max(3, self.runs // 3)):
            for image in images:
                self.forget(image["uuid"])
            self.standin.reset()
            elapsed, answers = timed(lambda: post_json(self.session, f"{self.app.url}/cropper-list/", body))
            assert all("url" in answer for answer in answers), answers[:3]
            times.append(elapsed)
            downloads.append(self.standin.counts()["downloads"])
            decodes.append(sum(1 for image in images if (self.cache_dir / "sources" / image["uuid"][:2] /
                                                         f"{image['uuid']}.pix").exists()))
        rate = 100 / statistics.median(times)
        self.report("100 crops over 10 cold images, one /cropper-list/ request", summary(times),
                    f"{rate:.0f} crops/s; downloads {downloads}; decodes {decodes}")
        self.target("100 crops over 10 images via /cropper-list/",
                    f"{rate:.0f} crops/s, {max(downloads)} downloads, {max(decodes)} decodes",
                    ">= 150 crops/s, 10, 10", EARLIER["batch"],
                    rate >= 150 and max(downloads) == 10 and max(decodes) == 10)

    def cached_during_slow_downloads(self, slow_clients=6, slow_seconds=1.0):
        """Cached POST latency while other requests wait on a slow image host (head-of-line blocking)."""
        cached = crop_body(self.catalog["framegrab"], BOX)
        post_json(self.session, self.crop_url, cached)
        requests.post(f"{self.standin.url}/_standin/fault", timeout=5,
                      json={"kind": "slow", "target": "image", "slow_seconds": slow_seconds})
        stop = threading.Event()

        def keep_busy(image):
            session = requests.Session()
            while not stop.is_set():
                self.forget(image["uuid"])
                session.post(self.crop_url, json=crop_body(image, (0, 0, 100, 100)), timeout=30)

        busy = [threading.Thread(target=keep_busy, args=(self.catalog[f"framegrab-{i}"],))
                for i in range(4, 4 + slow_clients)]
        for thread in busy:
            thread.start()
        times = []
        try:
            stop.wait(0.3)
            times = [timed(lambda: post_json(self.session, self.crop_url, cached))[0] for _ in range(self.runs * 4)]
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
        for _ in range(3):
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


def memory(standin, tmp, clients=8):
    """Peak RSS of the workers of a fresh Gunicorn while 8 clients crop the 3840x2160 image at once."""
    catalog = standin.catalog()
    large, huge = catalog["large"], catalog["huge"]
    env = {"CACHE_DIR": f"{tmp}/memory/cache", "FATHOMNET_API_URL": standin.api_url,
           "ALLOWED_IMAGE_HOSTS": f"127.0.0.1:{standin.port}"}
    os.makedirs(f"{tmp}/memory")
    with Gunicorn(env, cwd=f"{tmp}/memory", workers=3) as app:
        for round_ in range(3):
            shutil.rmtree(f"{tmp}/memory/cache/crops", ignore_errors=True)
            shutil.rmtree(f"{tmp}/memory/cache/sources", ignore_errors=True)
            boxes = [(200 * i, 100 * i, 200 * i + 1500, 100 * i + 1000) for i in range(clients)]
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(lambda box: post_json(requests.Session(), f"{app.url}/cropper/",
                                                    crop_body(large, box, "png")), boxes))
        peaks = [peak_rss_mib(pid) for pid in app.worker_pids()]
        standin.reset()
        refused = requests.post(f"{app.url}/cropper/", json=crop_body(huge, (0, 0, 10, 10)), timeout=30)
        huge_downloads = standin.counts(huge["uuid"])["downloads"]
    print(f"  peak RSS per worker while {clients} clients crop the 3840x2160 image (3 cold rounds): "
          f"{', '.join(f'{p:.0f}' for p in peaks)} MiB")
    print(f"  image FathomNet says is 40000x30000: HTTP {refused.status_code} "
          f"{refused.json()['error']['code']}, downloads: {huge_downloads}")
    return max(peaks), refused.status_code, huge_downloads


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_nginx(app, cache_dir, run_dir):
    """nginx in front of app, its rate limits far above the load, or None when nginx is missing."""
    from cropper.serve import find_nginx

    if find_nginx() is None:
        return None
    limits = {"api_rate": "100000r/s", "api_burst": 100000, "regen_rate": "100000r/s", "regen_burst": 100000}
    return NginxServer(app, cache_dir, run_dir, **limits).start()


def run_all(standin, tmp, worker_class, args):
    run_dir = f"{tmp}/{worker_class}"
    cache = f"{run_dir}/cache"
    os.makedirs(run_dir)
    env = {"CACHE_DIR": cache, "FATHOMNET_API_URL": standin.api_url, "ALLOWED_IMAGE_HOSTS": f"127.0.0.1:{standin.port}",
           "GUNICORN_WORKER_CLASS": worker_class}
    with Gunicorn(env, cwd=run_dir, workers=args.workers) as app:
        nginx = start_nginx(app, cache, run_dir)
        try:
            bench = Bench(standin, app, nginx, cache, args.runs, args.seconds)
            bench.warm_standin()
            front = "in front" if nginx else "not installed"
            print(f"\nGunicorn {worker_class}, {app.workers} workers; nginx {front}; "
                  f"load: {'wrk -t2 -c8' if shutil.which('wrk') else '8 Python threads (wrk missing)'}")
            print(f"  {'':<62} {'median':>8} {'p95':>8}  (ms; the stand-in adds {LATENCY_MS} ms per request)")
            bench.cold_crop()
            bench.second_box()
            bench.cached_repeat()
            bench.cached_get()
            bench.batch()
            bench.cached_during_slow_downloads()
            bench.thundering_herd()
            return bench
        finally:
            if nginx:
                nginx.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="timed repetitions per figure")
    parser.add_argument("--seconds", type=int, default=5, help="length of each load test")
    parser.add_argument("--workers", type=int, default=3, help="Gunicorn workers")
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter loads")
    parser.add_argument("--worker-classes", default="gthread",
                        help="comma-separated Gunicorn worker classes to measure in turn, e.g. sync,gthread")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.seconds = 5, 2
    with tempfile.TemporaryDirectory() as tmp, StandInProcess(latency_ms=LATENCY_MS) as standin:
        benches = [run_all(standin, tmp, worker_class, args) for worker_class in args.worker_classes.split(",")]
        print("\nMemory")
        peak, refused_status, huge_downloads = memory(standin, tmp)
    bench = benches[-1]
    bench.target("peak RSS of a worker, 8 clients cropping 3840x2160", f"{peak:.0f} MiB", "< 300 MB",
                 EARLIER["memory"], peak * 1.048576 < 300)
    bench.target("image over the pixel limit by FathomNet's size", f"{refused_status}, {huge_downloads} downloads",
                 "refused before download", EARLIER["huge"], refused_status == 422 and huge_downloads == 0)
    print(f"\nTargets (issue #4), Gunicorn {args.worker_classes.split(',')[-1]}:")
    print(f"  {'what':<58} {'measured':<44} {'target':<24} {'earlier version':<40} verdict")
    for what, measured, goal, earlier, verdict in bench.targets:
        print(f"  {what:<58} {measured:<44} {goal:<24} {earlier:<40} {verdict}")


if __name__ == "__main__":
    main()
