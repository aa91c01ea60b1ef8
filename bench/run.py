"""Benchmarks of the crop service on this machine: `python -m bench.run [--quick]`.

Starts the FathomNet stand-in in its own process with 50 ms added to every request (a remote
server), real Gunicorn on a fresh cache and real nginx in front, then prints medians and p95s,
and at the end each target (issues #4 and #13) beside its measured figure and the figure before
that issue, and the figures issues #9 (annotations) and #10 (IIIF) ask to quote. Every loop is
bounded in count and time; all traffic stays on 127.0.0.1. Load figures use Debian's wrk (-t2)
when installed, else a slower Python client.
"""

import argparse
import io
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench import floor
from bench.common import post_json, python_load, summary, timed, wrk
from cropper import imaging
from cropper.config import Settings
from cropper.crops import Box
from cropper.iiif import image as iiif
from cropper.service import encoder_options
from devtools.servers import Gunicorn, NginxServer, StandInProcess
from devtools.standin import SURVEY_CONCEPT, SURVEY_NAMES, boxes

LATENCY_MS = 50
STEPS = ("cold", "second", "repeat", "floor", "share", "get", "batch", "slow", "herd", "annotations", "iiif", "memory")
SLOW_LATENCY_MS = 2000
BOX = (100, 100, 405, 400)
MAX_PIXELS = 40_000_000
SETTINGS = Settings()  # the defaults the service runs with: quality, encoder effort
# The earlier FastAPI version on this kind of machine, stand-in adding 50 ms (from issue #4).
EARLIER = {
    "cold": "176 ms", "second": "185 ms", "batch": "22 crops/s", "post": "141 req/s (1,143 with no added latency)",
    "get": "1,891 req/s (thumbor 1,675)", "memory": "n/a", "huge": "downloaded it",
}
# Before issue #13 (its own words and figures).
BEFORE_13 = {
    "http": "0.55-0.86x", "in_process": "+172 us (457 vs 285)", "second": "~25 ms, ~2x encode",
    "batch": "150-176 crops/s", "cold": "1.10x parts", "share": "one worker idle for a minute",
}


def crop_body(image, box, fmt="webp", **options):
    x1, y1, x2, y2 = box
    return {"uuid": image["uuid"], "x1": x1, "y1": y1, "x2": x2, "y2": y2, "format": fmt, **options}


def median_ms(seconds):
    return statistics.median(seconds) * 1000


def encode(image, fmt="webp"):
    """A crop encoded as the service encodes it, with the default settings."""
    return imaging.encode(image, fmt, SETTINGS.quality, encoder_options(SETTINGS).get(fmt))


class Bench:
    def __init__(self, standin, app, nginx, cache_dir, runs, seconds):
        self.standin, self.app, self.nginx = standin, app, nginx
        self.cache_dir, self.runs, self.seconds = Path(cache_dir), runs, seconds
        self.catalog = standin.catalog()
        self.session = requests.Session()
        self.crop_url = f"{app.url}/cropper/"
        self.targets = {}  # issue -> [(what, measured, target, before, verdict)]
        self.figures = {}  # issue -> [(what, figure)]: what issues #9 and #10 ask to quote

    # -- helpers
    def forget(self, uuid, boxes_too=()):
        """Drop an image's source, crops and IIIF outputs (and the given boxes' metadata): cold again."""
        for family in ("crops", "iiif"):
            shutil.rmtree(self.cache_dir / family / uuid[:2] / uuid, ignore_errors=True)
        for suffix in (".json", ".pix"):
            (self.cache_dir / "sources" / uuid[:2] / f"{uuid}{suffix}").unlink(missing_ok=True)
        for box_uuid in boxes_too:
            (self.cache_dir / "sources" / box_uuid[:2] / f"{box_uuid}.box").unlink(missing_ok=True)

    def pixels_stored(self, uuid):
        return (self.cache_dir / "sources" / uuid[:2] / f"{uuid}.pix").exists()

    def wait_for_pixels(self, uuid, seconds=30):
        """The pixels of a fresh image are stored just after its first crop is answered."""
        deadline = time.monotonic() + seconds
        while not self.pixels_stored(uuid) and time.monotonic() < deadline:
            time.sleep(0.01)

    def report(self, name, stats=None, note=""):
        stats = stats or {}
        median = f"{stats['median_ms']:8.1f}" if "median_ms" in stats else " " * 8
        p95 = f"{stats['p95_ms']:8.1f}" if "p95_ms" in stats else " " * 8
        print(f"  {name:<66} {median} {p95}  {note}", flush=True)

    def target(self, issue, what, measured, goal, before, met):
        self.targets.setdefault(issue, []).append((what, measured, goal, before, "meets" if met else "MISSES"))

    def figure(self, issue, what, value):
        self.figures.setdefault(issue, []).append((what, value))

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

    def box_lookups(self):
        return sum(n for call, n in self.standin.counts()["by_path"].items()
                   if call.startswith("GET /api/boundingboxes/"))

    # -- issue #4 and #13: the crop paths
    def cold_crop(self):
        """A cold crop, and its unavoidable parts timed alone: lookup, download, decode, encode."""
        image = self.catalog["framegrab"]
        times = []
        for _ in range(self.runs):
            self.forget(image["uuid"])
            times.append(timed(lambda: post_json(self.session, self.crop_url, crop_body(image, BOX)))[0])
            self.wait_for_pixels(image["uuid"])  # stored after the answer: not part of it, but not overlapping the next
        self.report("cold crop (1920x1080 PNG: lookup, download, decode, crop, answer)", summary(times))
        api_url = f"{self.standin.api_url}/images/{image['uuid']}"
        lookup = [timed(lambda: self.session.get(api_url, timeout=10).json())[0] for _ in range(self.runs)]
        download = [timed(lambda: self.session.get(image["url"], timeout=10).content)[0] for _ in range(self.runs)]
        data = self.session.get(image["url"], timeout=10).content
        decode = [timed(lambda: imaging.decode(io.BytesIO(data), MAX_PIXELS, (1920, 1080)))[0]
                  for _ in range(self.runs)]
        decoded = imaging.decode(io.BytesIO(data), MAX_PIXELS, (1920, 1080))
        encoding = [timed(lambda: encode(decoded.crop(BOX)))[0] for _ in range(self.runs)]
        parts = {"lookup": lookup, "download": download, "decode": decode, "encode": encoding}
        for name, seconds in parts.items():
            self.report(f"  part alone: {name}", summary(seconds))
        total = sum(median_ms(seconds) for seconds in parts.values())
        ratio = median_ms(times) / total
        self.report("  cold crop / sum of its parts' medians",
                    note=f"{ratio:.2f} ({median_ms(times):.1f} / {total:.1f} ms)")
        self.target(4, "cold crop vs its unavoidable parts", f"{median_ms(times):.0f} ms = {ratio:.2f}x parts",
                    "<= 1.20x", EARLIER["cold"], ratio <= 1.2)
        self.target(13, "cold crop vs its parts timed alone", f"{ratio:.2f}x ({median_ms(times):.0f} ms)",
                    "<= 1.05x", BEFORE_13["cold"], ratio <= 1.05)

    def second_box(self):
        """New boxes (200 to 600 pixels) of cached 1080p and 4K images, against encoding each crop alone."""
        rng = random.Random(13)
        over_http, alone = [], []
        for name in ("framegrab-0", "large"):
            image = self.catalog[name]
            decoded = imaging.decode(io.BytesIO(self.session.get(image["url"], timeout=30).content), MAX_PIXELS,
                                     (image["width"], image["height"]))
            self.forget(image["uuid"])
            self.standin.reset()
            post_json(self.session, self.crop_url, crop_body(image, (0, 0, 10, 10)))
            self.wait_for_pixels(image["uuid"])
            http_times, encode_times = [], []
            for _ in range(self.runs):
                width, height = rng.randint(200, 600), rng.randint(200, 600)
                x, y = rng.randrange(image["width"] - width), rng.randrange(image["height"] - height)
                box = (x, y, x + width, y + height)
                http_times.append(timed(lambda: post_json(self.session, self.crop_url, crop_body(image, box)))[0])
                cut = decoded.crop(box)
                cut.load()
                encode_times.append(timed(lambda: encode(cut))[0])  # once, as the service encodes it
            downloads = self.standin.counts(image["uuid"])["downloads"]
            self.report(f"second box of a cached {image['width']}x{image['height']} image, 200-600 px",
                        summary(http_times), f"downloads of the image: {downloads}")
            self.report("  encoding those crops alone (WebP, default settings)", summary(encode_times),
                        f"ratio {median_ms(http_times) / median_ms(encode_times):.2f}")
            over_http += http_times
            alone += encode_times
        ratio = median_ms(over_http) / median_ms(alone)
        self.target(4, "second box of a cached image (1080p and 4K)", f"{median_ms(over_http):.1f} ms median",
                    "< 20 ms", EARLIER["second"], median_ms(over_http) < 20)
        self.target(13, "second box (200-600 px) vs encoding it alone",
                    f"{median_ms(over_http):.1f} ms = {ratio:.2f}x", "<= 1.3x and <= 15 ms", BEFORE_13["second"],
                    ratio <= 1.3 and median_ms(over_http) <= 15)
        self.raw_against_decode()

    def raw_against_decode(self):
        """What keeping raw pixels saves over decoding the PNG again, in process."""
        image = self.catalog["framegrab-0"]
        pix = self.cache_dir / "sources" / image["uuid"][:2] / f"{image['uuid']}.pix"
        png = self.session.get(image["url"], timeout=10).content

        def from_raw():
            with imaging.RawImage(open(pix, "rb")) as source:
                return encode(source.crop(Box(*BOX)))

        def from_png():
            return encode(imaging.decode(io.BytesIO(png), MAX_PIXELS, (1920, 1080)).crop(BOX))

        raw = [timed(from_raw)[0] for _ in range(self.runs)]
        decoded = [timed(from_png)[0] for _ in range(self.runs)]
        self.report("  in-process: cut from the memory-mapped raw pixels + encode", summary(raw))
        self.report("  in-process: decode the PNG again + cut + encode (baseline)", summary(decoded),
                    f"raw pixels are {median_ms(decoded) / median_ms(raw):.1f}x faster")

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
        self.target(4, "cached repeat POST, wrk -t2 -c8, to Gunicorn (median of 3)",
                    f"{rates[LATENCY_MS]:,.0f} / {rates[SLOW_LATENCY_MS]:,.0f} req/s (FathomNet 50 ms / 2 s)",
                    ">= 3,000 req/s", EARLIER["post"], slowest >= 3000)

    def against_the_floor(self, env, run_dir):
        """The cached POST against a bare Flask app: in process, then over HTTP under the same Gunicorn."""
        body = crop_body(self.catalog["framegrab"], BOX)
        settings = Settings(cache_dir=self.cache_dir, fathomnet_api_url=self.standin.api_url,
                            allowed_image_hosts=(f"127.0.0.1:{self.standin.port}",), cache_prune_interval=0)
        micro = floor.in_process(settings, body)
        gap = micro["service"] - micro["bare"]
        self.report("cached POST in process (Flask test client, 5 x 2,000, ABAB)",
                    note=f"service {micro['service']:.0f} us, bare Flask {micro['bare']:.0f} us: +{gap:.0f} us")
        self.target(13, "cached POST in process, above the bare Flask app", f"+{gap:.0f} us "
                    f"({micro['service']:.0f} vs {micro['bare']:.0f})", "<= +50 us", BEFORE_13["in_process"],
                    gap <= 50)
        if shutil.which("wrk") is None:
            self.report("cached POST over HTTP against the bare app", note="skipped: wrk is not installed")
            return
        http = floor.over_http(self.app, env, run_dir, body, self.seconds)
        ratio = http["service"] / http["bare"]
        rounds = "; ".join(f"{a:,.0f}/{b:,.0f}" for a, b in zip(http["rounds"]["service"], http["rounds"]["bare"]))
        self.report("cached POST, wrk -t2 -c8, service / bare app (ABAB x 5)",
                    note=f"{http['service']:,.0f} / {http['bare']:,.0f} req/s = {ratio:.2f} [{rounds}]")
        self.target(13, "cached POST vs bare Flask, same Gunicorn (median of 5)",
                    f"{ratio:.2f}x ({http['service']:,.0f} / {http['bare']:,.0f} req/s)", ">= 0.9x",
                    BEFORE_13["http"], ratio >= 0.9)

    def worker_share(self, metrics_dir):
        """Requests per Gunicorn worker under 64 keep-alive connections, to Gunicorn and through nginx."""
        if shutil.which("wrk") is None:
            self.report("requests per worker under wrk -c64", note="skipped: wrk is not installed")
            return
        body = crop_body(self.catalog["framegrab"], BOX)
        spreads = []
        for name, base in (("Gunicorn alone", self.app.url), ("nginx", self.nginx.url if self.nginx else None)):
            if base:
                share = floor.worker_share(self.app, f"{base}/cropper/", body, metrics_dir, max(self.seconds, 5))
                spreads.append((name, share["spread"]))
                self.report(f"requests per worker, cached POST, wrk -t2 -c64 to {name}", note=(
                    f"{', '.join(f'{c:,.0f}' for c in share['counts'])} (max/min {share['spread']:.2f}; "
                    f"{share['rps']:,.0f} req/s; workers recycled meanwhile: {share['recycled']})"))
        self.target(13, "requests per worker under wrk -c64, max/min",
                    ", ".join(f"{spread:.2f} ({name})" for name, spread in spreads), "<= 2", BEFORE_13["share"],
                    all(spread <= 2 for _, spread in spreads))

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
            self.target(4, "cached image GET through nginx (median of 3)", f"{rates['nginx']:,.0f} req/s",
                        ">= 50,000 req/s", EARLIER["get"], rates["nginx"] >= 50000)

    def timed_batch(self, images, body, url=None, boxes_too=()):
        """Times of one batch request over cold images, with the downloads, decodes and box lookups of each."""
        times, downloads, decodes, lookups = [], [], [], []
        for _ in range(max(3, self.runs // 3)):
            for image in images:
                self.forget(image["uuid"], boxes_too)
            self.standin.reset()
            elapsed, answer = timed(lambda: post_json(self.session, url or f"{self.app.url}/cropper-list/", body))
            crops = answer["crops"] if isinstance(answer, dict) else answer
            assert all("url" in crop for crop in crops), crops[:3]
            times.append(elapsed)
            downloads.append(self.standin.counts()["downloads"])
            lookups.append(self.box_lookups())
            for image in images:
                self.wait_for_pixels(image["uuid"])
            decodes.append(sum(1 for image in images if self.pixels_stored(image["uuid"])))
        return {"times": times, "downloads": downloads, "decodes": decodes, "lookups": lookups,
                "rate": len(crops) / statistics.median(times)}

    def batch(self):
        """100 crops over 10 images in one /cropper-list/ request, every image cold."""
        images = [self.catalog[f"framegrab-{i}"] for i in range(10)]
        body = [crop_body(image, (15 * j, 9 * j, 15 * j + 260, 9 * j + 180)) for image in images for j in range(10)]
        run = self.timed_batch(images, body)
        self.report("100 crops over 10 cold images, one /cropper-list/ request", summary(run["times"]),
                    f"{run['rate']:.0f} crops/s; downloads {run['downloads']}; decodes {run['decodes']}")
        made_once = max(run["downloads"]) == 10 and max(run["decodes"]) == 10
        self.target(4, "100 crops over 10 images via /cropper-list/",
                    f"{run['rate']:.0f} crops/s, {max(run['downloads'])} downloads, {max(run['decodes'])} decodes",
                    ">= 150 crops/s, 10, 10", EARLIER["batch"], run["rate"] >= 150 and made_once)
        self.target(13, "100 crops over 10 cold images via /cropper-list/",
                    f"{run['rate']:.0f} crops/s, {max(run['downloads'])} downloads, {max(run['decodes'])} decodes",
                    ">= 250 crops/s, 10, 10", BEFORE_13["batch"], run["rate"] >= 250 and made_once)
        self.plain_batch_rate = run["rate"]

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
            self.wait_for_pixels(image["uuid"])
        self.report(f"{clients} identical cold requests at once (3840x2160)", summary(latencies),
                    f"downloads per round: {downloads}")

    # -- issue #9: crops of annotations
    def annotations(self):
        images = [self.catalog[name] for name in SURVEY_NAMES]
        box_uuids = [b["uuid"] for name in SURVEY_NAMES for b in boxes(name)]
        body = {"crops": [{"box_uuid": uuid} for uuid in box_uuids], "width": 224, "height": 224, "fit": "cover"}
        for label, boxes_too in (("boxes never seen", box_uuids), ("boxes remembered", ())):
            run = self.timed_batch(images, body, boxes_too=boxes_too)
            self.report(f"100 box-UUID crops, 224x224 cover, 10 cold images, {label}", summary(run["times"]),
                        f"{run['rate']:.0f} crops/s; box lookups {run['lookups']}; downloads {run['downloads']}; "
                        f"decodes {run['decodes']}")
            self.figure(9, f"100 box-UUID crops at 224x224 cover over 10 images, {label}",
                        f"{run['rate']:.0f} crops/s, {max(run['lookups'])} box lookups, {max(run['downloads'])} "
                        f"downloads, {max(run['decodes'])} decodes")
        self.target(9, "100 box-UUID crops, boxes remembered, vs 100 plain crops",
                    f"{run['rate']:.0f} vs {self.plain_batch_rate:.0f} crops/s", "at least as fast",
                    f"plain then: {BEFORE_13['batch']}",
                    run["rate"] >= self.plain_batch_rate)
        concept = {"concept": SURVEY_CONCEPT, "limit": 100, "width": 224, "height": 224, "fit": "cover"}
        run = self.timed_batch(images, concept, url=f"{self.app.url}/cropper-concept/")
        self.report("a concept page of 100 boxes over 10 cold images, 224x224 cover", summary(run["times"]),
                    f"{run['rate']:.0f} crops/s; downloads {run['downloads']}")
        warm = [timed(lambda: post_json(self.session, f"{self.app.url}/cropper-concept/", concept))[0]
                for _ in range(self.runs)]
        self.report("  the same page again, every crop cached", summary(warm))
        self.figure(9, "a concept page of 100 boxes (10 cold images / all cached)",
                    f"{median_ms(run['times']):.0f} ms ({run['rate']:.0f} crops/s) / {median_ms(warm):.0f} ms")
        self.thumbnail()

    def thumbnail(self):
        """A 256-pixel thumbnail of a whole 3840x2160 image: cold, then made from stored pixels, then cached."""
        image = self.catalog["large"]
        body = crop_body(image, (0, 0, 3840, 2160), width=256)
        cold, warm = [], []
        for _ in range(max(3, self.runs // 3)):
            self.forget(image["uuid"])
            cold.append(timed(lambda: post_json(self.session, self.crop_url, body))[0])
            self.wait_for_pixels(image["uuid"])
        for _ in range(self.runs):
            shutil.rmtree(self.cache_dir / "crops" / image["uuid"][:2] / image["uuid"], ignore_errors=True)
            warm.append(timed(lambda: post_json(self.session, self.crop_url, body))[0])
        cached = [timed(lambda: post_json(self.session, self.crop_url, body))[0] for _ in range(self.runs)]
        self.report("256-px thumbnail of a 3840x2160 image, cold", summary(cold))
        self.report("  from its stored pixels (warm)", summary(warm))
        self.report("  cached", summary(cached))
        self.figure(9, "256-px thumbnail of a whole 3840x2160 image, cold / warm / cached",
                    f"{median_ms(cold):.0f} / {median_ms(warm):.1f} / {median_ms(cached):.1f} ms")

    # -- issue #10: IIIF
    def iiif(self):
        image = self.catalog["large"]
        base = self.nginx.url if self.nginx else self.app.url
        info_url = f"{base}/iiif/3/{image['uuid']}/info.json"
        cold = []
        for _ in range(self.runs):
            self.forget(image["uuid"])
            cold.append(timed(lambda: self.session.get(info_url, timeout=30).raise_for_status())[0])
        warm = [timed(lambda: self.session.get(info_url, timeout=30).raise_for_status())[0] for _ in range(self.runs)]
        self.report("IIIF info.json of a 3840x2160 image, cold (one metadata lookup)", summary(cold))
        self.report("  warm (metadata remembered)", summary(warm))
        self.figure(10, "info.json cold / warm", f"{median_ms(cold):.1f} / {median_ms(warm):.1f} ms")
        paths = [f"/iiif/3/{image['uuid']}/{r.x1},{r.y1},{r.width},{r.height}/{w},{h}/0/default.jpg"
                 for r, (w, h) in list(iiif.tile_regions(3840, 2160, 256, 1))[:64]]
        rates, downloads, decodes = [], [], []
        for _ in range(3):
            self.forget(image["uuid"])
            self.standin.reset()

            def fetch(path):
                return requests.get(base + path, timeout=60).raise_for_status()

            with ThreadPoolExecutor(8) as pool:
                elapsed, _ = timed(lambda: list(pool.map(fetch, paths)))
            rates.append(len(paths) / elapsed)
            downloads.append(self.standin.counts(image["uuid"])["downloads"])
            self.wait_for_pixels(image["uuid"])
            decodes.append(int(self.pixels_stored(image["uuid"])))
        rate = statistics.median(rates)
        via = "nginx" if self.nginx else "Gunicorn"
        self.report(f"64 256-px tiles of a cold 3840x2160 image at scale factor 1, 8 at a time, via {via}",
                    note=f"{rate:.0f} tiles/s median of [{', '.join(f'{r:.0f}' for r in rates)}]; "
                         f"downloads {downloads}; decodes {decodes}")
        self.figure(10, "64 tiles of a cold 4K image at scale factor 1, 8 at a time",
                    f"{rate:.0f} tiles/s, {max(downloads)} download(s), {max(decodes)} decode(s)")
        if self.nginx and shutil.which("wrk"):
            result = wrk(self.nginx.url, seconds=self.seconds, paths=paths)
            self.report("  the same 64 tiles again from nginx's disk, wrk -t2 -c8", note=(
                f"{result['rps']:,.0f} req/s (non-2xx {result['non_2xx']})"))
            self.figure(10, "the same tiles again through nginx, wrk -t2 -c8", f"{result['rps']:,.0f} req/s")


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
            time.sleep(0.5)  # the pixels are stored just after the answers
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
    from cropper.ops.serve import find_nginx

    if find_nginx() is None:
        return None
    limits = {"api_rate": "100000r/s", "api_burst": 100000, "regen_rate": "100000r/s", "regen_burst": 100000,
              "iiif_rate": "100000r/s", "iiif_burst": 100000}
    return NginxServer(app, cache_dir, run_dir, **limits).start()


def run_all(standin, tmp, worker_class, args):
    run_dir = f"{tmp}/{worker_class}"
    cache = f"{run_dir}/cache"
    os.makedirs(run_dir)
    env = {"CACHE_DIR": cache, "FATHOMNET_API_URL": standin.api_url, "ALLOWED_IMAGE_HOSTS": f"127.0.0.1:{standin.port}",
           "GUNICORN_WORKER_CLASS": worker_class, "METRICS_DIR": f"{run_dir}/metrics"}
    with Gunicorn(env, cwd=run_dir, workers=args.workers) as app:
        nginx = start_nginx(app, cache, run_dir)
        try:
            bench = Bench(standin, app, nginx, cache, args.runs, args.seconds)
            bench.warm_standin()
            front = "in front" if nginx else "not installed"
            print(f"\nGunicorn {worker_class}, {app.workers} workers; nginx {front}; "
                  f"load: {'wrk -t2 -c8' if shutil.which('wrk') else '8 Python threads (wrk missing)'}")
            print(f"  {'':<66} {'median':>8} {'p95':>8}  (ms; the stand-in adds {LATENCY_MS} ms per request)")
            steps = {
                "cold": bench.cold_crop, "second": bench.second_box, "repeat": bench.cached_repeat,
                "floor": lambda: bench.against_the_floor(env, f"{run_dir}/bare"),
                "share": lambda: bench.worker_share(f"{run_dir}/metrics"), "get": bench.cached_get,
                "batch": bench.batch, "slow": bench.cached_during_slow_downloads, "herd": bench.thundering_herd,
                "annotations": bench.annotations, "iiif": bench.iiif,
            }
            headings = {"annotations": "Annotations (issue #9)", "iiif": "IIIF (issue #10)"}
            for name, step in steps.items():
                if args.only is None or name in args.only:
                    if name in headings:
                        print(f"\n{headings[name]}")
                    step()
            return bench
        finally:
            if nginx:
                nginx.stop()


def print_tables(bench, worker_class):
    headings = {4: "the first version", 9: "crops by annotation", 13: "speed to the floor"}
    for issue, rows in sorted(bench.targets.items()):
        print(f"\nTargets of issue #{issue} ({headings[issue]}), Gunicorn {worker_class}:")
        before = "earlier version" if issue == 4 else "before this issue"
        print(f"  {'what':<58} {'measured':<44} {'target':<24} {before:<40} verdict")
        for what, measured, goal, earlier, verdict in rows:
            print(f"  {what:<58} {measured:<44} {goal:<24} {earlier:<40} {verdict}")
    for issue, rows in sorted(bench.figures.items()):
        print(f"\nFigures issue #{issue} asks for:")
        for what, value in rows:
            print(f"  {what:<72} {value}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="timed repetitions per figure")
    parser.add_argument("--seconds", type=int, default=5, help="length of each load test")
    parser.add_argument("--workers", type=int, default=3, help="Gunicorn workers")
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter loads")
    parser.add_argument("--worker-classes", default="gthread",
                        help="comma-separated Gunicorn worker classes to measure in turn, e.g. sync,gthread")
    parser.add_argument("--only", type=lambda text: set(text.split(",")), default=None,
                        help=f"comma-separated steps to run, of: {', '.join(STEPS)} (default: all)")
    args = parser.parse_args(argv)
    if args.only is not None and not args.only <= set(STEPS):
        parser.error(f"--only takes steps of: {', '.join(STEPS)}")
    if args.quick:
        args.runs, args.seconds = 5, 2
    with tempfile.TemporaryDirectory() as tmp, StandInProcess(latency_ms=LATENCY_MS) as standin:
        benches = [run_all(standin, tmp, worker_class, args) for worker_class in args.worker_classes.split(",")]
        if args.only is None or "memory" in args.only:
            print("\nMemory")
            peak, refused_status, huge_downloads = memory(standin, tmp)
    bench = benches[-1]
    if args.only is None or "memory" in args.only:
        bench.target(4, "peak RSS of a worker, 8 clients cropping 3840x2160", f"{peak:.0f} MiB", "< 300 MB",
                     EARLIER["memory"], peak * 1.048576 < 300)
        bench.target(4, "image over the pixel limit by FathomNet's size",
                     f"{refused_status}, {huge_downloads} downloads", "refused before download", EARLIER["huge"],
                     refused_status == 422 and huge_downloads == 0)
    print_tables(bench, args.worker_classes.split(",")[-1])


if __name__ == "__main__":
    main()
