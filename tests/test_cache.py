"""The file cache: crop paths, atomic writes and cross-process locks.

Several tests fork: the child only touches files and locks and always leaves
through os._exit, so it never runs pytest code.
"""

import os
import signal
import stat
import threading
import time

import pytest

from cropper.cache import FileCache, crop_relpath, parse_crop_relpath
from cropper.errors import BusyError
from cropper.schemas import Box, CropRequest
from tests.processes import HeldInChild

UUID = "f11816b8-1234-4abc-8def-0123456789ab"
PATH = f"f1/{UUID}/100_0_405_400.webp"


@pytest.fixture
def cache(tmp_path):
    return FileCache(tmp_path / "cache", lock_timeout=0.3)


# -- crop paths


def test_crop_relpath_is_sharded_on_the_uuid():
    assert crop_relpath(CropRequest(UUID, Box(100, 0, 405, 400), "webp")) == PATH


@pytest.mark.parametrize("req", [
    CropRequest(UUID, Box(0, 0, 1, 1), "png"),
    CropRequest(UUID, Box(100, 0, 405, 400), "webp"),
    CropRequest("00000000-0000-4000-8000-000000000000", Box(7, 8, 9, 10), "jpeg"),
    CropRequest(UUID, Box(999_999_998, 10, 999_999_999, 20), "png"),
])
def test_crop_relpath_round_trips(req):
    fields = parse_crop_relpath(crop_relpath(req))
    assert fields == {"uuid": req.uuid, **req.box._asdict(), "format": req.format}
    assert all(type(fields[k]) is int for k in ("x1", "y1", "x2", "y2"))


@pytest.mark.parametrize("relpath", [
    PATH.upper(),
    f"f1/{UUID.upper()}/100_0_405_400.webp",
    f"F1/{UUID}/100_0_405_400.webp",
    f"aa/{UUID}/100_0_405_400.webp",
    f"f1/{UUID}/0100_0_405_400.webp",
    f"f1/{UUID}/100_00_405_400.webp",
    f"f1/{UUID}/-100_0_405_400.webp",
    f"f1/{UUID}/100_0_405.webp",
    f"f1/{UUID}/100_0_405_400_1.webp",
    f"f1/{UUID}/100_0_405_400.jpg",
    f"f1/{UUID}/100_0_405_400.gif",
    f"f1/{UUID}/100_0_405_400.WEBP",
    f"f1/{UUID}/100_0_405_400.webp.tmp",
    f".f1/{UUID}/100_0_405_400.webp",
    f"../{PATH}",
    f"f1/../{PATH}",
    f"f1/{UUID}/../{UUID}/100_0_405_400.webp",
    f"/{PATH}",
    f"x/{PATH}",
    f"{PATH}/x",
    f"f1//{UUID}/100_0_405_400.webp",
    f"{UUID}/100_0_405_400.webp",
    f"f1/{UUID.replace('-', '')}/100_0_405_400.webp",
    f"{PATH}\n",
    "",
])
def test_parse_refuses_paths_we_would_not_make(relpath):
    assert parse_crop_relpath(relpath) is None


def test_layout_under_the_root(cache, tmp_path):
    req = CropRequest(UUID, Box(100, 0, 405, 400), "webp")
    root = (tmp_path / "cache").resolve()
    assert cache.crop_path(req) == root / "crops" / PATH
    assert cache.source_path(UUID, ".pix") == root / "sources" / "f1" / f"{UUID}.pix"
    assert all((root / d).is_dir() for d in ("crops", "sources", "locks"))


# -- writing


def temp_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_bytes_makes_folders_and_replaces_the_old_file(cache):
    target = cache.crops / "f1" / UUID / "0_0_1_1.png"
    cache.write_bytes(target, b"old")
    cache.write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert temp_files(target.parent) == []


def test_json_round_trips_and_a_missing_file_is_none(cache):
    path = cache.source_path(UUID, ".json")
    assert cache.read_json(path) is None
    cache.write_json(path, {"uuid": UUID, "width": 3})
    assert cache.read_json(path) == {"uuid": UUID, "width": 3}


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_are_world_readable(cache, umask):
    """mkstemp makes 0600 files; nginx runs as another user and must read crops."""
    old = os.umask(umask)
    try:
        cache.write_bytes(cache.crops / "a.png", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((cache.crops / "a.png").stat().st_mode) == 0o644


@pytest.mark.parametrize("old", [None, b"old contents"])
def test_an_exception_in_the_block_leaves_the_old_file_and_no_temp(cache, old):
    target = cache.crops / "f1" / "x.webp"
    if old is not None:
        cache.write_bytes(target, old)
    with pytest.raises(RuntimeError):
        with cache.atomic_writer(target) as out:
            out.write(b"half a crop")
            raise RuntimeError("encoder failed")
    assert (target.read_bytes() if target.exists() else None) == old
    assert temp_files(target.parent) == []


@pytest.mark.parametrize("old", [None, b"old contents"])
def test_a_writer_killed_mid_write_leaves_the_old_file_and_only_a_temp(cache, old):
    target = cache.crops / "f1" / "x.webp"
    if old is not None:
        cache.write_bytes(target, old)
    pid = os.fork()
    if pid == 0:
        try:
            with cache.atomic_writer(target) as out:
                out.write(b"half" * 1000)
                out.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert (target.read_bytes() if target.exists() else None) == old
    [temp] = temp_files(target.parent)
    assert temp.startswith(".x.webp.")
    assert (target.parent / temp).read_bytes() == b"half" * 1000


# -- locks


def LockHolder(cache, kind="crop", key="k"):
    """A forked child that holds cache.lock(kind, key)."""
    return HeldInChild(lambda: cache.lock(kind, key))


def test_a_second_process_waits_then_gets_busy_error(cache):
    with LockHolder(cache):
        start = time.monotonic()
        with pytest.raises(BusyError) as info:
            with cache.lock("crop", "k"):
                pytest.fail("got a lock another process holds")
        waited = time.monotonic() - start
    assert 0.3 <= waited < 2
    assert info.value.retry_after == 1
    assert info.value.status == 503


def test_a_waiter_gets_the_lock_once_the_holder_lets_go(tmp_path):
    cache = FileCache(tmp_path, lock_timeout=5)
    with LockHolder(cache) as holder:
        timer = threading.Timer(0.3, holder.release)
        start = time.monotonic()
        timer.start()
        with cache.lock("crop", "k"):
            waited = time.monotonic() - start
        timer.join()
    assert 0.25 <= waited < 3
    assert holder.exited_cleanly()


def test_a_lock_of_a_killed_holder_is_free_at_once(tmp_path):
    cache = FileCache(tmp_path, lock_timeout=0)
    with LockHolder(cache) as holder:
        with pytest.raises(BusyError):
            with cache.lock("crop", "k"):
                pass
        holder.kill()
        with cache.lock("crop", "k"):  # lock_timeout=0: one try only
            pass


def test_other_keys_and_kinds_are_not_blocked(tmp_path):
    cache = FileCache(tmp_path, lock_timeout=0)
    with LockHolder(cache, "crop", "a"):
        with cache.lock("crop", "b"):  # "a" and "b" fall in different stripes
            pass
        with cache.lock("source", "a"):
            pass


def test_threads_of_one_process_exclude_each_other(tmp_path):
    cache = FileCache(tmp_path, lock_timeout=10)
    inside, most, errors = [0], [0], []
    counter_lock = threading.Lock()

    def work():
        try:
            for _ in range(5):
                with cache.lock("crop", "k"):
                    with counter_lock:
                        inside[0] += 1
                        most[0] = max(most[0], inside[0])
                    time.sleep(0.005)
                    with counter_lock:
                        inside[0] -= 1
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert most[0] == 1


def test_a_thread_holding_the_lock_makes_another_thread_busy(cache):
    held, done = threading.Event(), threading.Event()

    def hold():
        with cache.lock("crop", "k"):
            held.set()
            done.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        with pytest.raises(BusyError):
            with cache.lock("crop", "k"):
                pass
    finally:
        done.set()
        holder.join()
    with cache.lock("crop", "k"):
        pass
