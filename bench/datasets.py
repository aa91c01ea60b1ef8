"""A data-set job against its floor: `python -m bench.datasets [--rounds N]`.

1,000 boxes over 100 fresh 1280x720 images (the stand-in's bench family, answering in 50 ms), made
into an ImageFolder zip by a data-set job (Gunicorn, its arbiter's data-set worker, a cold cache),
against a plain script that does the same work with no service: the same FathomNet queries, the same
downloads, decodes, crops and WebP encodes, DATASET_WORKERS images at a time and a thread per core
for the encodes, the crops written into a zip. Alternating (ABAB), so drifts of the machine hit
both; medians. Also the peak RSS of the data-set worker and of Gunicorn's workers.
"""

import argparse
import hashlib
import io
import os
import statistics
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import requests
from PIL import Image

from bench.run import peak_rss_mib
from devtools.servers import Gunicorn, StandInProcess
from devtools.standin import BENCH_DATASET_CONCEPT, BENCH_NAMES

WORKERS = 4  # DATASET_WORKERS: images at a time, for the job and the floor alike
BOXES = 1000
PAGE = 500


def floor(standin, folder):
    """The same work as a plain script: (seconds, crops)."""
    session = requests.Session()
    started = time.perf_counter()
    boxes = []
    while len(boxes) < BOXES:
        page = session.post(f"{standin.api_url}/boundingboxes/query", json={
            "concept": BENCH_DATASET_CONCEPT, "limit": PAGE, "offset": len(boxes)}, timeout=60).json()
        boxes += page["content"]
        if not page["content"]:
            break
    boxes = boxes[:BOXES]
    uuids = sorted({box["imageUuid"] for box in boxes})
    images = {}
    for start in range(0, len(uuids), 100):
        for record in session.post(f"{standin.api_url}/images/query/uuids", json=uuids[start:start + 100],
                                   timeout=60).json():
            images[record["uuid"]] = record
    by_image = {}
    for box in boxes:
        by_image.setdefault(box["imageUuid"], []).append(box)

    def decoded(uuid):
        data = requests.get(images[uuid]["url"], timeout=60).content
        hashlib.sha256(data).hexdigest()  # the job checks FathomNet's sha256 too
        image = Image.open(io.BytesIO(data))
        image.load()
        return uuid, image

    def encoded(image, box):
        crop = image.crop((box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]))
        out = io.BytesIO()
        crop.save(out, "WEBP", quality=90, method=0)
        return box["uuid"], out.getvalue()

    with ThreadPoolExecutor(WORKERS) as fetch, ThreadPoolExecutor(os.cpu_count() or 1) as encode, \
            zipfile.ZipFile(os.path.join(folder, "floor.zip"), "w", zipfile.ZIP_STORED) as archive:
        pending = [encode.submit(encoded, image, box)
                   for uuid, image in fetch.map(decoded, by_image) for box in by_image[uuid]]
        for future in pending:
            name, data = future.result()
            archive.writestr(f"train/{BENCH_DATASET_CONCEPT}/{name}.webp", data)
    return time.perf_counter() - started, len(boxes)


def job(standin, folder):
    """A data-set job of the same boxes on a fresh service: (seconds, crops, worker's peak MiB, workers' MiB)."""
    env = {"CACHE_DIR": f"{folder}/cache", "FATHOMNET_API_URL": standin.api_url,
           "ALLOWED_IMAGE_HOSTS": f"127.0.0.1:{standin.port}", "DATASET_WORKERS": str(WORKERS),
           "CACHE_PRUNE_INTERVAL": "0", "METRICS_DIR": f"{folder}/metrics"}
    with Gunicorn(env, cwd=folder, workers=2) as app:
        deadline = time.monotonic() + 30
        while app.helper_pid("datasets") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        requests.get(f"{app.url}/datasets/{'0' * 32}", timeout=10)  # each worker's first request made
        started = time.perf_counter()
        answer = requests.post(f"{app.url}/datasets", json={"concepts": [BENCH_DATASET_CONCEPT],
                                                            "max_boxes": BOXES}, timeout=60).json()
        while answer.get("status") in ("queued", "running"):
            time.sleep(0.05)
            answer = requests.get(answer["url"], timeout=10).json()
        took = time.perf_counter() - started
        assert answer["status"] == "done", answer
        worker_mib = peak_rss_mib(app.helper_pid("datasets"))
        workers_mib = max(peak_rss_mib(pid) for pid in app.worker_pids())
    return took, answer["progress"]["crops_done"], worker_mib, workers_mib


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with StandInProcess(latency_ms=50) as standin, tempfile.TemporaryDirectory() as tmp:
        catalog = standin.catalog()
        for name in BENCH_NAMES:  # the stand-in makes its images once, before anything is timed
            requests.get(catalog[name]["url"], timeout=60)
        floors, jobs = [], []
        for round_ in range(args.rounds):
            for name, runs, run in (("floor", floors, floor), ("job", jobs, job)):
                folder = os.path.join(tmp, f"{name}-{round_}")
                os.makedirs(folder)
                standin.reset()
                runs.append(run(standin, folder))
                downloads = standin.counts()["downloads"]
                print(f"  round {round_ + 1} {name}: {runs[-1][0]:.2f} s, {runs[-1][1]} crops, "
                      f"{downloads} downloads", flush=True)
    floor_s = statistics.median(run[0] for run in floors)
    job_s = statistics.median(run[0] for run in jobs)
    crops = jobs[0][1]
    print(f"\nA data set of {crops} boxes over {len(BENCH_NAMES)} fresh images, the stand-in at 50 ms "
          f"(medians of {args.rounds}, ABAB):")
    print(f"  plain script (the floor)     {floor_s:6.2f} s   {crops / floor_s:6.1f} crops/s")
    print(f"  data-set job                 {job_s:6.2f} s   {crops / job_s:6.1f} crops/s")
    print(f"  job / floor (crops/s)        {floor_s / job_s:.2f}x   target >= 0.90x: "
          f"{'meets' if floor_s / job_s >= 0.9 else 'MISSES'}")
    worker_mib, workers_mib = max(run[2] for run in jobs), max(run[3] for run in jobs)
    print(f"  peak RSS: data-set worker {worker_mib:.0f} MiB, Gunicorn's workers {workers_mib:.0f} MiB   "
          f"target < 300 MB: {'meets' if max(worker_mib, workers_mib) * 1.048576 < 300 else 'MISSES'}")


if __name__ == "__main__":
    main()
