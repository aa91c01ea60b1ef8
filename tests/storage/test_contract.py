"""The storage interfaces' contract: every crop store (the file store, and the S3 store on a real SeaweedFS) and
the source store meet the same expectations, eviction included. A new backend joins the parameter lists."""

import os
import time
import uuid

import pytest

from cropper.config import Settings
from cropper.crops import Box, Crop
from cropper.errors import BusyError
from cropper.storage import CropStore, Evictable, SourceStore
from cropper.storage.eviction import Pruner
from cropper.storage.files import FileCropStore, FileSourceStore
from cropper.storage.locks import Locks
from tests.processes import HeldInChild


@pytest.fixture
def locks(tmp_path):
    return Locks(tmp_path / "cache" / "locks", timeout=0.3)


@pytest.fixture
def source_store(tmp_path, locks):
    return FileSourceStore(tmp_path / "cache", locks)


@pytest.fixture(params=["file", "s3"])
def crop_store(request, tmp_path, locks):
    if request.param == "file":
        return FileCropStore(tmp_path / "cache", locks)
    seaweed = request.getfixturevalue("seaweed")
    return seaweed.store(locks, prefix=f"contract-{uuid.uuid4().hex[:8]}/", connect_timeout=0.5, read_timeout=2)


def new_crop(x=0, fmt="webp", image=None):
    return Crop(image or str(uuid.uuid4()), Box(x, 0, x + 10, 10), fmt)


def test_each_store_has_every_method_of_its_interface(crop_store, source_store):
    for store, interface in ((crop_store, CropStore), (source_store, SourceStore)):
        for name in {*vars(interface), *vars(Evictable)}:
            if not name.startswith("_") and name not in ("name", "shared"):
                assert callable(getattr(store, name, None)), f"{type(store).__name__} lacks {name}"
        assert isinstance(store.name, str) and isinstance(store.shared, bool)


def test_a_crop_is_found_and_opened_only_once_stored(crop_store):
    crop = new_crop()
    assert not crop_store.find(crop) and crop_store.open(crop) is None
    crop_store.put(crop, b"the crop's bytes")
    assert crop_store.find(crop)
    opened = crop_store.open(crop)
    with opened.file:
        assert (opened.file.read(), opened.size) == (b"the crop's bytes", 16)
    assert abs(opened.modified - time.time()) < 60


def test_a_crop_is_written_once(crop_store):
    """Its name names its bytes: a second writer's put keeps the first's (they are the same pixels)."""
    crop = new_crop()
    crop_store.put(crop, b"first")
    crop_store.put(crop, b"first")
    with crop_store.open(crop).file as file:
        assert file.read() == b"first"


def test_a_crops_lock_is_exclusive_and_refuses_at_once_with_busy(crop_store):
    crop = new_crop()
    with HeldInChild(lambda: crop_store.lock(crop)):
        with pytest.raises(BusyError):
            with crop_store.lock(crop, timeout=0):
                pass
    with crop_store.lock(crop, timeout=0):  # free again once the holder lets go
        pass


def test_the_listing_names_each_crop_with_its_size_and_removal_takes_it_away(crop_store):
    image = str(uuid.uuid4())
    made = [new_crop(x, image=image) for x in range(3)]
    for crop in made:
        crop_store.put(crop, b"x" * 100)
    mine = [entry for entry in crop_store.listing().entries if entry.key.uuid == image]
    assert {entry.key for entry in mine} == set(made)
    assert all(entry.size >= 100 and entry.last_used > 0 for entry in mine)
    assert crop_store.remove(mine[0]) and not crop_store.find(mine[0].key)
    assert len([entry for entry in crop_store.listing().entries if entry.key.uuid == image]) == 2


def test_a_crop_being_made_is_not_removed(crop_store):
    crop = new_crop()
    crop_store.put(crop, b"x")
    (entry,) = [entry for entry in crop_store.listing().entries if entry.key == crop]
    with HeldInChild(lambda: crop_store.lock(crop)):
        assert crop_store.remove(entry) is False
    assert crop_store.find(crop)


def test_one_evictor_at_a_time(crop_store, source_store):
    for store in (crop_store, source_store):
        with HeldInChild(store.evicting):
            with pytest.raises(BusyError):
                with store.evicting():
                    pass


def test_a_local_store_counts_what_it_holds_and_a_shared_one_leaves_it_to_its_pruner(crop_store):
    before = crop_store.count(0)
    crop_store.put(new_crop(), b"x" * 5000)
    if crop_store.shared:
        assert crop_store.count(0) == 0
    else:
        assert crop_store.count(0) == before + 8192  # two blocks on disk


def test_a_record_written_again_is_counted_once(source_store):
    """FathomNet is asked again every METADATA_TTL, and each answer is written over the last."""
    image = str(uuid.uuid4())
    before = source_store.count(0)
    for _ in range(3):
        source_store.write_info(image, {"uuid": image, "fetched_at": time.time()})
        source_store.write_box(image, {"uuid": image})
    assert source_store.count(0) == before + 2 * 4096


def test_a_reachable_store_is_ready(crop_store, source_store):
    assert crop_store.readiness_problem() is None
    assert source_store.readiness_problem(1) is None
    assert "bytes free" in source_store.readiness_problem(2**62)


def test_eviction_keeps_a_crop_store_within_its_budget_least_recently_used_first(crop_store, source_store, tmp_path):
    """Over budget, the pruner removes the least recently used crops down to the low-water mark, and no more."""
    image = str(uuid.uuid4())
    old, new = [new_crop(x, image=image) for x in range(5)], [new_crop(x, image=image) for x in range(5, 10)]
    for crop in old:
        crop_store.put(crop, b"x" * 4096)
    if crop_store.shared:
        time.sleep(1.1)  # a bucket ranks by when each was stored, to the second
    else:
        for crop in old:  # the file store ranks by last use
            os.utime(crop_store.path(crop), (time.time() - 7200, time.time() - 7200))
    for crop in new:
        crop_store.put(crop, b"x" * 4096)
    listing = crop_store.listing()
    settings = Settings(cache_dir=tmp_path / "cache", cache_max_bytes=listing.size // 2, cache_low_water=1.0,
                        s3_pruner=True)
    report = Pruner(crop_store, source_store, settings).prune()
    assert report.crops_removed == 5
    assert {entry.key for entry in crop_store.listing().entries} == set(new)
    assert crop_store.listing().size <= settings.cache_max_bytes


class NamedAsBefore(Crop):
    """An upscaled IIIF crop stored under the name earlier versions gave it: without the ^ of its request."""

    @property
    def upscaled(self):
        return False


def test_a_crop_an_earlier_version_named_otherwise_is_listed_apart_and_pruned(crop_store, source_store, tmp_path):
    image = str(uuid.uuid4())
    upscaled, kept = (Crop(image, Box(10, 10, 60, 50), "png", size, family="iiif") for size in ((100, 80), (25, 20)))
    crop_store.put(NamedAsBefore(image, Box(10, 10, 60, 50), "png", (100, 80), family="iiif"), b"by an earlier version")
    crop_store.put(kept, b"a smaller one: its name is what it was")
    listing = crop_store.listing()
    assert [entry.key for entry in listing.superseded] == [upscaled]
    assert [entry.key for entry in listing.entries if entry.key.uuid == image] == [kept]
    settings = Settings(cache_dir=tmp_path / "cache", s3_pruner=True)
    report = Pruner(crop_store, source_store, settings).prune()
    assert (report.superseded_removed, report.crops_removed) == (1, 0)
    assert crop_store.listing().superseded == [] and crop_store.find(kept)


def test_the_source_store_keeps_records_and_pixels_apart_per_image(source_store):
    from PIL import Image

    from cropper import imaging

    image = str(uuid.uuid4())
    assert source_store.read_info(image) is None and source_store.open_pixels(image) is None
    source_store.write_info(image, {"uuid": image, "width": 4})
    source_store.write_box(image, {"uuid": image})
    with source_store.new_pixels(image) as out:
        imaging.write_raw(Image.new("RGB", (4, 3), (1, 2, 3)), out)
    assert source_store.read_info(image) == {"uuid": image, "width": 4}
    with source_store.open_pixels(image) as pixels:
        assert pixels.crop(Box(0, 0, 2, 2)).getpixel((1, 1)) == (1, 2, 3)
    (entry,) = [entry for entry in source_store.listing().entries if entry.key == image]
    assert source_store.remove(entry)
    assert source_store.read_info(image) is None and source_store.open_pixels(image) is None
    source_store.forget_info(image)  # forgetting what is gone is no error
    with source_store.scratch_file() as scratch:
        scratch.write(b"a download")


# -- the data-set stores: the file store (one host) and the S3 store (every host)


@pytest.fixture(params=["file", "s3"])
def dataset_store(request, tmp_path, locks):
    from cropper.storage.files import FileDatasetStore

    if request.param == "file":
        return FileDatasetStore(tmp_path / "cache")
    from cropper.storage.s3 import S3DatasetStore

    seaweed = request.getfixturevalue("seaweed")
    return S3DatasetStore(seaweed.store(locks, prefix=f"contract-{uuid.uuid4().hex[:8]}/"), tmp_path / "cache")


def test_a_data_set_file_is_stored_whole_measured_read_back_and_removed(dataset_store):
    import hashlib

    job = uuid.uuid4().hex
    with dataset_store.new_file(job, "imagefolder.zip") as new:
        new.file.write(b"PK" + b"x" * 5000)
    assert (new.size, new.sha256) == (5002, hashlib.sha256(b"PK" + b"x" * 5000).hexdigest())
    file, size = dataset_store.open_file(job, "imagefolder.zip")
    with file:
        assert (file.read(), size) == (b"PK" + b"x" * 5000, 5002)
    assert dataset_store.open_file(job, "other.tar") is None
    assert dataset_store.url_path(job, "imagefolder.zip") == f"/datasets/{job}/files/imagefolder.zip"
    assert dataset_store.remove(job) >= 5002 and dataset_store.open_file(job, "imagefolder.zip") is None


def test_a_data_set_file_whose_writing_fails_is_never_stored(dataset_store):
    job = uuid.uuid4().hex
    with pytest.raises(RuntimeError):
        with dataset_store.new_file(job, "train-000000.tar") as new:
            new.file.write(b"half")
            raise RuntimeError("the writer died")
    assert dataset_store.open_file(job, "train-000000.tar") is None


# -- purges


def test_removing_an_image_removes_every_crop_of_it_in_both_families_and_nothing_else(crop_store):
    image, other = str(uuid.uuid4()), str(uuid.uuid4())
    made = [new_crop(0, "webp", image), new_crop(10, "png", image),
            Crop(image, Box(0, 0, 10, 10), "jpeg", (10, 10), family="iiif")]
    kept = new_crop(0, "webp", other)
    for crop in (*made, kept):
        crop_store.put(crop, b"x" * 100)

    removed = crop_store.remove_image(image)

    assert (removed.files, removed.bytes >= 300) == (3, True)
    assert not any(crop_store.find(crop) for crop in made) and crop_store.find(kept)
    assert crop_store.remove_image(image).files == 0  # nothing more: no error
    with pytest.raises(ValueError):
        crop_store.remove_image("../" + image)  # only an image's uuid names what goes


def test_the_purge_list_reads_back_what_was_recorded_oldest_first_but_the_known(crop_store):
    run = uuid.uuid4().hex[:8]
    purges = [{"id": f"{n:020d}-{run}", "kind": "image", "target": str(uuid.uuid4())} for n in (3, 1, 2)]
    for purge in purges:
        crop_store.record_purge(purge)
    mine = [purge for purge in crop_store.purges() if purge["id"].endswith(run)]
    assert mine == sorted(purges, key=lambda purge: purge["id"])
    assert [purge["id"] for purge in crop_store.purges(known=frozenset({purges[1]["id"]}))
            if purge["id"].endswith(run)] == [purges[2]["id"], purges[0]["id"]]
    with pytest.raises(ValueError):
        crop_store.record_purge({"id": "../escape", "kind": "image"})


def test_the_source_store_forgets_an_image_and_a_box_and_keeps_withdrawals_out_of_eviction(source_store):
    from PIL import Image

    from cropper import imaging

    image, box, other_box = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    source_store.write_info(image, {"uuid": image})
    source_store.write_box(box, {"uuid": box, "concept": "a"})
    source_store.write_box(other_box, {"uuid": other_box, "concept": "b"})
    with source_store.new_pixels(image) as out:
        imaging.write_raw(Image.new("RGB", (4, 3)), out)
    assert dict(source_store.records("info")) == {image: {"uuid": image}}
    assert dict(source_store.records("box")) == {box: {"uuid": box, "concept": "a"},
                                                 other_box: {"uuid": other_box, "concept": "b"}}
    counted = source_store.count(0)

    removed = source_store.remove_image(image)
    assert removed.files == 2 and source_store.count(0) == counted - removed.bytes
    assert source_store.read_info(image) is None and source_store.open_pixels(image) is None
    assert source_store.forget_box(box).files == 1 and source_store.forget_box(box).files == 0
    assert source_store.read_box(other_box) is not None

    assert source_store.read_withdrawn(image) is None
    source_store.write_withdrawn(image, 1234.5)
    assert source_store.read_withdrawn(image) == 1234.5
    assert image not in [entry.key for entry in source_store.listing().entries]  # never evicted
    source_store.forget_withdrawn(image)
    assert source_store.read_withdrawn(image) is None

    assert source_store.purges_applied() == set()
    source_store.note_purge_applied("0001-ab")
    assert source_store.purges_applied() == {"0001-ab"}


def test_removing_an_images_pixels_waits_a_while_for_their_readers(source_store):
    from PIL import Image

    from cropper import imaging

    image = str(uuid.uuid4())
    with source_store.new_pixels(image) as out:
        imaging.write_raw(Image.new("RGB", (4, 3)), out)
    reader = source_store.open_pixels(image)
    started = time.monotonic()
    with reader:
        assert source_store.remove_image(image).files == 1  # after LOCK_TIMEOUT (0.3 s here), read or not
        assert reader.crop(Box(0, 0, 2, 2)).size == (2, 2)  # the reader keeps what it opened
    assert time.monotonic() - started >= 0.3
