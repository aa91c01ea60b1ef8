"""IIIF Presentation API 3.0 documents, made from image records: manifests with the boxes as annotations,
and a concept's collection pages. Each document is checked by iiif-prezi3 and the official schema
(tests/presentation.py); the records are written here, the stand-in's are used over HTTP in tests/http."""

import copy

import pytest

from cropper import crops
from cropper.iiif import presentation
from cropper.upstream import BoxInfo, ImageInfo
from tests.presentation import SCHEMA, assert_valid_presentation, official_schema, problems, without_newer_extensions

BASE = "https://crops.example.org"
API = "https://database.fathomnet.org/api"
LINKS = presentation.Links(BASE, API)
IMAGE = "9e140d51-2a43-5870-9337-eb66c5a4de6d"
HOSTILE = '<img src=x onerror="window.pwned=1">'


def box(n, concept="Aurelia aurita", x=100, y=200, width=300, height=150, review="VERIFIED", image=IMAGE, **flags):
    return BoxInfo(f"00000000-0000-4000-8000-{n:012d}", image, concept, x, y, width, height, review, **flags)


def record(*boxes, **fields):
    values = {"depth": 237.5, "latitude": 36.702, "longitude": -122.052, "timestamp": "2019-07-03T02:02:32.000Z",
              "imaging_type": "ROV", **fields}
    return ImageInfo(IMAGE, "https://database.fathomnet.org/static/a.png", 1920, 1080, boxes=tuple(boxes), **values)


def annotations(document):
    [canvas] = document["items"]
    [page] = canvas["annotations"]
    return page["items"]


def valid(document):
    assert_valid_presentation(document, BASE, elsewhere=[f"{API}/images/"])
    return document


def test_a_manifest_describes_the_image_from_what_fathomnet_says():
    document = valid(presentation.manifest(record(box(1), box(2, "Nanomia bijuga"), box(3)), LINKS))
    url = f"{BASE}/iiif/manifests/{IMAGE}"
    assert document["@context"] == [presentation.NAVPLACE_CONTEXT, presentation.CONTEXT]  # the extension first
    assert (document["id"], document["type"]) == (url, "Manifest")
    assert document["label"] == {"en": ["FathomNet image of Aurelia aurita, Nanomia bijuga"]}
    assert document["summary"] == {"en": ["3 boxes: Aurelia aurita (2), Nanomia bijuga (1). Taken by ROV at 237.5 m."]}
    assert {pair["label"]["en"][0]: pair["value"]["none"][0] for pair in document["metadata"]} == {
        "FathomNet image": IMAGE, "Depth": "237.5 m", "Latitude": "36.702", "Longitude": "-122.052",
        "Time": "2019-07-03T02:02:32.000Z", "Imaging type": "ROV"}
    assert document["navPlace"]["features"][0]["geometry"] == {"type": "Point", "coordinates": [-122.052, 36.702]}
    assert "FathomNet" in document["requiredStatement"]["value"]["en"][0]
    assert document["homepage"][0]["id"] == f"{BASE}/?image={IMAGE}"
    assert document["seeAlso"][0]["id"] == f"{API}/images/{IMAGE}"


def test_its_canvas_is_painted_from_this_services_image_api_at_fathomnets_size():
    [canvas] = presentation.manifest(record(), LINKS)["items"]
    assert (canvas["width"], canvas["height"], canvas["label"]) == (1920, 1080, {"en": ["FathomNet image"]})
    [page] = canvas["items"]
    [painting] = page["items"]
    assert (painting["motivation"], painting["target"]) == ("painting", canvas["id"])
    image = painting["body"]
    assert (image["type"], image["width"], image["height"]) == ("Image", 1920, 1080)
    assert image["service"] == [{"id": f"{BASE}/iiif/3/{IMAGE}", "type": "ImageService3", "profile": "level2"}]
    assert image["id"] == f"{BASE}/iiif/3/{IMAGE}/full/max/0/default.jpg"


def test_each_box_is_a_tagging_annotation_of_its_region_with_its_review_and_crop():
    document = valid(presentation.manifest(record(box(1), box(2, review="UNVERIFIED", occluded=True)), LINKS))
    canvas = document["items"][0]["id"]
    first, second = annotations(document)
    assert first == {
        "id": f"{BASE}/iiif/manifests/{IMAGE}/annotations/00000000-0000-4000-8000-000000000001",
        "type": "Annotation", "motivation": "tagging",
        "body": [{"type": "TextualBody", "value": "Aurelia aurita", "format": "text/plain", "purpose": "tagging"},
                 {"type": "TextualBody", "value": "review state: VERIFIED", "format": "text/plain",
                  "purpose": "describing"}],
        "target": f"{canvas}#xywh=100,200,300,150",
        "seeAlso": [{"id": f"{BASE}/boxes/00000000-0000-4000-8000-000000000001.webp", "type": "Image",
                     "format": "image/webp", "label": {"en": ["The crop of this box"]}}]}
    assert second["body"][1]["value"] == "review state: UNVERIFIED; occluded"
    assert "language" not in first["body"][0]  # a concept's name is in no language


@pytest.mark.parametrize("xywh, target", [
    ((-40, 500, 200, 100), "0,500,160,100"),        # past the left edge
    ((1850, -25, 150, 120), "1850,0,70,95"),        # past the top and right edges
    ((-30, -20, 2000, 1150), "0,0,1920,1080"),      # past every edge
    ((1720, 640, 200, 160), "1720,640,200,160"),    # to the right edge exactly
])
def test_a_box_past_the_edges_is_clamped_to_the_canvas_as_its_crop_is(xywh, target):
    annotation = box(1, x=xywh[0], y=xywh[1], width=xywh[2], height=xywh[3])
    [made] = annotations(valid(presentation.manifest(record(annotation), LINKS)))
    assert made["target"].endswith(f"#xywh={target}")
    region = crops.region_of(annotation.box, (1920, 1080), clamp_box=True)
    assert target == f"{region.x1},{region.y1},{region.width},{region.height}"


def test_a_box_wholly_outside_the_image_is_left_out():
    outside = [box(1, x=2000, y=300), box(2, x=300, y=-400, height=200), box(3, x=-5000, y=-5000)]
    document = valid(presentation.manifest(record(*outside, box(4)), LINKS))
    assert [a["id"].rsplit("/", 1)[1] for a in annotations(document)] == ["00000000-0000-4000-8000-000000000004"]


def test_an_image_without_boxes_has_an_empty_annotation_page():
    document = valid(presentation.manifest(record(), LINKS))
    assert annotations(document) == []
    assert document["label"] == {"en": [f"FathomNet image {IMAGE}"]}
    assert document["summary"] == {"en": ["No boxes. Taken by ROV at 237.5 m."]}


def test_what_fathomnet_leaves_out_is_left_out():
    document = valid(presentation.manifest(record(box(1, review=""), latitude=None, depth=None, timestamp=None,
                                                  imaging_type=None), LINKS))
    assert document["@context"] == presentation.CONTEXT and "navPlace" not in document  # no position, no place
    assert [pair["label"]["en"][0] for pair in document["metadata"]] == ["FathomNet image", "Longitude"]
    assert document["summary"] == {"en": ["1 box: Aurelia aurita (1)."]}
    assert [body["purpose"] for body in annotations(document)[0]["body"]] == ["tagging"]  # nothing to describe


def test_a_box_named_twice_is_one_annotation():
    assert len(annotations(valid(presentation.manifest(record(box(1), box(1)), LINKS)))) == 1


def test_hostile_text_from_fathomnet_is_carried_as_text():
    document = valid(presentation.manifest(record(box(1, HOSTILE, review=HOSTILE), imaging_type=HOSTILE), LINKS))
    [annotation] = annotations(document)
    assert annotation["body"][0]["value"] == HOSTILE  # exactly the text, in a JSON string
    assert annotation["body"][1]["value"] == f"review state: {HOSTILE}"
    # No language-map value both starts with "<" and ends with ">": IIIF clients would read it as HTML.
    values = [v for key in ("label", "summary") for v in document[key]["en"]]
    values += [v for pair in document["metadata"] for v in pair["value"]["none"]]
    assert HOSTILE in document["label"]["en"][0] and HOSTILE in document["summary"]["en"][0]
    assert f"{HOSTILE} " in values
    assert not [v for v in values if v.startswith("<") and v.endswith(">")]


def test_a_long_list_of_concepts_is_cut_in_the_label():
    document = presentation.manifest(record(*[box(n, f"Concept {n}") for n in range(8)]), LINKS)
    assert document["label"]["en"][0].endswith("Concept 4 and 3 more")
    assert len(annotations(document)) == 8


def test_a_concept_page_lists_each_image_once_in_the_order_of_its_first_box_and_links_the_next():
    other = "6f1b3c2e-5d7a-4e8b-9c0d-fa7000f00d01"
    page = [box(1), box(2, image=other), box(3), box(4, image=other)]
    concept = "Bathochordaeus/mcnutti & co"  # a "/" and an "&": query-encoded in the ids
    document = valid(presentation.concept_collection(concept, 2, 100, page, 250, True, LINKS))
    assert document["id"] == f"{BASE}/iiif/collections/concept?name=Bathochordaeus%2Fmcnutti%20%26%20co&page=2"
    manifests = [item for item in document["items"] if item["type"] == "Manifest"]
    assert [item["id"] for item in manifests] == [f"{BASE}/iiif/manifests/{IMAGE}", f"{BASE}/iiif/manifests/{other}"]
    assert manifests[0]["label"] == {"en": [f"FathomNet image {IMAGE}: 2 boxes of {concept}"]}
    [following] = [item for item in document["items"] if item["type"] == "Collection"]
    assert following["id"] == document["id"].replace("page=2", "page=3")
    assert document["summary"] == {"en": [f"The images of boxes 101 to 104 of FathomNet's 250 boxes of {concept}."]}


def test_the_last_page_links_no_next():
    document = valid(presentation.concept_collection("Aurelia aurita", 3, 200, [box(1)], 201, False, LINKS))
    assert [item["type"] for item in document["items"]] == ["Manifest"]


def test_the_checks_find_a_broken_document():
    document = presentation.manifest(record(box(1)), LINKS)
    broken = copy.deepcopy(document)
    broken["items"][0]["width"] = "wide"
    assert any(p.startswith("iiif-prezi3") for p in problems(broken))
    twice = copy.deepcopy(document)
    twice["items"][0]["annotations"][0]["id"] = twice["items"][0]["items"][0]["id"]
    assert problems(twice) == [f"id {twice['items'][0]['items'][0]['id']} is used 2 times"]


def test_every_document_here_passes_the_official_schema():
    """The official schema's own checks (a manifest allows no other properties, a TextualBody has no id, ...)."""
    validator = official_schema()
    if validator is None:
        pytest.skip(f"no copy of the official schema at {SCHEMA} (IIIF_PRESENTATION_SCHEMA): see tests/presentation.py")
    documents = [presentation.manifest(record(box(1, HOSTILE), box(2, x=-40)), LINKS),
                 presentation.manifest(record(latitude=None), LINKS),
                 presentation.concept_collection("Aurelia aurita", 1, 0, [box(1)], 300, True, LINKS)]
    for document in documents:
        assert list(validator.iter_errors(without_newer_extensions(document))) == []
    extra = {**documents[0], "pages": 1}  # a manifest allows no property the specification does not name
    assert [e.message for e in validator.iter_errors(without_newer_extensions(extra))] != []
    # navPlace is left out only where the document declares the extension's context
    undeclared = {**documents[0], "@context": "http://iiif.io/api/presentation/3/context.json"}
    assert "navPlace" in undeclared and problems(undeclared) != []
