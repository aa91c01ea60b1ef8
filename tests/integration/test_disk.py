"""The cache's disk going wrong under a running service: full, read-only, tight, or flooded by a burst.

Each test mounts a small tmpfs of its own (root only; skipped with the reason otherwise), so "full"
and "read-only" are real kernel answers (ENOSPC, EROFS), not mocks.
"""

import threading
from pathlib import Path

import requests

from devtools.servers import Gunicorn, wait_until
from tests.cachefolder import CacheFolder, Usage, scan
from tests.disks import MIB, fill, remount, small_disk
from tests.images import assert_image_equal, expected_crop, open_bytes
from tests.integration.conftest import service_env


def crop(app, record, box, fmt="png"):
    x1, y1, x2, y2 = box
    body = {"uuid": record.uuid, "x1": x1, "y1": y1, "x2": x2, "y2": y2, "format": fmt}
    return requests.post(f"{app.url}/cropper/", json=body, timeout=60)


def temp_files(cache_dir):
    return [p for p in Path(cache_dir).rglob("*") if p.name.endswith(".tmp")]


def assert_insufficient_storage(answer, store):
    assert answer.status_code == 507, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    error = answer.json()["error"]
    assert error["code"] == "insufficient_storage" and store in error["message"]
    assert "Retry-After" not in answer.headers  # not a 503: nothing to retry at once


def test_a_full_disk_is_a_507_that_names_the_cache_and_heals_when_space_is_back(standin, tmp_path):
    with small_disk(tmp_path / "disk", 24) as disk:
        cache_dir = disk / "cache"
        env = service_env(standin, cache_dir, MIN_FREE_BYTES=str(MIB))
        with Gunicorn(env, cwd=tmp_path, workers=1) as app:
            gray, frame = standin.image("gray"), standin.image("framegrab")
            made = crop(app, gray, (10, 10, 200, 200))
            assert made.status_code == 200
            filler = fill(disk)

            refused = crop(app, frame, (0, 0, 300, 300))  # needs a download and 6 MB of pixels

            assert_insufficient_storage(refused, "image source cache")
            assert temp_files(cache_dir) == []  # nothing half-written left behind
            ready = requests.get(f"{app.url}/readyz", timeout=10)
            assert ready.status_code == 503 and "space" in ready.json()["checks"]["cache"]["error"].lower()
            again = crop(app, gray, (10, 10, 200, 200))  # made before: still answered, still served
            assert again.status_code == 200 and again.json()["cached"] is True
            assert requests.get(made.json()["url"], timeout=10).status_code == 200

            filler.unlink()  # space is back: no restart needed
            healed = crop(app, frame, (0, 0, 300, 300))
            assert healed.status_code == 200, healed.text
            assert_image_equal(open_bytes(requests.get(healed.json()["url"], timeout=10).content),
                               expected_crop(frame, (0, 0, 300, 300)))
            assert requests.get(f"{app.url}/readyz", timeout=10).json()["checks"]["cache"] == {"ok": True}


def pixels_stored(cache_dir, uuid):
    return any(Path(cache_dir).rglob(f"{uuid}.pix"))


def test_pixels_stored_on_a_full_disk_make_room_from_older_ones_as_a_crop_does(standin, tmp_path):
    """A fresh image's pixels, stored after its first crop is answered, free least recently used files
    once when the disk is full, so its next crops need no new download."""
    older, fresh = standin.image("framegrab-1"), standin.image("framegrab-2")
    with small_disk(tmp_path / "disk", 24) as disk:
        cache_dir = disk / "cache"
        with Gunicorn(service_env(standin, cache_dir, CACHE_PRUNE_INTERVAL="0"), cwd=tmp_path, workers=1) as app:
            assert crop(app, older, (0, 0, 64, 64)).status_code == 200
            assert wait_until(lambda: pixels_stored(cache_dir, older.uuid))
            fill(disk, leave_bytes=3 * MIB)  # room for a download and crops, not for 6.2 MB of pixels
            downloads = standin.downloads(fresh.uuid)

            assert crop(app, fresh, (0, 0, 64, 64)).status_code == 200

            assert wait_until(lambda: pixels_stored(cache_dir, fresh.uuid))
            assert not pixels_stored(cache_dir, older.uuid)  # the least recently used made room
            assert crop(app, fresh, (64, 64, 128, 128)).status_code == 200
            assert standin.downloads(fresh.uuid) == downloads + 1
            assert temp_files(cache_dir) == []
        assert "Traceback" not in app.log()


def test_a_crop_that_meets_a_full_disk_makes_room_from_least_recently_used_files_once(standin, tmp_path):
    older, fresh = standin.image("framegrab-3"), standin.image("framegrab-4")
    with small_disk(tmp_path / "disk", 24) as disk:
        cache_dir = disk / "cache"
        with Gunicorn(service_env(standin, cache_dir, CACHE_PRUNE_INTERVAL="0"), cwd=tmp_path, workers=1) as app:
            for record in (older, fresh):
                assert crop(app, record, (0, 0, 64, 64)).status_code == 200
                assert wait_until(lambda record=record: pixels_stored(cache_dir, record.uuid))
            fill(disk)

            made = crop(app, fresh, (0, 0, 900, 900))  # about 1 MB of PNG, from pixels already stored

            assert made.status_code == 200, made.text
            assert not pixels_stored(cache_dir, older.uuid)  # the least recently used made room
            assert pixels_stored(cache_dir, fresh.uuid)  # in use by the crop: kept
            assert requests.get(made.json()["url"], timeout=10).status_code == 200
            assert temp_files(cache_dir) == []
        assert "the cache's disk was full" in app.log() and "Traceback" not in app.log()


def test_a_read_only_cache_refuses_new_crops_with_507_and_serves_the_old_ones(standin, tmp_path):
    with small_disk(tmp_path / "disk", 32) as disk:
        cache_dir = disk / "cache"
        with Gunicorn(service_env(standin, cache_dir), cwd=tmp_path, workers=1) as app:
            gray = standin.image("gray")
            made = crop(app, gray, (0, 0, 64, 64))
            assert made.status_code == 200
            remount(disk, "ro")
            try:
                assert_insufficient_storage(crop(app, gray, (64, 64, 128, 128)), "read-only")
                assert crop(app, gray, (0, 0, 64, 64)).json()["cached"] is True
                assert requests.get(made.json()["url"], timeout=10).status_code == 200
                ready = requests.get(f"{app.url}/readyz", timeout=10).json()
                assert ready["checks"]["cache"]["ok"] is False
                assert "read-only" in ready["checks"]["cache"]["error"].lower()
            finally:
                remount(disk, "rw")
            assert crop(app, gray, (64, 64, 128, 128)).status_code == 200


def test_a_service_started_on_a_read_only_cache_stays_up(standin, tmp_path):
    with small_disk(tmp_path / "disk", 8) as disk:
        remount(disk, "ro")
        env = service_env(standin, disk / "cache", CACHE_PRUNE_INTERVAL="0.2")
        with Gunicorn(env, cwd=tmp_path, workers=1) as app:
            assert requests.get(f"{app.url}/healthz", timeout=5).status_code == 200
            assert requests.get(f"{app.url}/readyz", timeout=5).status_code == 503
            assert_insufficient_storage(crop(app, standin.image("gray"), (0, 0, 8, 8)), "read-only")
            # the pruner process starts beside the workers: give it a turn to say why it cannot prune
            assert wait_until(lambda: "cannot prune the cache" in app.log(), timeout=10)
            assert app.process.poll() is None
        assert "Traceback" not in app.log()


def test_a_burst_of_new_images_stays_within_the_source_budget_on_a_tight_disk(standin, tmp_path):
    """Budgets below the disk's size must hold without the pruner: every cold crop succeeds."""
    records = [standin.image(f"framegrab-{i}") for i in range(10)]  # 6.2 MB of pixels each
    with small_disk(tmp_path / "disk", 80) as disk:
        cache_dir = disk / "cache"
        budget = 20 * MIB
        env = service_env(standin, cache_dir, SOURCE_CACHE_MAX_BYTES=budget, CACHE_PRUNE_INTERVAL="0",
                          MISS_SLOTS="2")
        # Tight: room for the budget and what is in flight (4 downloads and their pixels), not much more.
        fill(disk, leave_bytes=64 * MIB)
        with Gunicorn(env, cwd=tmp_path, workers=2) as app:
            peak, stop = [0], threading.Event()

            def watch():
                while not stop.wait(0.02):
                    peak[0] = max(peak[0], Usage.total(scan(CacheFolder(cache_dir, 1)).sources))

            watcher = threading.Thread(target=watch)
            watcher.start()
            results = []
            threads = [threading.Thread(target=lambda r=r: results.append(crop(app, r, (0, 0, 200, 200))))
                       for r in records]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            stop.set()
            watcher.join()

            failed = [r.text for r in results if r.status_code != 200]
            assert len(results) == 10 and failed == []
            after = Usage.total(scan(CacheFolder(cache_dir, 1)).sources)
            assert after <= budget
            assert peak[0] <= budget + 4 * 6.3 * MIB  # at most the pixels in flight (2 workers x 2 slots) over
