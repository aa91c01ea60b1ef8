"""Purges on one host (the file store): each removes exactly what it names and nothing else, is idempotent, answers
what it removed, and a purge recorded by another host is applied by this one when it catches up."""

from pathlib import Path

import pytest

from cropper.purges import Purge
from devtools.servers import wait_until
from devtools.standin import boxes


@pytest.fixture
def purges(app):
    return app.extensions["cropper.purges"]


def files_of(cache, uuid):
    """Every file the cache folder keeps whose path names uuid (crops, tiles, records, pixels), as relative paths."""
    return sorted(str(path.relative_to(cache)) for path in Path(cache).rglob("*")
                  if path.is_file() and uuid in str(path))


def make_everything_of(client, record):
    """Crops of several sizes, formats and paddings, an IIIF tile, and the image's records and pixels."""
    for body in ({"x1": 0, "y1": 0, "x2": 64, "y2": 64}, {"x1": 0, "y1": 0, "x2": 64, "y2": 64, "format": "png"},
                 {"x1": 10, "y1": 10, "x2": 50, "y2": 50, "pad": 5, "width": 32, "height": 32}):
        assert client.post("/cropper/", json={"uuid": record.uuid, **body}).status_code == 200
    assert client.get(f"/iiif/3/{record.uuid}/0,0,256,256/128,/0/default.jpg").status_code == 200
    assert client.get(f"/images/{record.uuid}/boxes").status_code == 200
    for box in boxes(record.name):
        assert client.post("/cropper/", json={"box_uuid": box["uuid"], "width": 40, "height": 40}).status_code == 200


def test_an_image_purge_removes_every_crop_tile_record_and_pixel_of_it_and_nothing_else(client, settings, standin,
                                                                                       purges):
    purged, kept = standin.image("framegrab-1"), standin.image("framegrab-2")
    for record in (purged, kept):
        make_everything_of(client, record)
    assert wait_until(lambda: all(any(name.endswith(".pix") for name in files_of(settings.cache_dir, record.uuid))
                                  for record in (purged, kept)))
    before = files_of(settings.cache_dir, purged.uuid)
    assert {"crops", "iiif", "sources"} <= {name.split("/")[0] for name in before}
    kept_before = files_of(settings.cache_dir, kept.uuid)
    kept_boxes = [box["uuid"] for box in boxes(kept.name)]
    kept_box_files = files_of(settings.cache_dir, kept_boxes[0])

    report = purges.image(purged.uuid)

    assert files_of(settings.cache_dir, purged.uuid) == []
    assert all(files_of(settings.cache_dir, box["uuid"]) == [] for box in boxes(purged.name))  # its boxes' records
    assert files_of(settings.cache_dir, kept.uuid) == kept_before and files_of(settings.cache_dir, kept_boxes[0]) == \
        kept_box_files
    crops_and_tiles = [name for name in before if name.startswith(("crops/", "iiif/"))]
    assert report["store"]["files"] == len(crops_and_tiles) == 4 + len(boxes(purged.name))
    (here,) = report["hosts"]
    assert here["files"] == len(before) - len(crops_and_tiles) + len(boxes(purged.name))
    assert report["files"] == report["store"]["files"] + here["files"] and report["bytes"] > 0
    assert report["purge"]["kind"] == "image" and report["purge"]["target"] == purged.uuid

    again = purges.image(purged.uuid)  # idempotent: nothing more to remove
    assert (again["files"], again["bytes"]) == (0, 0)
    # Not withdrawn: its URLs make it again from FathomNet.
    assert client.post("/cropper/", json={"uuid": purged.uuid, "x1": 0, "y1": 0, "x2": 64, "y2": 64}).json["cached"] \
        is False


def test_a_box_purge_forgets_that_box_and_has_its_image_asked_again_crops_stay(client, settings, standin, purges):
    record = standin.image("framegrab-3")
    make_everything_of(client, record)
    first, *others = [box["uuid"] for box in boxes(record.name)]
    crops_before = [name for name in files_of(settings.cache_dir, record.uuid) if not name.startswith("sources/")]

    report = purges.box(first)

    assert files_of(settings.cache_dir, first) == [] and all(files_of(settings.cache_dir, box) for box in others)
    assert report["hosts"][0]["files"] == 1 and report["hosts"][0]["image_records_asked_again"] == 1
    assert [name for name in files_of(settings.cache_dir, record.uuid) if not name.startswith("sources/")] == \
        crops_before
    standin.reset()
    client.post("/cropper/", json={"box_uuid": first, "width": 40, "height": 40})
    assert standin.count(f"/api/boundingboxes/{first}") == 1  # asked for again
    client.get(f"/images/{record.uuid}/boxes")
    assert standin.count(f"/api/images/{record.uuid}") == 1  # its image's box list too


def test_a_concept_purge_forgets_every_box_of_that_concept_only(client, settings, standin, purges):
    for name in ("framegrab-4", "framegrab-5"):
        make_everything_of(client, standin.image(name))
    known = [box for name in ("framegrab-4", "framegrab-5") for box in boxes(name)]
    concept = known[0]["concept"]
    of_concept = [box["uuid"] for box in known if box["concept"] == concept]
    others = [box["uuid"] for box in known if box["concept"] != concept]
    assert others, "the test needs boxes of another concept"

    report = purges.concept(concept)

    assert all(files_of(settings.cache_dir, box) == [] for box in of_concept)
    assert all(files_of(settings.cache_dir, box) for box in others)
    assert report["files"] == len(of_concept) and report["purge"]["target"] == concept


def test_a_purge_another_host_recorded_is_applied_here_once_when_this_host_catches_up(client, settings, standin,
                                                                                     purges):
    record = standin.image("framegrab-6")
    make_everything_of(client, record)
    assert wait_until(lambda: any(name.endswith(".pix") for name in files_of(settings.cache_dir, record.uuid)))
    missed = Purge("image", record.uuid, withdrawn=True)
    purges.crop_store.record_purge(missed.to_dict())  # made on another host while this one was down

    assert purges.catch_up() == [missed]
    assert [name for name in files_of(settings.cache_dir, record.uuid) if name.startswith("sources/")] == [
        f"sources/{record.uuid[:2]}/{record.uuid}.gone"]  # withdrawn: answered 410 from now on
    assert client.get(f"/images/{record.uuid}/boxes").status_code == 410
    assert purges.catch_up() == []  # applied once


@pytest.mark.parametrize("data", [
    None, {}, {"kind": "file", "target": "x", "id": "1"}, {"kind": "image", "target": "../../etc", "id": "1"},
    {"kind": "concept", "target": "", "id": "1"}, {"kind": "concept", "target": "x" * 257, "id": "1"},
    {"kind": "box", "target": "00000000-0000-4000-8000-000000000000", "withdrawn": True, "id": "1"},
    {"kind": "image", "target": "00000000-0000-4000-8000-000000000000", "id": "../x"},
])
def test_what_is_not_a_purge_is_refused(data):
    with pytest.raises(ValueError):
        Purge.of(data)


def test_a_purge_reads_back_as_it_was_made():
    made = Purge("image", "00000000-0000-4000-8000-000000000000", withdrawn=True)
    assert Purge.of(made.to_dict()) == made
    assert Purge.of({**made.to_dict(), "target": made.target.upper()}) == made  # one spelling


def test_a_purge_this_host_cannot_apply_now_is_made_elsewhere_and_applied_here_later(settings, standin):
    from cropper import create_app
    from tests.processes import HeldInChild

    app = create_app(settings.replace(lock_timeout=0.2))
    client, purges = app.test_client(), app.extensions["cropper.purges"]
    record = standin.image("framegrab-7")
    make_everything_of(client, record)
    assert wait_until(lambda: any(name.endswith(".pix") for name in files_of(settings.cache_dir, record.uuid)))

    with HeldInChild(lambda: purges.sources.store.lock(record.uuid)):  # an image fetched for longer than LOCK_TIMEOUT
        report = purges.image(record.uuid)
    (here,) = report["hosts"]
    assert here["pending"] is True and "error" in here
    assert report["store"]["files"] > 0 and all(not name.startswith(("crops/", "iiif/"))
                                                for name in files_of(settings.cache_dir, record.uuid))
    assert [purge.id for purge in purges.catch_up()] == [report["purge"]["id"]]  # the pruner's next pass
    assert files_of(settings.cache_dir, record.uuid) == []
