"""The S3 crop store against a real SeaweedFS on loopback: write-once crops, anonymous reads, listing, removal, outages.

One SeaweedFS serves the whole module; each test uses crops of its own uuid. The outage tests stop
or freeze it and always bring it back. Tests that fork leave the child only through os._exit.
"""

import time
import uuid
from contextlib import contextmanager

import pytest
import requests

from cropper import batch
from cropper.config import Settings
from cropper.crops import Box, Crop
from cropper.errors import StoreUnavailableError
from cropper.storage.breaker import OPEN_FILE, StoreBreaker
from cropper.storage.eviction import Pruner
from cropper.storage.files import FileSourceStore
from cropper.storage.locks import Locks
from cropper.wiring import crop_service
from devtools.servers import wait_until
from tests.processes import HeldInChild


@pytest.fixture(scope="module")
def locks(tmp_path_factory):
    return Locks(tmp_path_factory.mktemp("locks"), timeout=0.3)


@pytest.fixture
def store(seaweed, locks):
    return seaweed.store(locks, connect_timeout=0.5, read_timeout=0.5)


def new_crop(fmt="webp", box=(100, 0, 405, 400)):
    return Crop(str(uuid.uuid4()), Box(*box), fmt)


def test_a_stored_crop_is_readable_by_anyone(store):
    """(What every crop store does is in test_contract.py; this is the bucket's own.)"""
    crop = new_crop()
    store.put(crop, b"webp bytes")
    public = requests.get(store.public_url(crop), timeout=5)
    assert public.status_code == 200 and public.content == b"webp bytes"
    assert public.headers["Content-Type"] == "image/webp"
    assert public.headers["Cache-Control"] == "public, max-age=31536000, immutable"


def test_anyone_may_read_but_not_write_or_list(store, seaweed):
    crop = new_crop("png")
    store.put(crop, b"png bytes")
    assert requests.put(store.public_url(crop), data=b"not mine", timeout=5).status_code == 403
    assert requests.put(store.public_url(new_crop()), data=b"not mine", timeout=5).status_code == 403
    assert requests.get(f"{seaweed.endpoint_url}/{seaweed.bucket}?list-type=2", timeout=5).status_code == 403
    assert requests.get(store.public_url(new_crop()), timeout=5).status_code == 404
    assert store.open(crop).file.read() == b"png bytes"


def test_iiif_outputs_are_kept_under_their_own_family_and_readable_by_anyone_too(store):
    tile = Crop(str(uuid.uuid4()), Box(0, 0, 512, 512), "jpeg", size=(256, 256), family="iiif")
    store.put(tile, b"jpeg bytes")
    assert store.key(tile) == tile.store_path and store.key(tile).startswith("iiif/")
    assert requests.get(store.public_url(tile), timeout=5).content == b"jpeg bytes"
    assert tile in {entry.key for entry in store.listing().entries}


def test_a_crop_is_written_once(store):
    crop = new_crop()
    store.put(crop, b"first")
    store.put(crop, b"second")  # as another host that made it meanwhile: no error, the first stays
    assert store.open(crop).file.read() == b"first"


def test_ensure_bucket_may_be_repeated(store):
    store.ensure_bucket()
    crop = new_crop()
    store.put(crop, b"x")
    assert requests.get(store.public_url(crop), timeout=5).status_code == 200


def test_listing_measures_every_crop_and_nothing_else(seaweed, locks):
    store = seaweed.store(locks, prefix="listed/")
    made = {new_crop(): b"a" * 10, new_crop("jpeg"): b"b" * 2000}
    for crop, data in made.items():
        store.put(crop, data)
    stray = new_crop()
    for key in ("listed/README", f"listed/{stray.store_path}.part", f"elsewhere/{stray.store_path}",
                f"listed/{stray.store_path.upper()}", f"listed/{stray.relpath}", "listed/crops/README"):
        store.client.put_object(Bucket=store.bucket, Key=key, Body=b"not a crop")
    entries = {entry.key: entry for entry in store.listing().entries}
    assert set(entries) == set(made)
    for crop, data in made.items():
        assert entries[crop].paths == [store.key(crop)] and entries[crop].size == len(data)
        assert abs(entries[crop].last_used - time.time()) < 60
    assert store.listing().temp_files == []


def test_listing_pages_through_many_crops(seaweed, locks):
    store = seaweed.store(locks, prefix="many/")
    made = {new_crop(box=(0, 0, n + 1, 1)) for n in range(5)}
    for crop in made:
        store.put(crop, b"x")
    store.client.meta.events.register("before-parameter-build.s3.ListObjectsV2",
                                      lambda params, **_: params.update(MaxKeys=2))
    assert {entry.key for entry in store.listing().entries} == made


def test_remove_deletes_unless_the_crop_is_being_made(store, locks):
    kept, removed = new_crop(), new_crop()
    for crop in (kept, removed):
        store.put(crop, b"x")
    entries = {entry.key: entry for entry in store.listing().entries}
    with HeldInChild(lambda: store.lock(kept)):
        assert store.remove(entries[kept]) is False
        assert store.remove(entries[removed]) is True
    assert store.find(kept) and not store.find(removed)
    assert requests.get(store.public_url(removed), timeout=5).status_code == 404
    assert store.remove(entries[kept]) is True and not store.find(kept)


def readable(store, crop):
    try:
        return store.open(crop) is not None
    except StoreUnavailableError:
        return False


def assert_unavailable(call, seconds):
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as raised:
        call()
    assert time.monotonic() - started < seconds
    error = raised.value
    assert (error.status, error.code) == (503, "store_unavailable") and error.retry_after >= 1
    assert "crop store" in error.message and "S3 bucket crops" in error.message
    for botocore_words in ("Could not connect", "Read timeout", "endpoint URL", "botocore", "Error"):
        assert botocore_words not in error.message
    return error


def test_a_frozen_store_is_unavailable_after_the_read_timeout(store, seaweed):
    crop = new_crop()
    store.put(crop, b"x")
    seaweed.freeze()  # it still accepts connections, and answers nothing
    try:
        error = assert_unavailable(lambda: store.find(crop), seconds=4)  # two tries of 0.5 s, and a backoff
    finally:
        seaweed.thaw()
    assert "in time" in error.message
    assert store.find(crop)


def test_a_stopped_store_is_unavailable_and_comes_back_with_its_crops(store, seaweed):
    crop = new_crop()
    store.put(crop, b"kept across restarts")
    seaweed.stop()
    try:
        assert_unavailable(lambda: store.find(crop), seconds=3)
        assert_unavailable(lambda: store.put(new_crop(), b"x"), seconds=3)
        assert_unavailable(lambda: store.open(crop), seconds=3)
        assert_unavailable(store.listing, seconds=3)
    finally:
        seaweed.start()
    # Its S3 port answers before its volumes do (a 500 "InternalError" for a moment): the service's
    # answer meanwhile is the 503 above, and its clients retry.
    assert wait_until(lambda: readable(store, crop), timeout=20)
    assert store.find(crop) and store.open(crop).file.read() == b"kept across restarts"
    assert requests.get(store.public_url(crop), timeout=5).content == b"kept across restarts"
    later = new_crop()
    store.put(later, b"new")
    assert store.find(later)


def test_only_the_designated_pruner_evicts_from_the_shared_store(seaweed, locks, tmp_path):
    store = seaweed.store(locks, prefix="pruned/")
    made = [new_crop(box=(0, 0, n + 1, 1)) for n in range(6)]
    for crop in made:
        store.put(crop, b"x" * 1000)
        time.sleep(1.1)  # S3 times are in seconds: the first stored is the least recently used
    settings = Settings(cache_dir=tmp_path, cache_backend="s3", cache_max_bytes=4000, cache_low_water=0.5)
    sources = FileSourceStore(tmp_path, locks)
    assert Pruner(store, sources, settings).prune().crops_removed == 0  # not this host's to evict
    assert all(store.find(crop) for crop in made)
    report = Pruner(store, sources, settings.replace(s3_pruner=True)).prune()
    assert report.crops_removed == 4  # 6000 bytes over a 4000 budget: down to 2000
    assert [store.find(crop) for crop in made] == [False] * 4 + [True] * 2


def test_readiness_of_a_frozen_store_answers_within_the_ready_timeout(seaweed, locks):
    # The store as the app builds it: FathomNet's timeouts (3.05 s connect, 10 s read, two tries) for
    # its crops; /readyz must still answer within READY_TIMEOUT, as it does for FathomNet.
    settings = Settings()
    store = seaweed.store(locks, connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
                          ready_timeout=settings.ready_timeout)
    assert store.readiness_problem() is None
    seaweed.freeze()
    try:
        started = time.monotonic()
        problem = store.readiness_problem()
        waited = time.monotonic() - started
    finally:
        seaweed.thaw()
    assert problem and "in time" in problem
    assert waited < settings.ready_timeout + 1
    assert wait_until(lambda: store.readiness_problem() is None, timeout=10)


@pytest.fixture
def s3_service(seaweed, settings, monkeypatch):
    """The crop service as CACHE_BACKEND=s3 builds it (FathomNet: the stand-in), with short store timeouts."""
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    return crop_service(settings.replace(cache_backend="s3", s3_bucket=seaweed.bucket,
                                         s3_endpoint_url=seaweed.endpoint_url, connect_timeout=0.5, read_timeout=0.5))


@pytest.mark.parametrize("freeze", ["before", "after_lookups"])
def test_a_batch_meeting_a_frozen_store_fails_its_items_at_once_not_each_after_its_own_timeouts(
        s3_service, seaweed, standin, monkeypatch, freeze):
    """Each item waiting its own timeouts (two tries of READ_TIMEOUT) held a batch of 1000 for many minutes:
    far past nginx's 120 s, so the client got a 504 and no item's answer at all."""
    record = standin.image("framegrab")
    wanted = [Crop(record.uuid, Box(x, 0, x + 40, 30), "png") for x in range(0, 480, 10)]  # 48 crops
    frozen = []

    def freeze_store():
        seaweed.freeze()
        frozen.append(True)

    if freeze == "before":
        freeze_store()
    else:  # the store stops answering after every crop was looked up (missing), while the image downloads
        real = s3_service.sources.pixels

        @contextmanager
        def pixels_then_freeze(info):
            with real(info) as source:
                yield source
            freeze_store()

        monkeypatch.setattr(s3_service.sources, "pixels", pixels_then_freeze)
    try:
        started = time.monotonic()
        results = batch.get_or_create_many(s3_service, wanted, concurrency=4)
        took = time.monotonic() - started
    finally:
        if frozen:
            seaweed.thaw()
    assert frozen
    assert [(r.error.status, r.error.code) for r in results] == [(503, "store_unavailable")] * len(wanted)
    assert took < 3, took  # one lookup's two tries of 0.5 s, not one per item (16 at once): 48 crops took 3 to 30 s


def test_a_frozen_store_costs_one_timeout_then_every_worker_of_the_host_fails_at_once_until_it_thaws(
        seaweed, locks, tmp_path):
    """Frozen for 30 s, every call waited two tries of READ_TIMEOUT (20 s), however often the host had
    seen it fail; the retry of a call that timed out waited as long again."""
    breaker_file = tmp_path / OPEN_FILE
    worker, other_worker = (seaweed.store(locks, connect_timeout=1, read_timeout=2, breaker_file=breaker_file)
                            for _ in range(2))
    crop = new_crop()
    worker.put(crop, b"x")
    assert worker.find(crop) and not breaker_file.exists()
    seaweed.freeze()
    try:
        first = assert_unavailable(lambda: worker.find(crop), seconds=3.5)  # one read timeout, not two and a backoff
        assert "in time" in first.message
        for call in (lambda: other_worker.find(crop), lambda: other_worker.open(crop),
                     lambda: other_worker.put(new_crop(), b"x"), other_worker.listing, lambda: worker.find(crop)):
            refused = assert_unavailable(call, seconds=0.3)
            assert "in time" in refused.message and "tries it again" in refused.message
        started = time.monotonic()
        assert "in time" in other_worker.readiness_problem()
        assert time.monotonic() - started < 0.3
    finally:
        seaweed.thaw()
    thawed = time.monotonic()
    assert wait_until(lambda: readable(other_worker, crop), timeout=10)
    assert time.monotonic() - thawed < 3  # a probe every 0.5 s found it back
    assert not breaker_file.exists() and worker.find(crop) and other_worker.readiness_problem() is None


def test_nginx_finding_the_store_unreachable_opens_the_breaker_and_a_probe_closes_it_if_wrong(
        seaweed, locks, tmp_path):
    store = seaweed.store(locks, connect_timeout=1, read_timeout=2, breaker_file=tmp_path / OPEN_FILE)
    crop = new_crop()
    store.put(crop, b"x")
    store.unreachable("this host's nginx got no answer from it in time")
    assert (tmp_path / OPEN_FILE).exists()  # what nginx checks before it reads the store
    assert wait_until(lambda: readable(store, crop), timeout=5)  # the store answers the probe: closed again
    assert not (tmp_path / OPEN_FILE).exists()


def test_an_operator_s_store_init_tries_the_store_whatever_the_breaker_last_found(seaweed, locks, tmp_path):
    """serve runs it at every start: a breaker left open by a host killed during an outage must not stop it."""
    StoreBreaker(tmp_path / OPEN_FILE, lambda: "it did not answer in time", locks).trip("it did not answer in time")
    store = seaweed.store(locks, breaker_file=tmp_path / OPEN_FILE)
    store.ensure_bucket()
    assert not (tmp_path / OPEN_FILE).exists()
