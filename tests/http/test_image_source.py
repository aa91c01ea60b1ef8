"""A second image source, written here in the test suite with no file of the package changed: a lab's own folder
of images. The service's real routes crop, box-crop, list, page and tile its images as they do FathomNet's."""

import hashlib
import shutil
import uuid

import pytest
from PIL import Image

from cropper import create_app
from cropper.errors import ImageNotFoundError
from cropper.upstream import BoxInfo, BoxPage, ImageInfo
from tests.images import assert_image_equal, assert_image_similar, open_bytes

LAB = uuid.UUID("0f0f0f0f-0000-4000-8000-000000000000")


class FolderSource:
    """An upstream.ImageSource over a folder of PNGs and the boxes a lab drew on them."""

    def __init__(self, folder, boxes):
        self.folder = folder
        self.boxes_by_image = boxes  # image uuid -> [(box uuid, concept, x, y, width, height)]
        self.downloads = 0

    def _info(self, image_uuid):
        path = self.folder / f"{image_uuid}.png"
        if not path.exists():
            raise ImageNotFoundError(f"The lab has no image {image_uuid}.")
        with Image.open(path) as image:
            width, height = image.size
        boxes = tuple(BoxInfo(box, image_uuid, concept, x, y, w, h, review="VERIFIED")
                      for box, concept, x, y, w, h in self.boxes_by_image.get(image_uuid, ()))
        return ImageInfo(image_uuid, path.as_uri(), width, height, boxes=boxes, depth=12.5)

    def image(self, uuid):
        return self._info(uuid)

    def images(self, uuids):
        return {uuid: self._info(uuid) for uuid in uuids if (self.folder / f"{uuid}.png").exists()}

    def bounding_box(self, box_uuid):
        return next((box for image in self.boxes_by_image for box in self._info(image).boxes if box.uuid == box_uuid),
                    None)

    def boxes(self, query, limit, offset):
        matching = [box for image in sorted(self.boxes_by_image) for box in self._info(image).boxes
                    if box.concept == query.concept]
        page = matching[offset:offset + limit]
        return BoxPage(page, len(matching), len(page))

    def concepts(self):
        return sorted({box[1] for boxes in self.boxes_by_image.values() for box in boxes})

    def taxa(self, concept, provider):
        return [concept] if concept in self.concepts() else []

    def download(self, url, out):
        self.downloads += 1
        data = (self.folder / url.rsplit("/", 1)[1]).read_bytes()
        out.write(data)
        return hashlib.sha256(data).hexdigest()

    def ping(self, timeout):
        return None


@pytest.fixture
def lab(tmp_path):
    folder = tmp_path / "lab"
    folder.mkdir()
    image_uuid, box_uuid = str(uuid.uuid5(LAB, "dive-1")), str(uuid.uuid5(LAB, "box-1"))
    picture = Image.effect_noise((320, 240), 60).convert("RGB")
    picture.save(folder / f"{image_uuid}.png")
    source = FolderSource(folder, {image_uuid: [(box_uuid, "Sebastes", 40, 30, 100, 80)]})
    return source, image_uuid, box_uuid, picture


@pytest.fixture
def lab_client(lab, settings):
    return create_app(settings, source=lab[0]).test_client()


def fetched(client, url):
    answer = client.get(url.replace("http://crops.test", ""))
    assert answer.status_code == 200, answer.json
    return open_bytes(answer.data)


def test_the_lab_folder_is_cropped_by_box_and_by_annotation_through_the_routes(lab, lab_client, standin):
    source, image_uuid, box_uuid, picture = lab
    answer = lab_client.post("/cropper/", json={"uuid": image_uuid, "x1": 10, "y1": 20, "x2": 110, "y2": 90,
                                                "format": "png"})
    assert answer.status_code == 200, answer.json
    assert_image_equal(fetched(lab_client, answer.json["url"]), picture.crop((10, 20, 110, 90)))

    by_box = lab_client.post("/cropper/", json={"box_uuid": box_uuid, "format": "png"})
    assert by_box.json["concept"] == "Sebastes" and by_box.json["region"] == [40, 30, 140, 110]
    assert by_box.json["review"] == "VERIFIED"  # what a person building a data set checks
    assert_image_equal(fetched(lab_client, by_box.json["url"]), picture.crop((40, 30, 140, 110)))
    assert source.downloads == 1  # one download per image, as with FathomNet
    assert standin.api_calls() == 0  # FathomNet was never asked


def test_the_lab_folders_boxes_concept_pages_and_iiif_tiles(lab, lab_client):
    source, image_uuid, box_uuid, picture = lab
    listed = lab_client.get(f"/images/{image_uuid}/boxes").json
    assert [box["box_uuid"] for box in listed["boxes"]] == [box_uuid] and listed["width"] == 320

    page = lab_client.post("/cropper-concept/", json={"concept": "Sebastes", "format": "png"}).json
    assert page["total"] == 1 and page["crops"][0]["box_uuid"] == box_uuid

    info = lab_client.get(f"/iiif/3/{image_uuid}/info.json").json
    assert (info["width"], info["height"]) == (320, 240)
    tile = lab_client.get(f"/iiif/3/{image_uuid}/0,0,160,120/80,60/0/default.png")
    assert tile.status_code == 200
    assert_image_similar(open_bytes(tile.data), picture.crop((0, 0, 160, 120)).resize((80, 60), Image.LANCZOS))
    assert lab_client.get(f"/images/{uuid.uuid4()}/boxes").status_code == 404


def test_a_crop_url_regenerates_from_the_lab_folder_once_evicted(lab, lab_client, settings):
    _, image_uuid, _, picture = lab
    url = lab_client.post("/cropper/", json={"uuid": image_uuid, "x1": 0, "y1": 0, "x2": 50, "y2": 50,
                                             "format": "png"}).json["url"]
    shutil.rmtree(settings.cache_dir / "crops")
    assert_image_equal(fetched(lab_client, url), picture.crop((0, 0, 50, 50)))
