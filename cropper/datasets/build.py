"""What a data-set job does: list the boxes, split them by image, make their crops, write the files.

The boxes come from FathomNet's box query, one paged query per concept asked (with descendants, its
`taxaProviderName` constraint has FathomNet expand the taxonomy itself: one query, whatever the
tree's size, where asking for each descendant would be one query each). FathomNet's taxa endpoint
is asked only to order two concepts asked when one lies below the other (`label: "asked"`).

Crops are made as batches make them (batch.make_all), a round of images at a time with the next
round under way: grouped by image, one download and one decode per image, DATASET_WORKERS images
at a time, the crop cache's own locks. A crop already in
the cache is found there, so a job that is taken up again after its worker died goes on from where
it stopped. A failing box never fails the job: it is listed in failures.csv.
"""

import hashlib
import json
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from .. import batch
from ..crops import CropRequest
from ..errors import CropperError
from ..upstream import BoxQuery, ImageInfo
from . import imagefolder, webdataset
from .request import FATHOMNET_FILTERS, SPLIT_NAMES

log = logging.getLogger(__name__)

PAGE = 500  # boxes per query page: a few hundred kB of JSON
IMAGES_PER_ROUND = 8  # images made between two progress reports (times DATASET_WORKERS)
ROUNDS_UNDER_WAY = 2  # rounds being made at once (see Builder.run)
ZIP_NAME = "imagefolder.zip"


class InTurn:
    """A round's turn to queue its downloads (batch.Pools.turn): it starts when the round before's is over, and
    is over once the round has queued them (or has ended). A turn never waits on a later round's."""

    def __init__(self, before):
        self.before = before
        self.over = threading.Event()

    def __enter__(self):
        if self.before is not None:
            self.before.over.wait()
        return self

    def __exit__(self, *exc):
        self.end()

    def end(self):
        self.over.set()


class JobStopped(Exception):
    """The job was cancelled, or is no longer this worker's to run."""


class JobFailed(CropperError):
    """A job that cannot produce a data set at all (no box matches, every box failed)."""

    code = "dataset_failed"


@dataclass(frozen=True)
class Selected:
    """A box chosen for the data set, with the label it gets."""

    box: object  # an upstream.BoxInfo
    label: str


def select(request, sources, between_pages=lambda: None):
    """The boxes of a DatasetRequest, each once, with its label, at most max_boxes; in a stable order.

    between_pages() is called after each page (it may stop the job)."""
    concepts = list(request.concepts)
    if request.descendants and request.label == "asked" and len(concepts) > 1:
        concepts = _deepest_first(concepts, request.taxa_provider, sources)
    chosen, seen = [], set()
    for concept in concepts:
        query = BoxQuery(concept, taxa_provider=request.taxa_provider if request.descendants else None,
                         **{FATHOMNET_FILTERS[name]: request.filters[name] for name in FATHOMNET_FILTERS})
        offset = 0
        while len(chosen) < request.max_boxes:
            page = sources.source.boxes(query, PAGE, offset)
            for box in page.boxes:
                if box.uuid not in seen and _kept(box, request.filters):
                    seen.add(box.uuid)
                    chosen.append(Selected(box, box.concept if request.label == "concept" else concept))
            offset += page.received
            between_pages()
            if not page.received or offset >= page.total:
                break
    return chosen[:request.max_boxes]


def _deepest_first(concepts, provider, sources):
    """The concepts asked, each after every other asked that lies below it in the taxonomy: a box found under
    two of them is labelled with the more specific (found first)."""
    below = {concept: set(sources.source.taxa(concept, provider)) - {concept} for concept in concepts}
    # A concept with more of those asked below it comes later (fewest first): a descendant before its ancestor.
    return sorted(concepts, key=lambda c: sum(other in below[c] for other in concepts))


def _kept(box, filters):
    """What only this service judges: the box's smaller side, and its occluded and truncated flags."""
    if filters.get("min_side") and min(box.width, box.height) < filters["min_side"]:
        return False
    if filters.get("exclude_occluded") and box.occluded:
        return False
    return not (filters.get("exclude_truncated") and box.truncated)


def split_of(image_uuid, fractions, seed):
    """The split of an image: a pure function of its uuid and the seed, so adding data never moves an image."""
    digest = hashlib.sha256(f"{seed}:{image_uuid}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    total = 0.0
    for name in SPLIT_NAMES:
        if name in fractions:
            total += fractions[name]
            if point < total:
                return name
    return [name for name in SPLIT_NAMES if name in fractions][-1]  # the rounding of the sum's last bit


class Builder:
    """Runs one job: made with the crop service, the data-set store, and a report(progress) -> bool callback
    (False: stop, the job was cancelled or taken over)."""

    def __init__(self, service, dataset_store, workers, source_url, shard_bytes):
        self.service = service
        self.sources = service.sources
        self.store = dataset_store
        self.workers = workers
        self.shard_bytes = shard_bytes
        self.source_url = source_url  # FathomNet's API, named in the data-set card

    def run(self, job_id, request, report):
        """Make the data set; return (files, counts, progress). JobFailed, JobStopped, or a CropperError."""
        started = time.monotonic()
        progress = {"boxes_total": None, "crops_done": 0, "crops_failed": 0, "images_downloaded": 0}
        selected = select(request, self.sources, lambda: self._report(report, progress, started))
        if not selected:
            raise JobFailed("No box matches this request: FathomNet has none of these concepts under these filters.")
        listed = time.monotonic()
        progress["boxes_total"] = len(selected)
        self._report(report, progress, started)
        # The images' records, in bulk (and remembered for the crops); an image FathomNet fails to describe now
        # is asked for again as its crops are made.
        infos = self.sources.infos(sorted({item.box.image_uuid for item in selected}))
        by_image = {}
        for item in selected:
            by_image.setdefault(item.box.image_uuid, []).append(item)
        images = list(by_image)
        size = IMAGES_PER_ROUND * self.workers
        rounds = [images[start:start + size] for start in range(0, len(images), size)]
        made, failures, fetches = [], [], self.sources.fetches

        def make(round_images, threads):
            chunk = [item for uuid in round_images for item in by_image[uuid]]
            requests = [batch.Item(CropRequest(box_uuid=item.box.uuid, **request.crop)) for item in chunk]
            try:
                return chunk, batch.make_all(self.service, requests, self.workers,
                                             annotations={item.box.uuid: item.box for item in chunk}, shared=threads)
            finally:
                threads.turn.end()  # also when the round had nothing to download

        # ROUNDS_UNDER_WAY rounds at once, sharing one set of threads (DATASET_WORKERS downloads at a time between
        # them) and one admission slot: the next round's images are downloaded while this round's crops are cut,
        # and its crops start while this round's last are still being cut, so neither the downloads nor the cores
        # wait at a round's end. Their downloads are queued in the order of the images, round after round, so a
        # job taken up again after its worker died finds every image before the one it was downloading whole.
        with self.service.admission.slot(), batch.pools(self.workers) as threads, \
                ThreadPoolExecutor(ROUNDS_UNDER_WAY) as rounds_pool:
            under_way, waiting, turn = deque(), deque(rounds), None

            def start_next():
                nonlocal turn
                turn = InTurn(turn)
                under_way.append(rounds_pool.submit(make, waiting.popleft(), replace(threads, turn=turn)))

            while waiting and len(under_way) < ROUNDS_UNDER_WAY:
                start_next()
            while under_way:
                chunk, outcomes = under_way.popleft().result()
                for item, outcome in zip(chunk, outcomes):
                    (failures if outcome.error else made).append((item, outcome))
                progress.update(crops_done=len(made), crops_failed=len(failures),
                                images_downloaded=self.sources.fetches - fetches)
                try:
                    self._report(report, progress, started)
                except JobStopped:  # the round under way finishes; none waits on a round that never started
                    for future in under_way:
                        future.cancel()
                    raise
                if waiting:  # after the report: a stopped job starts no other round
                    start_next()
        if not made:
            first = failures[0][1].error
            raise JobFailed(f"Every box failed; the first: {first.message}", first_code=first.code)
        cropped = time.monotonic()
        files, counts = self._write(job_id, request, made, failures, infos)
        log.info("data-set job %s: %d boxes listed in %.2f s, cropped in %.2f s, written in %.2f s", job_id,
                 len(selected), listed - started, cropped - listed, time.monotonic() - cropped)
        return files, counts, progress

    def _report(self, report, progress, started):
        done = progress["crops_done"] + progress["crops_failed"]
        if done:
            elapsed = time.monotonic() - started
            progress["eta_seconds"] = round(elapsed / done * (progress["boxes_total"] - done), 1)
        if not report(dict(progress)):
            raise JobStopped()

    def _write(self, job_id, request, made, failures, infos):
        """Write the files of each format asked (each a temp file, then stored whole); return (files, counts).

        infos: the images' records as the job read them first (uuid -> ImageInfo, or the error it met then:
        those are asked for again, as their crops were).
        """
        options = request.to_dict()["crop"]
        undescribed = sorted({item.box.image_uuid for item, _ in made
                              if not isinstance(infos.get(item.box.image_uuid), ImageInfo)})
        if undescribed:
            infos = {**infos, **self.sources.infos(undescribed)}
        rows = [self._row(item, request, options, outcome.resolved, infos.get(item.box.image_uuid))
                for item, outcome in made]
        rows.sort(key=lambda row: (SPLIT_NAMES.index(row["split"]), row["label"], row["box_uuid"]))
        crops = {item.box.uuid: outcome.resolved.crop for item, outcome in made}
        failed = [{"box_uuid": item.box.uuid, "image_uuid": item.box.image_uuid, "concept": item.box.concept,
                   "label": item.label, "split": split_of(item.box.image_uuid, request.split, request.seed),
                   "code": outcome.error.code, "message": outcome.error.message} for item, outcome in failures]
        labels = sorted({row["label"] for row in rows})
        counts = {}
        for row in rows:
            counts.setdefault(row["split"], {}).setdefault(row["label"], 0)
            counts[row["split"]][row["label"]] += 1
        card = data_set_card(job_id, request, counts, len(failed), self.source_url)

        def crop_bytes(row):
            return self._bytes(crops[row["box_uuid"]])

        files = []
        extension = request.crop["format"]
        if "imagefolder" in request.formats:
            with self.store.new_file(job_id, ZIP_NAME) as new:
                imagefolder.write_zip(new.file, rows, failed, labels, card, crop_bytes, extension)
            files.append({"name": ZIP_NAME, "format": "imagefolder", "size": new.size, "sha256": new.sha256})
        if "webdataset" in request.formats:
            # Shards in the order a loader streams them: split, then image, then box.
            streamed = sorted(rows, key=lambda row: (SPLIT_NAMES.index(row["split"]), row["image_uuid"],
                                                     row["box_uuid"]))
            files += webdataset.write_shards(lambda name: self.store.new_file(job_id, name), streamed, labels,
                                             crop_bytes, extension, self.shard_bytes)
            for name, text in (("labels.txt", "".join(f"{label}\n" for label in labels)), ("README.md", card),
                               ("manifest.csv", imagefolder.manifest_csv(rows)),
                               ("failures.csv", imagefolder.failures_csv(failed))):
                with self.store.new_file(job_id, name) as new:
                    new.file.write(text.encode())
                files.append({"name": name, "format": "metadata", "size": new.size, "sha256": new.sha256})
        for file in files:
            file["path"] = self.store.url_path(job_id, file["name"])
        return files, counts

    def _bytes(self, crop):
        opened, _ = self.service.open(crop)  # made again if it was evicted since
        with opened.file as file:
            return file.read()

    @staticmethod
    def _row(item, request, options, resolved, info):
        box = item.box
        row = {
            "box_uuid": box.uuid, "image_uuid": box.image_uuid, "concept": box.concept, "label": item.label,
            "split": split_of(box.image_uuid, request.split, request.seed), "region": list(resolved.crop.region),
            "box": list(box.box), "crop": options, "image_url": getattr(info, "url", None),
            "image_sha256": getattr(info, "sha256", None), "review_state": box.review, "occluded": box.occluded,
            "truncated": box.truncated, "depth": getattr(info, "depth", None),
            "latitude": getattr(info, "latitude", None), "longitude": getattr(info, "longitude", None),
            "timestamp": utc_timestamp(getattr(info, "timestamp", None)),
            "imaging_type": getattr(info, "imaging_type", None),
        }
        if request.include_contributors:
            row[imagefolder.CONTRIBUTORS] = getattr(info, "contributors", None)
        return row


def utc_timestamp(text):
    """FathomNet's timestamp as one spelling, UTC to the millisecond (2019-07-01T02:00:32.000Z): the same
    spelling in every row, which loaders read as the same type; as given when it does not parse."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def data_set_card(job_id, request, counts, failed, source_url):
    """README.md of a data set: what was asked, when, from where, what it holds, and how to load it."""
    asked = json.dumps(request.to_dict(), indent=2)
    lines = [f"# FathomNet crops: {', '.join(request.concepts)}", "",
             f"Made {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by FathomNet Cropper "
             f"(data-set job {job_id}) from the FathomNet API at {source_url}.", "",
             "Crops of FathomNet's bounding boxes (annotations), split by image: every box of an image is in the "
             "same split, so no image is in two splits.", "", "## Counts", "",
             "| split | label | crops |", "|---|---|---|"]
    for split in SPLIT_NAMES:
        for label, count in sorted(counts.get(split, {}).items()):
            lines.append(f"| {split} | {_md(label)} | {count} |")
    lines += ["", f"Boxes that could not be cropped: {failed} (failures.csv).", "",
              "## Loading it", "", "```python", "from datasets import load_dataset",
              'data = load_dataset("imagefolder", data_dir="<this folder>")',
              'print(data["train"][0]["label"], data["train"][0]["image"].size)', "```", "",
              *(["WebDataset shards (train-000000.tar, ...) stream with the webdataset package:", "", "```python",
                 "import webdataset as wds",
                 'samples = wds.WebDataset(["train-000000.tar"], shardshuffle=False).decode("pil")',
                 'print(next(iter(samples))["cls"])  # and ["json"], the crop\'s provenance', "```", ""]
                if "webdataset" in request.formats else []),
              "labels.txt lists the labels (a label's index is its line, from 0); manifest.csv holds one row per "
              "crop with its provenance (the box, the image, the region cut, the crop options, the source image's "
              "URL and sha256, the review state, and where and when the image was taken).", "",
              "## The request", "", "```json", asked, "```", ""]
    return "\n".join(lines)


def _md(text):
    """Text as a Markdown table cell (FathomNet's names come from outside)."""
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")
