"""CropService without Flask: the order of lookup, download, decode, crop and store for one crop."""

import threading

import pytest

from cropper.crops import Box, Crop
from cropper.errors import BoxOutsideImageError, BusyError, ImageNotFoundError
from cropper.wiring import crop_service
from tests.images import assert_image_equal, expected_crop, open_bytes


@pytest.fixture
def service(settings):
    return crop_service(settings)


def stored_image(service, crop):
    opened = service.crop_store.open(crop)
    with opened.file:
        return open_bytes(opened.file.read())


def test_a_miss_looks_up_downloads_crops_and_stores_then_a_hit_does_nothing_else(service, standin):
    record = standin.image("framegrab")
    crop = Crop(record.uuid, Box(100, 100, 405, 400), "png")

    made = service.get_or_create(crop)
    assert (made.crop, made.cached) == (crop, False)
    assert (standin.api_calls(), standin.downloads()) == (1, 1)
    assert_image_equal(stored_image(service, crop), expected_crop(record, crop.region))

    standin.reset()
    again = service.get_or_create(crop)
    assert again.cached is True
    assert (standin.api_calls(), standin.downloads()) == (0, 0)


def test_a_second_box_of_an_image_uses_its_stored_pixels(service, standin):
    record = standin.image("jpeg")
    service.get_or_create(Crop(record.uuid, Box(0, 0, 10, 10), "webp"))
    standin.reset()
    crop = Crop(record.uuid, Box(500, 300, 900, 700), "png")
    assert service.get_or_create(crop).cached is False
    assert (standin.api_calls(), standin.downloads()) == (0, 0)
    assert_image_equal(stored_image(service, crop), expected_crop(record, crop.region))


def test_a_box_outside_the_image_is_refused_after_the_lookup_and_before_the_download(service, standin):
    record = standin.image("gray")  # 640x480
    with pytest.raises(BoxOutsideImageError) as info:
        service.get_or_create(Crop(record.uuid, Box(600, 0, 641, 10), "png"))
    assert info.value.details == {"image_width": 640, "image_height": 480}
    assert standin.downloads() == 0


def test_an_unknown_image_is_not_found(service):
    with pytest.raises(ImageNotFoundError):
        service.get_or_create(Crop("00000000-0000-4000-8000-000000000000", Box(0, 0, 1, 1), "png"))


def test_identical_concurrent_crops_are_made_once(service, standin):
    record = standin.image("framegrab-3")
    crop = Crop(record.uuid, Box(10, 10, 210, 110), "webp")
    standin.set_fault("hold", target="image", uuid=record.uuid, times=1)
    results = []
    threads = [threading.Thread(target=lambda: results.append(service.get_or_create(crop))) for _ in range(6)]
    for thread in threads:
        thread.start()
    assert standin.wait_until_held(1)
    standin.release()
    for thread in threads:
        thread.join(30)
    assert sorted(result.cached for result in results) == [False] + [True] * 5
    assert standin.downloads(record.uuid) == 1


def test_a_waiter_gives_up_with_busy_after_the_lock_timeout(settings, standin):
    settings = settings.replace(lock_timeout=0.2)
    service = crop_service(settings)
    crop = Crop(standin.image("gray").uuid, Box(0, 0, 5, 5), "png")
    with service.crop_store.lock(crop):  # another request is making it
        with pytest.raises(BusyError) as info:
            service.get_or_create(crop)
    assert info.value.retry_after >= 1
    assert service.get_or_create(crop).cached is False  # once free, made at once


@pytest.mark.parametrize("damage", [b"{\"uuid\": ", b"\xff\xfe", b"[1, 2]", b"{\"width\": 3}", b"{\"boxes\": 7}"])
def test_damaged_stored_metadata_is_asked_for_again_not_a_500(service, standin, damage):
    record = standin.image("gray")
    box_uuid = standin.image_json("gray")["boundingBoxes"][0]["uuid"]
    service.get_or_create(Crop(record.uuid, Box(0, 0, 10, 10), "png"))
    service.sources.box(box_uuid)
    for path in (service.sources.store.folder / record.uuid[:2] / f"{record.uuid}.json",
                 service.sources.store.folder / box_uuid[:2] / f"{box_uuid}.box"):
        assert path.exists()
        path.write_bytes(damage)
    standin.reset()

    assert service.sources.info(record.uuid).size == (640, 480)
    assert service.sources.box(box_uuid).image_uuid == record.uuid
    assert standin.api_calls() == 2  # each asked for once more, and stored whole again
    assert service.sources.info(record.uuid).size == (640, 480) and standin.api_calls() == 2
