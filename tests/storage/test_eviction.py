"""The cache pruner: what the stores' listings measure, who Pruner.prune() removes and who it must keep.

Test data is written straight to disk and its times set with os.utime, so no network is needed.
Tests that fork leave the child only through os._exit, so it never runs pytest code.
"""

import json
import os
import tempfile
import threading
import time
from contextlib import contextmanager

import pytest

import cropper.storage.disk
from cropper.config import Settings
from cropper.storage.disk import write_bytes
from cropper.storage.eviction import Pruner, run_pruner
from cropper.storage.s3 import S3CropStore
from devtools.servers import wait_until
from tests.cachefolder import (
    HOUR,
    NOW,
    UUID,
    CacheFolder,
    Usage,
    allocated,
    crop_req,
    make_crop,
    make_source,
    make_temp,
    scan,
    set_times,
)
from tests.processes import HeldInChild

OTHER = "9e140d51-2a43-5870-9337-eb66c5a4de6d"
THIRD = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def settings(tmp_path):
    """Huge budgets by default: each test lowers the one it is about."""
    return Settings(cache_dir=tmp_path / "cache", lock_timeout=2.0, cache_prune_interval=0)


@pytest.fixture
def cache(settings):
    return CacheFolder(settings.cache_dir, settings.lock_timeout)


# -- helpers


def crop_total(cache):
    return Usage.total(scan(cache).crops)


def source_total(cache):
    return Usage.total(scan(cache).sources)


def pruner(cache, settings, **changes):
    """A Pruner whose settings differ from the fixture's by changes."""
    return Pruner(cache.crop_store, cache.source_store, settings.replace(**changes))


@contextmanager
def in_child(enter):
    """Hold `with enter():` in a forked child for the duration of the block; it must exit cleanly."""
    with HeldInChild(enter) as child:
        yield
    assert child.exited_cleanly()


# -- scan


def test_scan_counts_crops_sources_and_temp_files(cache):
    crops = [make_crop(cache, 1), make_crop(cache, 2), make_crop(cache, 1, uuid=OTHER)]
    full = make_source(cache, OTHER)
    json_only = cache.source_path(THIRD, ".json")
    write_bytes(json_only, json.dumps({"uuid": THIRD}).encode())
    temps = [make_temp(crops[0].parent, crops[0].name, age=5),
             make_temp(full[1].parent, full[1].name, age=5)]

    usage = scan(cache)

    assert sorted(entry.key for entry in usage.crops) == sorted(str(path) for path in crops)
    assert all(entry.paths == [entry.key] for entry in usage.crops)
    sources = {entry.key: entry for entry in usage.sources}
    assert sorted(sources) == sorted([OTHER, THIRD])
    assert sorted(sources[OTHER].paths) == sorted(str(path) for path in full)
    assert sources[THIRD].paths == [str(json_only)]
    assert sorted(path for path, _ in usage.temp_files) == sorted(temps)


def test_scan_ignores_files_the_service_never_makes(cache):
    crop = make_crop(cache, 1)
    for relpath in ["crops/README", "crops/.hidden", f"crops/f1/{UUID}/notes.txt",
                    f"crops/f1/{UUID}/1_0_2_1.gif", f"crops/f1/{UUID}/1_0_2_1.webp.bak",
                    f"crops/f1/{UUID}/1_0_2_1.jpg", f"crops/f1/{UUID}/x.tmp", f"crops/f1/{UUID}/sub/1_0_2_1.webp",
                    f"sources/f1/{UUID}.txt", f"sources/f1/{UUID}.pix.bak", "locks/ready-probe"]:
        (cache.root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (cache.root / relpath).write_bytes(b"not ours")

    usage = scan(cache)

    assert [entry.key for entry in usage.crops] == [str(crop)]
    assert usage.sources == [] and usage.temp_files == []


@pytest.mark.parametrize("relpath", ["sources/f1/notes.json", "sources/index.json", "sources/f1/backup.pix"])
def test_files_in_sources_not_named_after_a_uuid_are_neither_counted_nor_removed(cache, settings, relpath):
    # Crops are matched against the exact names the service makes; sources should be too,
    # or an operator's file in sources/ is counted against the budget and then deleted.
    path = cache.root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"{}")
    set_times(path, NOW - 10 * HOUR)

    pruner(cache, settings, source_cache_max_bytes=1).prune(now=NOW)

    assert path.exists()
    assert scan(cache).sources == []


def test_scan_sizes_are_allocated_bytes_not_file_lengths(cache):
    crop = make_crop(cache, 1, size=10)
    sparse = make_crop(cache, 2, size=0)
    os.truncate(sparse, 1024 * 1024)  # a 1 MiB hole: long, but takes no disk
    source = make_source(cache, OTHER)

    usage = scan(cache)

    sizes = {entry.key: entry.size for entry in usage.crops}
    assert sizes[str(crop)] == allocated(crop) and allocated(crop) != 10
    assert sizes[str(sparse)] == allocated(sparse) < os.stat(sparse).st_size
    [entry] = usage.sources
    assert entry.size == allocated(*source)


def test_scan_ranks_by_the_later_of_atime_and_mtime(cache):
    read_late = make_crop(cache, 1, used=NOW - 100, modified=NOW - 5000)
    written_late = make_crop(cache, 2, used=NOW - 5000, modified=NOW - 200)
    json_path, pix_path = make_source(cache, OTHER, used=NOW - 9000)
    set_times(pix_path, NOW - 300, NOW - 9000)  # the pixels were read later than the metadata

    usage = scan(cache)

    used = {entry.key: entry.last_used for entry in usage.crops + usage.sources}
    assert used[str(read_late)] == pytest.approx(NOW - 100)
    assert used[str(written_late)] == pytest.approx(NOW - 200)
    assert used[OTHER] == pytest.approx(NOW - 300)


# -- budgets and least recently used


def test_under_budget_nothing_is_removed(cache, settings):
    paths = [make_crop(cache, n) for n in range(5)]
    make_source(cache, OTHER)
    total = crop_total(cache)

    report = pruner(cache, settings, cache_max_bytes=total, source_cache_max_bytes=source_total(cache),
                    ).prune(now=NOW)

    assert all(path.exists() for path in paths)
    assert len(scan(cache).sources) == 1
    assert (report.crops_removed, report.sources_removed, report.skipped_in_use) == (0, 0, 0)


def test_over_budget_the_least_recently_used_crops_go_first(cache, settings):
    # Crop n was read at NOW - 10 h + n minutes, but written in the opposite order,
    # so ranking by mtime alone would remove the wrong ones.
    paths = [make_crop(cache, n, uuid=[UUID, OTHER][n % 2], used=NOW - 10 * HOUR + 60 * n,
                       modified=NOW - 20 * HOUR - 60 * n) for n in range(10)]
    size = allocated(paths[0])
    assert crop_total(cache) == 10 * size

    report = pruner(cache, settings, cache_max_bytes=8 * size, cache_low_water=0.5).prune(now=NOW)

    assert [path.exists() for path in paths] == [False] * 6 + [True] * 4
    assert crop_total(cache) <= 0.5 * 8 * size
    assert (report.crops_removed, report.crop_bytes_removed) == (6, 6 * size)
    assert (report.sources_removed, report.skipped_in_use) == (0, 0)


def test_pruning_stops_at_the_low_water_mark(cache, settings):
    paths = [make_crop(cache, n, used=NOW - 10 * HOUR + n) for n in range(10)]
    size = allocated(paths[0])

    pruner(cache, settings, cache_max_bytes=9 * size, cache_low_water=0.9).prune(now=NOW)

    # 10 > 9 is over budget; the target is 8.1 sizes, so exactly two go (not one, not all).
    assert [path.exists() for path in paths] == [False] * 2 + [True] * 8


def test_the_running_pruner_and_a_writer_making_room_at_once_evict_only_down_to_the_low_water_mark(cache, settings):
    """Both find the store over budget at the same moment (the pruner's pass, a write's make_room): one
    evicts, not both. Each passing over the crop the other is removing (in use) and on to the next would
    evict about twice what is needed, the whole cache here."""
    paths = [make_crop(cache, n, used=NOW - 10 * HOUR + n) for n in range(600)]
    size = allocated(paths[0])
    cache.crop_store.count(crop_total(cache))
    evictor = pruner(cache, settings, cache_max_bytes=300 * size, cache_low_water=0.9)
    together, errors = threading.Barrier(2, timeout=10), []

    def run(call):
        try:
            together.wait()
            call()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(call,)) for call in
               (lambda: evictor.prune(now=NOW), lambda: evictor.make_room(cache.crop_store, 0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and not any(t.is_alive() for t in threads)
    left = sum(path.exists() for path in paths)
    assert 0.9 * 300 - 1 <= left <= 300  # 270: what one eviction leaves
    assert cache.crop_store.count(0) == crop_total(cache)


def test_over_budget_the_least_recently_used_sources_go_whole(cache, settings):
    sources = {uuid: make_source(cache, uuid, used=NOW - 10 * HOUR + 60 * n)
               for n, uuid in enumerate([THIRD, UUID, OTHER])}
    size = allocated(*sources[UUID])
    crops = [make_crop(cache, n) for n in range(3)]

    report = pruner(cache, settings, source_cache_max_bytes=int(2.5 * size), cache_low_water=0.5,
                    ).prune(now=NOW)

    assert [path.exists() for uuid in (THIRD, UUID, OTHER) for path in sources[uuid]] == [False] * 4 + [True] * 2
    assert source_total(cache) <= 0.5 * 2.5 * size
    assert (report.sources_removed, report.source_bytes_removed) == (2, 2 * size)
    assert report.crops_removed == 0 and all(path.exists() for path in crops)  # their own budget


def test_young_entries_nobody_uses_go_too_when_over_budget(cache, settings):
    """Only what is in use is kept: being young is no protection, or a burst outruns the budget."""
    old = [make_crop(cache, n, used=NOW - 10 * HOUR) for n in range(2)]
    fresh = [make_crop(cache, n, used=NOW - 30) for n in range(2, 4)]
    make_source(cache, OTHER, used=NOW - 5)
    size = allocated(old[0])

    report = pruner(cache, settings, cache_max_bytes=size, source_cache_max_bytes=1,
                    cache_low_water=1).prune(now=NOW)

    assert not any(path.exists() for path in old) and not fresh[0].exists() and fresh[1].exists()
    assert scan(cache).sources == []
    assert (report.crops_removed, report.sources_removed, report.skipped_in_use) == (3, 1, 0)


def test_an_emptied_image_folder_is_removed_and_can_be_written_again(cache, settings):
    gone = [make_crop(cache, 1), make_crop(cache, 2)]
    kept = make_crop(cache, 1, uuid=OTHER, used=NOW - 60)  # the newest: its folder stays
    folder = gone[0].parent

    pruner(cache, settings, cache_max_bytes=allocated(kept), cache_low_water=1).prune(now=NOW)

    assert not folder.exists() and folder.parent.exists()
    assert kept.exists()
    write_bytes(gone[0], b"again")
    assert gone[0].read_bytes() == b"again"


def test_a_folder_with_crops_left_is_not_removed(cache, settings):
    gone = make_crop(cache, 1, used=NOW - 10 * HOUR)
    kept = make_crop(cache, 2, used=NOW - 60)

    pruner(cache, settings, cache_max_bytes=allocated(kept), cache_low_water=1).prune(now=NOW)

    assert not gone.exists() and kept.exists()


def test_atomic_writer_survives_its_folder_vanishing_after_mkdir(cache, monkeypatch):
    """The pruner may remove an emptied image folder between atomic_writer's mkdir and mkstemp."""
    path = cache.crop_path(crop_req(1))
    real_mkstemp = tempfile.mkstemp
    removed = []

    def mkstemp_after_a_prune(dir, **kwargs):
        if not removed:
            os.rmdir(dir)  # the folder atomic_writer has just made, now empty
            removed.append(dir)
        return real_mkstemp(dir=dir, **kwargs)

    monkeypatch.setattr(cropper.storage.disk.tempfile, "mkstemp", mkstemp_after_a_prune)
    write_bytes(path, b"crop")

    assert removed == [path.parent]
    assert path.read_bytes() == b"crop"


# -- temp files


def test_temp_files_older_than_the_grace_go_and_younger_ones_stay(cache, settings):
    crop = make_crop(cache, 1)
    _, pix = make_source(cache, OTHER)
    old = [make_temp(crop.parent, crop.name, age=700), make_temp(pix.parent, pix.name, age=700)]
    young = [make_temp(crop.parent, "2_0_3_1.webp", age=100), make_temp(pix.parent, pix.name, age=100)]

    report = pruner(cache, settings, temp_grace=600).prune(now=NOW)

    assert not any(os.path.exists(path) for path in old)
    assert all(os.path.exists(path) for path in young)
    assert report.temp_files_removed == 2
    assert crop.exists() and pix.exists()  # under budget: only temp files went


def test_temp_files_do_not_count_against_the_budget(cache, settings):
    crop = make_crop(cache, 1)
    make_temp(crop.parent, crop.name, age=5)

    report = pruner(cache, settings, cache_max_bytes=allocated(crop)).prune(now=NOW)

    assert crop.exists() and report.crops_removed == 0


# -- things in use, held by another process


def test_a_crop_being_made_by_another_process_is_kept(cache, settings):
    crop = make_crop(cache, 1)
    prune = pruner(cache, settings, cache_max_bytes=1).prune

    with in_child(lambda: cache.crop_store.lock(crop_req(1))):
        report = prune(now=NOW)
        assert crop.exists()
        assert report.crops_removed == 0 and report.skipped_in_use == 1

    assert prune(now=NOW).crops_removed == 1
    assert not crop.exists()


def test_a_source_being_fetched_by_another_process_is_kept(cache, settings):
    paths = make_source(cache, OTHER)
    prune = pruner(cache, settings, source_cache_max_bytes=1).prune

    with in_child(lambda: cache.source_store.lock(OTHER)):
        report = prune(now=NOW)
        assert all(path.exists() for path in paths)
        assert report.sources_removed == 0 and report.skipped_in_use == 1

    assert prune(now=NOW).sources_removed == 1
    assert not any(path.exists() for path in paths)


def test_a_source_whose_pixels_another_process_reads_is_kept_until_it_closes(cache, settings):
    # Read 30 min ago: open_pixels will not refresh the atime, so only the reader's flock protects it.
    paths = make_source(cache, OTHER, used=time.time() - 1800, modified=time.time() - 10 * HOUR)
    prune = pruner(cache, settings, source_cache_max_bytes=1).prune

    with in_child(lambda: cache.open_pixels(OTHER)):
        report = prune()
        assert all(path.exists() for path in paths)
        assert report.sources_removed == 0 and report.skipped_in_use == 1

    assert prune().sources_removed == 1
    assert not any(path.exists() for path in paths)


def test_a_source_whose_pixels_this_process_reads_is_kept(cache, settings):
    """gthread workers: the reader may be another thread of the pruning process."""
    paths = make_source(cache, OTHER, used=time.time() - 1800, modified=time.time() - 10 * HOUR)
    prune = pruner(cache, settings, source_cache_max_bytes=1).prune

    with cache.open_pixels(OTHER) as pixels:
        assert prune().sources_removed == 0
        assert all(path.exists() for path in paths)
        assert (pixels.width, pixels.height) == (64, 64)

    assert prune().sources_removed == 1


# -- marking use


def test_existing_crop_refreshes_a_stale_atime(cache):
    path = make_crop(cache, 1, used=time.time() - 2 * HOUR, modified=time.time() - 3 * HOUR)
    mtime = os.stat(path).st_mtime

    assert cache.existing_crop(crop_req(1)) == path

    assert os.stat(path).st_atime == pytest.approx(time.time(), abs=5)
    assert os.stat(path).st_mtime == mtime


def test_existing_crop_leaves_a_fresh_atime_alone(cache):
    path = make_crop(cache, 1, used=time.time() - 600, modified=time.time() - 3 * HOUR)
    before = os.stat(path)

    assert cache.existing_crop(crop_req(1)) == path

    after = os.stat(path)
    assert (after.st_atime_ns, after.st_mtime_ns) == (before.st_atime_ns, before.st_mtime_ns)


def test_existing_crop_of_a_missing_crop_is_none(cache):
    assert cache.existing_crop(crop_req(1)) is None


def test_open_pixels_refreshes_a_stale_atime(cache):
    _, pix = make_source(cache, OTHER, used=time.time() - 2 * HOUR, modified=time.time() - 3 * HOUR)

    with cache.open_pixels(OTHER):
        pass

    assert os.stat(pix).st_atime == pytest.approx(time.time(), abs=5)


def test_a_refreshed_crop_outlives_older_ones(cache, settings):
    first = make_crop(cache, 1, used=NOW - 10 * HOUR)
    second = make_crop(cache, 2, used=NOW - 9 * HOUR)
    cache.existing_crop(crop_req(1))  # a hit on the older one

    pruner(cache, settings, cache_max_bytes=allocated(first), cache_low_water=1,
           ).prune(now=time.time())

    assert first.exists() and not second.exists()


# -- the running pruner


@contextmanager
def running_pruner(cache, settings, interval=0.2):
    stop = threading.Event()
    pruner = Pruner(cache.crop_store, cache.source_store, settings)
    thread = threading.Thread(target=run_pruner, args=(pruner, interval, stop), daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(5)
        assert not thread.is_alive()


def test_the_running_pruner_shrinks_the_cache_on_its_own(cache, settings):
    paths = [make_crop(cache, n, used=time.time() - HOUR + n) for n in range(4)]
    size = allocated(paths[0])
    settings = settings.replace(cache_max_bytes=3 * size, cache_low_water=0.5)

    with running_pruner(cache, settings):
        assert wait_until(lambda: crop_total(cache) <= 1.5 * size)

    assert [path.exists() for path in paths] == [False, False, False, True]


def test_the_pruner_stands_by_while_another_process_prunes_and_takes_over_when_it_goes(cache, settings):
    paths = [make_crop(cache, n, used=time.time() - HOUR + n) for n in range(4)]
    settings = settings.replace(cache_max_bytes=1)

    with HeldInChild(lambda: cache.source_store.sole_pruner()) as other, running_pruner(cache, settings):
        time.sleep(1.0)  # about five of the pruner's turns
        assert all(path.exists() for path in paths)
        other.kill()
        assert wait_until(lambda: not any(path.exists() for path in paths))


# -- a shared crop store that cannot be reached


def test_a_bucket_that_cannot_be_reached_does_not_keep_the_sources_here_from_being_pruned(cache, settings):
    """The S3_PRUNER host keeps its own sources and temp files within bounds while the bucket is down."""
    unreachable = S3CropStore("crops", "http://127.0.0.1:9", cache.locks, connect_timeout=0.5, read_timeout=0.5,
                              access_key="cropper", secret_key="secret")  # nothing listens on port 9
    paths = make_source(cache, OTHER)
    temp = make_temp(paths[1].parent, paths[1].name, age=700)

    report = Pruner(unreachable, cache.source_store, settings.replace(
        s3_pruner=True, source_cache_max_bytes=1, temp_grace=600)).prune(now=NOW)

    assert (report.sources_removed, report.temp_files_removed) == (1, 1)
    assert not any(path.exists() for path in paths) and not os.path.exists(temp)
