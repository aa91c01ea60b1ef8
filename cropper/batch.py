"""Many crops at once, grouped by image: one metadata query, one download and decode per image.

The locks are the single requests' own (CropService.make), so a batch and a single request
never do the same work twice.
"""

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from . import metrics
from .crops import Crop, CropRequest, check_box
from .errors import CropperError, StoreUnavailableError, as_cropper_error, or_error
from .service import CropResult, Resolved
from .upstream import BoxInfo

# Pillow releases the GIL while it encodes, so one thread per core keeps every core cutting.
CROP_THREADS = os.cpu_count() or 1


class StoreOutage:
    """The first StoreUnavailableError a batch meets, which every later call to the store gets at once.

    A store that hangs costs each call its timeouts (two tries of READ_TIMEOUT): paid once per item,
    a batch of hundreds took many minutes, past nginx's deadline, so the client got no answer at all.
    """

    def __init__(self):
        self.error = None

    def call(self, function, *args):
        if self.error is not None:
            raise self.error
        try:
            return function(*args)
        except StoreUnavailableError as error:
            self.error = error
            raise


@dataclass(frozen=True)
class Pools:
    """The threads batches make crops with: `fetch` downloads images, `crop` cuts and stores their crops.

    A batch makes its own; several batches under way at once (a data-set job's rounds) share one, so
    they download DATASET_WORKERS images at a time between them, and one round's crops start while
    the last crops of the round before are still being cut.
    """

    fetch: ThreadPoolExecutor
    crop: ThreadPoolExecutor
    turn: object = nullcontext()  # entered to queue downloads on `fetch` in batches' order (datasets.build.InTurn)


@contextmanager
def pools(fetches):
    """Pools fetching `fetches` images at a time, cutting CROP_THREADS crops at a time."""
    with ThreadPoolExecutor(fetches, thread_name_prefix="fetch") as fetch, \
            ThreadPoolExecutor(CROP_THREADS, thread_name_prefix="crop") as crop:
        yield Pools(fetch, crop)


@dataclass(frozen=True)
class Item:
    """One item of a batch: the crop it asks for, or the error it already met (an invalid body)."""

    request: CropRequest | None = None
    error: CropperError | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of an item: its crop (resolved, and whether it was stored already), or its error."""

    resolved: Resolved | None = None
    cached: bool = False
    error: CropperError | None = None


def make_all(service, items, concurrency, annotations=None, shared=None):
    """The Outcome of each Item, in order, making every valid item's crop in one go (grouped by image).

    annotations: box uuid -> BoxInfo already known (a concept page's), so they are not looked up again.
    shared: the Pools to make them with, when other batches share them.
    """
    outcomes = [Outcome(error=item.error) for item in items]
    valid = [index for index, item in enumerate(items) if item.error is None]
    found = resolve_many(service, [items[index].request for index in valid], concurrency, annotations)
    for index, resolved in zip(valid, found):
        outcomes[index] = Outcome(resolved=resolved) if isinstance(resolved, Resolved) else Outcome(error=resolved)
    to_make = [index for index in valid if outcomes[index].resolved]
    made = get_or_create_many(service, [outcomes[index].resolved.crop for index in to_make], concurrency,
                              shared=shared)
    for index, result in zip(to_make, made):
        outcomes[index] = Outcome(outcomes[index].resolved, result.cached) if isinstance(result, CropResult) \
            else Outcome(error=result.error)
    return _counted(outcomes)


def _counted(outcomes):
    for outcome in outcomes:
        if outcome.error:
            metrics.crop_outcome("failed", outcome.error.code)
        else:
            metrics.crop_outcome("hit" if outcome.cached else "miss")
    return outcomes


@dataclass(frozen=True)
class CropFailure:
    """A batch item that could not be made, and why."""

    crop: Crop
    error: CropperError


def resolve_many(service, requests, concurrency, annotations=None):
    """Each CropRequest resolved, in order: a Resolved, or the CropperError that item meets.

    Annotations not known yet are looked up `concurrency` at a time, those remembered past
    METADATA_TTL asked again in one query; the images whose size is needed come from one metadata
    query; then each request is resolved on its own.
    """
    annotations = dict(annotations or {})
    wanted = sorted({r.box_uuid for r in requests if r.box_uuid is not None} - set(annotations))
    annotations.update(service.sources.boxes(wanted, concurrency))
    image_of = {}
    for request in requests:
        found = annotations.get(request.box_uuid)
        image_of[request] = found.image_uuid if isinstance(found, BoxInfo) else request.uuid
    infos = service.sources.infos(sorted({image_of[r] for r in requests if r.needs_image_size and image_of[r]}))
    results = []
    for request in requests:
        annotation = annotations.get(request.box_uuid)
        info = infos.get(image_of[request]) if request.needs_image_size else None
        if isinstance(annotation, CropperError):
            results.append(annotation)
        elif isinstance(info, CropperError):
            results.append(info)
        else:
            results.append(or_error(service.resolve, request, info, annotation))
    return results


def get_or_create_many(service, crops, concurrency, here=False, shared=None):
    """Results for many crops, in order: a CropResult, or a CropFailure saying why not.

    Work is grouped by image: one metadata query for every image not seen before, each source
    downloaded and decoded at most once, and all its boxes cut from those pixels, with
    `concurrency` images fetched at once. In a cluster, images another host owns are made there,
    meanwhile (here: make them all on this host, as the owner asked to). shared: Pools other batches share.
    """
    results = [None] * len(crops)
    pending = {}  # uuid -> [(index, crop)] of crops not stored yet
    outage = StoreOutage()
    for index, (crop, found) in enumerate(zip(crops, _found(service.crop_store, crops, outage))):
        if isinstance(found, CropperError):  # the shared store failed
            results[index] = found
        elif found:
            results[index] = CropResult(crop, cached=True)
        else:
            pending.setdefault(crop.uuid, []).append((index, crop))
    elsewhere = {} if here else {uuid: items for uuid, items in pending.items() if not service.cluster.is_mine(uuid)}
    mine = {uuid: items for uuid, items in pending.items() if uuid not in elsewhere}
    with ThreadPoolExecutor(1) as asking:
        asked = asking.submit(_make_elsewhere, service, elsewhere, results) if elsewhere else None
        if mine:
            with _slot(service, shared):
                _make_pending(service, mine, results, concurrency, outage, shared)
        left_to_us = asked.result() if asked else {}
    if left_to_us:  # their owners could not be reached, and the ring gave them to this host
        with _slot(service, shared):
            _make_pending(service, left_to_us, results, concurrency, outage, shared)
    return [result if isinstance(result, CropResult) else CropFailure(crop, result)
            for crop, result in zip(crops, results)]


def _slot(service, shared):
    """A batch is one request: one admission slot, however many images. Batches sharing Pools share the slot
    their owner holds (a round waiting its turn must not hold one the round before needs)."""
    return service.admission.slot() if shared is None else nullcontext()


def _found(store, crops, outage):
    """Whether each crop is stored: a stat each on disk, HEADs side by side in a shared store."""
    if not store.shared or len(crops) < 2:
        return [or_error(outage.call, store.find, crop) for crop in crops]
    with ThreadPoolExecutor(min(16, len(crops))) as pool:
        return list(pool.map(lambda crop: or_error(outage.call, store.find, crop), crops))


def _make_elsewhere(service, elsewhere, results):
    """Have other hosts make the crops of the images they own; return those left to this host."""
    items = [item for group in elsewhere.values() for item in group]
    left_to_us = {}
    for (index, crop), made in zip(items, service.cluster.make_elsewhere([crop for _, crop in items])):
        if made is None:
            left_to_us.setdefault(crop.uuid, []).append((index, crop))
        elif isinstance(made, CropperError):
            results[index] = made
        else:
            results[index] = CropResult(crop, cached=made.cached)
    return left_to_us


def _make_pending(service, pending, results, concurrency, outage, shared):
    infos = service.sources.infos(list(pending))
    # Two pools, so an image's crops start as soon as its pixels are ready, while other
    # downloads are still waiting on the network.
    with nullcontext(shared) if shared else pools(min(concurrency, len(pending))) as threads:
        fetch_pool, crop_pool = threads.fetch, threads.crop
        fetches = {}
        with threads.turn:
            for uuid, items in pending.items():
                fitting = []
                for index, crop in items:
                    results[index] = _problem_before_download(crop, infos[uuid])
                    if results[index] is None:
                        fitting.append((index, crop))
                if fitting:
                    fetches[fetch_pool.submit(_fetch_pixels, service.sources, infos[uuid])] = fitting
        made = []
        for fetch in as_completed(fetches):
            for index, crop in fetches[fetch]:
                if fetch.exception() is None:
                    made.append((index, crop_pool.submit(outage.call, service.make, crop, infos[crop.uuid])))
                else:
                    results[index] = as_cropper_error(fetch.exception())
        for index, future in made:
            results[index] = future.result() if future.exception() is None else as_cropper_error(future.exception())


def _fetch_pixels(sources, info):
    """Have the image's pixels at hand (stored, or being stored) for its crops, downloading them if need be."""
    with sources.pixels(info):
        pass


def _problem_before_download(crop, info):
    """The error an item meets before anything is downloaded (no image, box outside), or None."""
    return info if isinstance(info, CropperError) else or_error(check_box, crop.region, info.size)
