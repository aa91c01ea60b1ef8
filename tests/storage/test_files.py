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

from cropper.crops import Box, Crop
from cropper.errors import BusyError, InsufficientStorageError
from cropper.storage.disk import atomic_writer, write_bytes
from cropper.storage.files import FileCropStore, FileSourceStore, UsageCounter
from cropper.storage.locks import Locks
from tests.disks import fill, small_disk
from tests.modules import package_sources
from tests.processes import HeldInChild

UUID = "f11816b8-1234-4abc-8def-0123456789ab"
PATH = f"f1/{UUID}/100_0_405_400.webp"


@pytest.fixture
def locks(tmp_path):
    return Locks(tmp_path / "cache" / "locks", timeout=0.3)


@pytest.fixture
def stores(tmp_path, locks):
    return FileCropStore(tmp_path / "cache", locks), FileSourceStore(tmp_path / "cache", locks)


@pytest.fixture
def crops_dir(tmp_path):
    return tmp_path / "cache" / "crops"


def test_layout_under_the_root(stores, tmp_path):
    crop_store, source_store = stores
    root = (tmp_path / "cache").resolve()
    assert crop_store.path(Crop(UUID, Box(100, 0, 405, 400), "webp")) == root / "crops" / PATH
    source_store.write_info(UUID, {"uuid": UUID})
    assert (root / "sources" / "f1" / f"{UUID}.json").is_file()


def test_nothing_is_written_until_something_is_stored(tmp_path):
    locks = Locks(tmp_path / "cache" / "locks", 1)
    crop_store, source_store = FileCropStore(tmp_path / "cache", locks), FileSourceStore(tmp_path / "cache", locks)
    crop = Crop(UUID, Box(0, 0, 1, 1), "png")
    assert not crop_store.find(crop) and crop_store.open(crop) is None
    assert source_store.read_info(UUID) is None and source_store.open_pixels(UUID) is None
    assert not (tmp_path / "cache").exists()


# -- writing


def temp_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_bytes_makes_folders_and_replaces_the_old_file(crops_dir):
    target = crops_dir / "f1" / UUID / "0_0_1_1.png"
    write_bytes(target, b"old")
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert temp_files(target.parent) == []


def test_image_metadata_round_trips_and_a_missing_one_is_none(stores):
    _, source_store = stores
    assert source_store.read_info(UUID) is None
    source_store.write_info(UUID, {"uuid": UUID, "width": 3})
    assert source_store.read_info(UUID) == {"uuid": UUID, "width": 3}


def test_a_stored_crop_is_found_and_opened_with_its_size(stores):
    crop_store, _ = stores
    crop = Crop(UUID, Box(0, 0, 1, 1), "png")
    crop_store.put(crop, b"crop bytes")
    opened = crop_store.open(crop)
    with opened.file:
        assert crop_store.find(crop) and opened.file.read() == b"crop bytes" and opened.size == 10


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_are_world_readable(crops_dir, umask):
    """mkstemp makes 0600 files; nginx runs as another user and must read crops."""
    old = os.umask(umask)
    try:
        write_bytes(crops_dir / "a.png", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((crops_dir / "a.png").stat().st_mode) == 0o644


@pytest.mark.parametrize("old", [None, b"old contents"])
def test_an_exception_in_the_block_leaves_the_old_file_and_no_temp(crops_dir, old):
    target = crops_dir / "f1" / "x.webp"
    if old is not None:
        write_bytes(target, old)
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as out:
            out.write(b"half a crop")
            raise RuntimeError("encoder failed")
    assert (target.read_bytes() if target.exists() else None) == old
    assert temp_files(target.parent) == []


@pytest.mark.parametrize("old", [None, b"old contents"])
def test_a_writer_killed_mid_write_leaves_the_old_file_and_only_a_temp(crops_dir, old):
    target = crops_dir / "f1" / "x.webp"
    if old is not None:
        write_bytes(target, old)
    pid = os.fork()
    if pid == 0:
        try:
            with atomic_writer(target) as out:
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


def LockHolder(locks, key="k"):
    """A forked child that holds the lock of key."""
    return HeldInChild(lambda: locks.hold(key))


def test_a_second_process_waits_then_gets_busy_error(locks):
    with LockHolder(locks):
        start = time.monotonic()
        with pytest.raises(BusyError) as info:
            with locks.hold("k"):
                pytest.fail("got a lock another process holds")
        waited = time.monotonic() - start
    assert 0.3 <= waited < 2
    assert info.value.retry_after == 1
    assert info.value.status == 503


def test_a_waiter_gets_the_lock_once_the_holder_lets_go(tmp_path):
    locks = Locks(tmp_path, timeout=5)
    with LockHolder(locks) as holder:
        timer = threading.Timer(0.3, holder.release)
        start = time.monotonic()
        timer.start()
        with locks.hold("k"):
            waited = time.monotonic() - start
        timer.join()
    assert 0.25 <= waited < 3
    assert holder.exited_cleanly()


def test_a_lock_of_a_killed_holder_is_free_at_once(tmp_path):
    locks = Locks(tmp_path, timeout=0)
    with LockHolder(locks) as holder:
        with pytest.raises(BusyError):
            with locks.hold("k"):
                pass
        holder.kill()
        with locks.hold("k"):  # lock_timeout=0: one try only
            pass


def test_other_keys_are_not_blocked(tmp_path):
    locks = Locks(tmp_path, timeout=0)
    with LockHolder(locks, "crop:a"):
        for key in ("crop:b", "source:a", *(f"crop:{n}" for n in range(2000))):  # no stripes shared
            with locks.hold(key):
                pass


def test_holding_locks_creates_and_removes_no_file_per_key(tmp_path):
    """A file made and removed per crop cost a new inode each (and a scan past freed ones on ext4): keys are
    bytes of one file, which stays."""
    locks = Locks(tmp_path, timeout=1)
    with locks.hold("first"):
        pass
    before = sorted((path.name, path.stat().st_ino) for path in tmp_path.rglob("*"))
    for n in range(500):
        with locks.hold(f"crop:{n}"):
            pass
    assert sorted((path.name, path.stat().st_ino) for path in tmp_path.rglob("*")) == before
    assert len(before) == 1


def test_a_turn_is_held_on_a_read_only_descriptor_and_taken_once_its_holder_goes(tmp_path):
    """The pruner holds its turn for its whole life: a descriptor open for writing would keep the cache folder
    from being remounted read-only."""
    locks = Locks(tmp_path, timeout=0)
    with HeldInChild(lambda: locks.turn("pruner")) as holder:
        with pytest.raises(BusyError):
            with locks.turn("pruner", wait=False):
                pass
        holder.kill()
        with locks.turn("pruner", wait=False):
            opened = open_files_below(tmp_path)
            assert opened and all(flags & os.O_ACCMODE == os.O_RDONLY for flags in opened.values())


def open_files_below(folder):
    """path -> open flags of each descriptor of this process on a file below folder."""
    opened = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
            with open(f"/proc/self/fdinfo/{fd}") as info:
                flags = int(info.read().split("flags:")[1].split()[0], 8)
        except OSError:  # the descriptor listdir itself used, closed since
            continue
        if path.startswith(f"{folder}/"):
            opened[path] = flags
    return opened


def in_threads(count, work):
    """Run work() in count threads at once: the exceptions they raised."""
    errors = []

    def run():
        try:
            work()
        except Exception as error:  # noqa: BLE001 - returned to the test
            errors.append(error)

    workers = [threading.Thread(target=run) for _ in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert not any(worker.is_alive() for worker in workers)
    return errors


@pytest.mark.parametrize("threads, rounds, pause", [(6, 5, 0.005), (8, 30, 0.0005)])
def test_threads_of_one_process_exclude_each_other(tmp_path, threads, rounds, pause):
    """Many short holds by threads of one process: a lock belongs to an open file, not to the process, so no
    two threads are ever inside together."""
    locks = Locks(tmp_path, timeout=10)
    inside, most = [0], [0]
    counter_lock = threading.Lock()

    def work():
        for _ in range(rounds):
            with locks.hold("k"):
                with counter_lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(pause)
                with counter_lock:
                    inside[0] -= 1

    assert in_threads(threads, work) == [] and most[0] == 1


def test_a_thread_holding_the_lock_makes_another_thread_busy(locks):
    held, done = threading.Event(), threading.Event()

    def hold():
        with locks.hold("k"):
            held.set()
            done.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        with pytest.raises(BusyError):
            with locks.hold("k"):
                pass
    finally:
        done.set()
        holder.join()
    with locks.hold("k"):
        pass


def test_the_usage_counts_of_threads_of_one_process_are_never_lost(tmp_path):
    """A gthread worker's request threads and its pixel writers count their writes at once: each add must
    be seen by the next (a lock owned by the process, not the open file, let two threads in together)."""
    usage = UsageCounter(tmp_path / "usage" / "crops")
    threads, adds = 6, 300

    def count():
        for _ in range(adds):
            usage.add(1)

    assert in_threads(threads, count) == []
    assert usage.add(0) == threads * adds


def test_no_module_outside_the_cache_knows_its_files():
    """Suffixes, lock files and temp files are the cache's own business; others speak in meanings."""
    for name, text in package_sources(but=("storage/files.py", "storage/disk.py", "storage/locks.py")):
        for detail in ('".pix"', '".json"', '.lock"', "TEMP_SUFFIX", ".tmp", "tempfile", "flock", "st_atime", "locks/"):
            assert detail not in text, f"{name} mentions {detail}"


# -- a disk with one block left


def test_a_write_that_takes_the_disks_last_block_before_the_first_count_is_a_storage_error(tmp_path):
    """A new cache's usage counter is created empty (by make_room's read) and gets its first bytes after the
    write: on a disk the write filled, that is ENOSPC too, and must be a 507, not an OSError (a 500)."""
    with small_disk(tmp_path / "disk", 1) as disk:
        source_store = FileSourceStore(disk / "cache", Locks(disk / "cache" / "locks", timeout=0.3))
        assert source_store.count(0) == 0  # what Pruner.make_room reads before a write
        fill(disk, leave_bytes=4096)
        assert os.statvfs(disk).f_bavail == 1

        with pytest.raises(InsufficientStorageError):
            source_store.write_info(UUID, {"uuid": UUID})
