"""ImageSources' freshness, without Flask: what is remembered of annotations is asked again after METADATA_TTL (and
not before), an image FathomNet no longer has is withdrawn, and FathomNet unreachable serves what is remembered,
marked stale. A clock the tests turn stands in for waiting."""

import pytest

from cropper import sources as sources_module
from cropper.crops import Box, Crop
from cropper.errors import BoxNotFoundError, ImageNotFoundError, ImageWithdrawnError
from cropper.wiring import crop_service
from devtools.servers import wait_until
from devtools.standin import boxes

TTL = 60.0


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now

    def turn(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def service(settings, clock):
    made = crop_service(settings.replace(metadata_ttl=TTL))
    made.sources.clock = clock
    return made


@pytest.fixture
def sources(service):
    return service.sources


def pixels_stored(sources, uuid):
    pixels = sources.store.open_pixels(uuid)
    if pixels is None:
        return False
    pixels.close()
    return True


def image_queries(standin):
    """Calls that ask FathomNet about images: one each, or many at once."""
    return standin.count("/api/images/", "GET") + standin.count("/api/images/query/uuids", "POST")


def test_a_box_is_asked_again_only_after_the_ttl_and_then_follows_its_correction(sources, standin, clock):
    first = boxes("framegrab-1")[0]
    assert sources.box(first["uuid"]).box == Box(first["x"], first["y"], first["x"] + first["width"],
                                                  first["y"] + first["height"])
    standin.edit_box(first["uuid"], x=first["x"] + 7, concept="Corrected concept")
    standin.reset_counts = standin.api_calls()

    clock.turn(TTL - 1)
    assert sources.box(first["uuid"]).x == first["x"]  # not before: remembered, no call
    assert standin.api_calls() == standin.reset_counts

    clock.turn(2)
    corrected = sources.box(first["uuid"])
    assert (corrected.x, corrected.concept) == (first["x"] + 7, "Corrected concept")
    assert image_queries(standin) == 1  # through its image's record, which lists every box of the image
    assert sources.box(first["uuid"]).x == first["x"] + 7 and image_queries(standin) == 1  # fresh again


def test_many_older_boxes_are_asked_again_in_one_query_of_their_images(sources, standin, clock):
    wanted = [boxes(name)[0]["uuid"] for name in ("framegrab-1", "framegrab-2", "framegrab-3")]
    assert all(not isinstance(found, Exception) for found in sources.boxes(wanted).values())
    standin.reset()
    clock.turn(TTL + 1)
    answered = sources.boxes(wanted)
    assert set(answered) == set(wanted) and not any(isinstance(found, Exception) for found in answered.values())
    assert standin.count("/api/images/query/uuids", "POST") == 1 and standin.api_calls() == 1


def test_a_box_deleted_in_fathomnet_is_not_found_once_the_ttl_passes(sources, standin, clock):
    deleted = boxes("framegrab-4")[0]["uuid"]
    sources.box(deleted)
    standin.delete_box(deleted)
    assert sources.box(deleted).uuid == deleted
    clock.turn(TTL + 1)
    with pytest.raises(BoxNotFoundError):
        sources.box(deleted)
    with pytest.raises(BoxNotFoundError):  # forgotten: asked for as a box never seen, and not found
        sources.box(deleted)


def test_an_images_box_list_is_asked_again_after_the_ttl(sources, standin, clock):
    record = standin.image("framegrab-5")
    listed = sources.info_with_boxes(record.uuid).boxes
    standin.delete_box(listed[0].uuid)
    clock.turn(TTL - 1)
    assert sources.info_with_boxes(record.uuid).boxes == listed and image_queries(standin) == 1
    clock.turn(2)
    assert sources.info_with_boxes(record.uuid).boxes == listed[1:] and image_queries(standin) == 2


def test_a_crop_named_by_its_pixel_region_never_asks_fathomnet_again(service, standin, clock):
    record = standin.image("framegrab-6")
    service.get_or_create(Crop(record.uuid, Box(0, 0, 10, 10), "png"))
    standin.reset()
    clock.turn(100 * TTL)
    service.get_or_create(Crop(record.uuid, Box(0, 0, 20, 20), "png"))  # a miss: made from the record and pixels
    assert standin.api_calls() == 0


def test_a_record_kept_before_fetch_times_were_is_asked_again(sources, standin):
    record = standin.image("framegrab-7")
    sources.info(record.uuid)
    data = sources.store.read_info(record.uuid)
    del data[sources_module.FETCHED]
    sources.store.write_info(record.uuid, data)
    standin.reset()
    assert sources.info(record.uuid).uuid == record.uuid and standin.api_calls() == 0  # for pixels: as it is
    assert sources.info_with_boxes(record.uuid).boxes and standin.api_calls() == 1  # for its boxes: asked again


def test_fathomnet_unreachable_serves_what_is_remembered_marked_stale_and_asks_again_later(sources, standin, clock):
    wanted = boxes("framegrab-8")[0]["uuid"]
    sources.box(wanted)
    clock.turn(TTL + 1)
    standin.set_fault("503", target="api")
    calls = standin.api_calls()
    sources_module.stale_noted()
    assert sources.box(wanted).uuid == wanted
    assert sources_module.stale_noted() and standin.api_calls() > calls
    # Meanwhile this process does not make every request wait on FathomNet's timeouts again.
    calls = standin.api_calls()
    assert sources.box(wanted).uuid == wanted and standin.api_calls() == calls
    standin.clear_faults()
    clock.turn(sources_module.ASK_AGAIN_AFTER)
    sources_module.stale_noted()
    assert sources.box(wanted).uuid == wanted and not sources_module.stale_noted()
    assert standin.api_calls() == calls + 1


def test_an_image_fathomnet_withdrew_is_purged_and_gone_from_then_on(service, sources, standin, clock):
    record = standin.image("framegrab-9")
    crop = Crop(record.uuid, Box(0, 0, 16, 16), "png")
    service.get_or_create(crop)
    box_uuid = sources.info_with_boxes(record.uuid).boxes[0].uuid
    sources.box(box_uuid)
    assert wait_until(lambda: pixels_stored(sources, record.uuid))
    standin.withdraw_image(record.uuid)
    clock.turn(TTL + 1)

    with pytest.raises(ImageWithdrawnError) as gone:
        sources.info_with_boxes(record.uuid)
    assert gone.value.status == 410
    assert wait_until(lambda: not pixels_stored(sources, record.uuid))  # purged (here: on this host alone)
    assert sources.store.read_box(box_uuid) is None and sources.store.read_info(record.uuid) is None
    standin.reset_counts = standin.api_calls()
    for ask in (sources.info, sources.info_with_boxes):  # every URL of it: 410, without asking FathomNet again
        with pytest.raises(ImageWithdrawnError):
            ask(record.uuid)
    assert standin.api_calls() == standin.reset_counts


def test_a_withdrawn_image_is_asked_about_again_after_the_ttl_and_served_if_it_came_back(sources, standin, clock):
    record = standin.image("gray")
    sources.info_with_boxes(record.uuid)
    standin.withdraw_image(record.uuid)
    clock.turn(TTL + 1)
    with pytest.raises(ImageWithdrawnError):
        sources.info_with_boxes(record.uuid)
    for turn, asked in ((0, 0), (TTL / 2 + 1, 0), (TTL / 2 + 1, 1)):  # still withdrawn: asked again once per TTL
        clock.turn(turn)
        calls = image_queries(standin)
        with pytest.raises(ImageWithdrawnError):
            sources.info(record.uuid)
        assert image_queries(standin) == calls + asked
    standin.reset()  # FathomNet has it again
    clock.turn(TTL - 1)
    with pytest.raises(ImageWithdrawnError):
        sources.info(record.uuid)
    clock.turn(2)
    assert sources.info(record.uuid).uuid == record.uuid
    assert sources.store.read_withdrawn(record.uuid) is None


def test_an_image_never_seen_that_fathomnet_lacks_is_not_found_not_withdrawn(sources):
    unknown = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(ImageNotFoundError):
        sources.info_with_boxes(unknown)
    assert sources.store.read_withdrawn(unknown) is None


def test_forgetting_boxes_removes_exactly_those_picked_and_has_their_images_asked_again(sources, standin, clock):
    record = standin.image("framegrab-1")
    listed = sources.info_with_boxes(record.uuid).boxes
    other = standin.image("framegrab-2")
    others = sources.info_with_boxes(other.uuid).boxes
    for box in (*listed, *others):
        sources.box(box.uuid)
    picked = listed[0]

    removed, asked_again = sources.forget_boxes(lambda box: box.uuid == picked.uuid)

    assert (removed.files, asked_again) == (1, 1)
    assert sources.store.read_box(picked.uuid) is None
    assert all(sources.store.read_box(box.uuid) for box in (*listed[1:], *others))
    standin.reset()
    sources.info_with_boxes(record.uuid)  # its list is asked for again at once; the other image's is not
    sources.info_with_boxes(other.uuid)
    assert image_queries(standin) == 1 and standin.count(f"/api/images/{record.uuid}") == 1
