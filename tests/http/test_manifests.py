"""IIIF Presentation manifests and concept collections through Flask's test client, FathomNet played by the
real stand-in: what they hold of the stand-in's records, what they cost it, and their errors."""

from urllib.parse import quote

import pytest

from cropper import create_app
from cropper.iiif import presentation
from devtools.standin import DATASET_NAMES, MULTIPAGE_CONCEPT, boxes, concept_boxes, image_fields
from tests.http.test_crops import assert_error
from tests.presentation import assert_valid_presentation

BASE = "http://crops.test"  # the settings fixture's PUBLIC_URL
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def manifest_of(client, standin, uuid, **headers):
    answer = client.get(f"{presentation.MANIFESTS}/{uuid}", headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert_valid_presentation(answer.json, BASE, elsewhere=[f"{standin.api_url}/images/"])
    return answer


def annotations(document):
    return document["items"][0]["annotations"][0]["items"]


def xywh(box, size):
    """A stand-in box's region as the manifest targets it: clamped to the image."""
    x1, y1 = max(box["x"], 0), max(box["y"], 0)
    x2, y2 = min(box["x"] + box["width"], size[0]), min(box["y"] + box["height"], size[1])
    return f"{x1},{y1},{x2 - x1},{y2 - y1}"


def test_a_manifest_holds_the_stand_ins_record_and_boxes(client, standin):
    name = "framegrab-7"  # a box past its left edge among them
    record = standin.image(name)
    answer = manifest_of(client, standin, record.uuid, Origin="https://viewer.example")
    assert answer.headers["Content-Type"] == presentation.MEDIA_TYPE
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    document = answer.json
    assert document["id"] == f"{BASE}/iiif/manifests/{record.uuid}"
    canvas = document["items"][0]
    assert (canvas["width"], canvas["height"]) == (record.width, record.height)
    fields = image_fields(name)
    metadata = {pair["label"]["en"][0]: pair["value"]["none"][0] for pair in document["metadata"]}
    assert metadata["Imaging type"] == fields["imagingType"] and metadata["Time"] == fields["timestamp"]
    assert float(metadata["Depth"].removesuffix(" m")) == fields["depthMeters"]
    point = document["navPlace"]["features"][0]["geometry"]["coordinates"]
    assert point == [fields["longitude"], fields["latitude"]]
    expected = {f"{canvas['id']}#xywh={xywh(b, (record.width, record.height))}": b["concept"] for b in boxes(name)}
    assert {a["target"]: a["body"][0]["value"] for a in annotations(document)} == expected
    assert len(annotations(document)) == len(boxes(name))
    assert {a["id"].rsplit("/", 1)[1] for a in annotations(document)} == {b["uuid"] for b in boxes(name)}


def test_a_cold_manifest_costs_one_fathomnet_lookup_and_a_warm_one_none(client, standin):
    uuid = standin.image("framegrab-8").uuid
    standin.reset()
    first = manifest_of(client, standin, uuid)
    assert standin.api_calls() == 1 and standin.count(f"/api/images/{uuid}") == 1
    again = manifest_of(client, standin, uuid)
    assert again.json == first.json
    assert standin.api_calls() == 1 and standin.downloads() == 0


def test_an_image_without_position_or_depth_has_no_place_and_no_depth(client, standin):
    nowhere, shallow = DATASET_NAMES[9], DATASET_NAMES[10]  # no latitude and longitude; no depth
    document = manifest_of(client, standin, standin.image(nowhere).uuid).json
    assert "navPlace" not in document and document["@context"] == presentation.CONTEXT
    assert not {"Latitude", "Longitude"} & {pair["label"]["en"][0] for pair in document["metadata"]}
    document = manifest_of(client, standin, standin.image(shallow).uuid).json
    assert "Depth" not in {pair["label"]["en"][0] for pair in document["metadata"]} and "navPlace" in document


def test_a_box_wholly_outside_its_image_is_left_out(client, standin):
    name = DATASET_NAMES[11]  # its "outside-far" box starts 5000 pixels before the image
    document = manifest_of(client, standin, standin.image(name).uuid).json
    inside = [b for b in boxes(name) if b["x"] + b["width"] > 0 and b["y"] + b["height"] > 0]
    assert len(annotations(document)) == len(inside) == len(boxes(name)) - 1


def test_an_image_without_boxes_has_an_empty_annotation_page(client, standin):
    name = "gray"
    for box in boxes(name):
        standin.delete_box(box["uuid"])
    document = manifest_of(client, standin, standin.image(name).uuid).json
    assert document["items"][0]["annotations"][0]["type"] == "AnnotationPage"
    assert annotations(document) == []


def test_a_hostile_concept_is_carried_as_text(client, standin):
    hostile = '</script><img src=x onerror="window.pwned=1"><b>Aurelia</b>'
    added = standin.add_box("palette", hostile, 10, 20, 30, 40)
    document = manifest_of(client, standin, standin.image("palette").uuid).json
    [annotation] = [a for a in annotations(document) if a["id"].endswith(added["uuid"])]
    assert annotation["body"][0] == {"type": "TextualBody", "value": hostile, "format": "text/plain",
                                     "purpose": "tagging"}
    assert hostile in document["label"]["en"][0]


@pytest.mark.parametrize("path, status, code", [
    (f"{presentation.MANIFESTS}/{UNKNOWN}", 404, "image_not_found"),
    (f"{presentation.MANIFESTS}/not-a-uuid", 404, "image_not_found"),
    (f"{presentation.CONCEPT_COLLECTION}?name=No%20such%20concept", 404, "concept_not_found"),
    (presentation.CONCEPT_COLLECTION, 422, "validation_error"),
    (f"{presentation.CONCEPT_COLLECTION}?name=", 422, "validation_error"),
    (f"{presentation.CONCEPT_COLLECTION}?name=Aurelia&page=0", 422, "validation_error"),
    (f"{presentation.CONCEPT_COLLECTION}?name=Aurelia&page=1e3", 422, "validation_error"),
    (f"{presentation.CONCEPT_COLLECTION}?name=Aurelia&page=100001", 422, "validation_error"),
    (f"{presentation.CONCEPT_COLLECTION}?name=Aurelia&pages=2", 422, "validation_error"),
    (f"{presentation.CONCEPT_COLLECTION}?name={'x' * 257}", 422, "validation_error"),
])
def test_bad_requests_get_a_json_error(client, standin, path, status, code):
    error = assert_error(client.get(path), status, code)
    if status == 422:
        assert error["message"] == "The query is not valid."


def test_an_unknown_concept_is_the_404_cropper_concept_answers(client, standin):
    collection = client.get(f"{presentation.CONCEPT_COLLECTION}?name=Nemo")
    concept = client.post("/cropper-concept/", json={"concept": "Nemo"})
    assert (collection.status_code, collection.json) == (concept.status_code, concept.json)


def test_a_concepts_collection_pages_list_the_images_of_its_boxes(settings, standin):
    client = create_app(settings.replace(concept_page_max=10)).test_client()
    url, pages, listed = f"{presentation.CONCEPT_COLLECTION}?name={quote(MULTIPAGE_CONCEPT)}", [], []
    while url:
        answer = client.get(url.removeprefix(BASE))
        assert answer.status_code == 200 and answer.headers["Content-Type"] == presentation.MEDIA_TYPE
        assert_valid_presentation(answer.json, BASE)
        pages.append(answer.json)
        listed.append([item["id"].rsplit("/", 1)[1] for item in answer.json["items"] if item["type"] == "Manifest"])
        url = next((item["id"] for item in answer.json["items"] if item["type"] == "Collection"), None)
    all_boxes = concept_boxes(MULTIPAGE_CONCEPT)  # 32, in FathomNet's order: pages of 10, 10, 10 and 2
    assert len(pages) == 4
    for number, images in enumerate(listed):
        page = all_boxes[number * 10:(number + 1) * 10]
        assert images == list(dict.fromkeys(b["imageUuid"] for b in page))  # once each, by first box
    assert [p["id"].rsplit("page=", 1)[1] for p in pages] == ["1", "2", "3", "4"]


def test_a_collection_costs_one_box_query(client, standin):
    standin.reset()
    answer = client.get(f"{presentation.CONCEPT_COLLECTION}?name={quote(MULTIPAGE_CONCEPT)}&page=1")
    assert answer.status_code == 200
    assert standin.api_calls() == 1 and standin.count("/api/boundingboxes/query", "POST") == 1


@pytest.mark.parametrize("public_url, cache_control", [(BASE, "max-age=3600, public"), ("", "max-age=3600, private")])
def test_only_manifests_on_public_url_may_be_kept_for_everyone(settings, standin, public_url, cache_control):
    client = create_app(settings.replace(public_url=public_url)).test_client()
    uuid = standin.image("framegrab-1").uuid
    answer = client.get(f"{presentation.MANIFESTS}/{uuid}", headers={"Host": "evil.example"})
    assert answer.headers["Cache-Control"] == cache_control
    collection = client.get(f"{presentation.CONCEPT_COLLECTION}?name={quote(MULTIPAGE_CONCEPT)}")
    assert collection.headers["Cache-Control"] == cache_control
    assert (answer.json["id"].startswith("http://evil.example/")) == (not public_url)


def test_spoofed_host_and_forwarded_headers_never_reach_a_manifest_on_public_url(client, standin):
    uuid = standin.image("framegrab-2").uuid
    spoofed = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "gopher",
               "X-Forwarded-Port": "666", "X-Forwarded-Prefix": "/evil", "X-Forwarded-For": "6.6.6.6"}
    text = client.get(f"{presentation.MANIFESTS}/{uuid}", headers=spoofed).get_data(as_text=True)
    assert "evil" not in text and "gopher" not in text and "666" not in text
    assert text == client.get(f"{presentation.MANIFESTS}/{uuid}").get_data(as_text=True)
