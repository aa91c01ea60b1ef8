"""What revalidation costs a box crop: `python -m bench.freshness [--latency-ms 50]`.

In-process (the app's test client, the FathomNet stand-in in a thread), every crop already made, the
median milliseconds of: a crop named by its pixel region (never asks FathomNet); a box crop whose
box is remembered within METADATA_TTL (no call); one whose box is older (asked again through its
image's record: one query); one whose box was never seen (one box lookup).
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cropper import create_app
from cropper.config import Settings
from devtools.standin import ANNOTATED_NAMES, FathomNetStandIn, boxes


def median_ms(action, times):
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        spent.append(time.perf_counter() - started)
    return statistics.median(spent) * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the stand-in's delay per answer")
    parser.add_argument("--times", type=int, default=200)
    args = parser.parse_args(argv)
    with FathomNetStandIn(latency=args.latency_ms / 1000) as standin, tempfile.TemporaryDirectory() as folder:
        settings = Settings(cache_dir=Path(folder), fathomnet_api_url=standin.api_url, cache_prune_interval=0,
                            allowed_image_hosts=(f"127.0.0.1:{standin.port}",), public_url="http://crops.test")
        app = create_app(settings)
        client, sources = app.test_client(), app.extensions["cropper"].sources
        record = standin.image("framegrab")
        region = {"uuid": record.uuid, "x1": 0, "y1": 0, "x2": 64, "y2": 64}
        annotations = [box for name in ANNOTATED_NAMES for box in boxes(name)]
        for body in [region, *({"box_uuid": box["uuid"]} for box in annotations)]:  # made, and remembered
            client.post("/cropper/", json=body)
        box = {"box_uuid": annotations[0]["uuid"]}

        def older():  # the clock moved on past METADATA_TTL since the box (and its image) were fetched
            later = time.time() + (older.turns + 1) * (settings.metadata_ttl + 1)
            sources.clock = lambda: later
            older.turns += 1
            client.post("/cropper/", json=box)

        older.turns = 0

        def never_seen():
            sources.store.forget_box(box["box_uuid"])
            client.post("/cropper/", json=box)

        print(f"stand-in latency {args.latency_ms:g} ms; median of {args.times} (10x for the first two):")
        made = median_ms(lambda: client.post("/cropper/", json=region), 10 * args.times)
        print(f"  pixel-region crop, made:            {made:7.3f} ms")
        remembered = median_ms(lambda: client.post("/cropper/", json=box), 10 * args.times)
        print(f"  box crop, box remembered (no call): {remembered:7.3f} ms")
        print(f"  box crop, box older than the TTL:   {median_ms(older, args.times):7.3f} ms")
        sources.clock = time.time
        print(f"  box crop, box never seen:           {median_ms(never_seen, args.times):7.3f} ms")

if __name__ == "__main__":
    main()
