"""Bytes and milliseconds of each encoder setting on crops like the service makes: `python -m bench.encoders`.

A crop is encoded once and served many times, so the settings trade a little time now for bytes
on every later GET. This measures both for Pillow's knobs (WebP's method, JPEG's optimize and
progressive, PNG's compress_level) on crops of 200 to 600 pixels cut from the stand-in's 1080p
PNG framegrab and its JPEG photo, and prints medians (ms), mean sizes (KiB) and the median PSNR
of the decoded crop against the original (dB; lossless PNG is infinite) per setting.
"""

import argparse
import io
import math
import random
import statistics
import time
from pathlib import Path

from PIL import Image, ImageChops

from cropper import imaging
from devtools.standin import FathomNetStandIn

SETTINGS = [
    ("webp", {"quality": 90, "method": method}) for method in range(7)
] + [
    ("jpeg", {"quality": 90}),
    ("jpeg", {"quality": 90, "optimize": True}),
    ("jpeg", {"quality": 90, "progressive": True}),
] + [
    ("png", {"compress_level": level}) for level in (1, 3, 6, 9)
]


def crops(sources, count, seed=1):
    """count crops of 200 to 600 pixels a side, from random places of the sources."""
    rng = random.Random(seed)
    for i in range(count):
        source = sources[i % len(sources)]
        width, height = rng.randint(200, 600), rng.randint(200, 600)
        x, y = rng.randrange(source.width - width), rng.randrange(source.height - height)
        yield source.crop((x, y, x + width, y + height))


def psnr(original, encoded):
    """Peak signal-to-noise ratio of the decoded bytes against the crop, in dB (higher: closer)."""
    decoded = Image.open(io.BytesIO(encoded)).convert(original.mode)
    histogram = ImageChops.difference(original, decoded).histogram()
    squares = sum(count * (value % 256) ** 2 for value, count in enumerate(histogram))
    mse = squares / (original.width * original.height * len(original.getbands()))
    return float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def measure(images, fmt, options, repeats):
    times, sizes, quality = [], [], []
    for image in images:
        for _ in range(repeats):
            out = io.BytesIO()
            started = time.perf_counter()
            image.save(out, fmt.upper(), **options)
            times.append(time.perf_counter() - started)
        sizes.append(out.tell())
        quality.append(psnr(image, out.getvalue()))
    return statistics.median(times) * 1000, statistics.mean(sizes) / 1024, statistics.median(quality)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--crops", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=Path, help="a folder of your own PNG/JPEG images to crop instead of the "
                        "stand-in's synthetic ones (their noise makes every setting's PSNR alike)")
    args = parser.parse_args(argv)
    if args.images:
        files = sorted(f for f in args.images.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
        sources = [imaging.normalise_mode(Image.open(f)) for f in files[:20]]
        what = f"{len(sources)} images of {args.images}"
    else:
        with FathomNetStandIn() as standin:
            sources = [imaging.normalise_mode(Image.open(io.BytesIO(standin.image(name).data)))
                       for name in ("framegrab", "jpeg")]
        what = "the stand-in's 1080p PNG framegrab and JPEG photo"
    images = list(crops([source for source in sources if min(source.size) > 600], args.crops))
    print(f"{len(images)} crops of 200-600 px from {what}; median ms per encode, mean KiB per crop")
    baseline = {}
    for fmt, options in SETTINGS:
        ms, kib, db = measure(images, fmt, options, args.repeats)
        first = baseline.setdefault(fmt, (ms, kib))
        label = ", ".join(f"{k}={v}" for k, v in options.items())
        print(f"  {fmt:<5} {label:<32} {ms:7.2f} ms  {kib:8.1f} KiB  PSNR {db:6.2f} dB   "
              f"({ms / first[0]:.2f}x the time, {kib / first[1]:.2f}x the bytes of {fmt}'s first row)", flush=True)


if __name__ == "__main__":
    main()
