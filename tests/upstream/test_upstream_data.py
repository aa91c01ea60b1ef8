"""Odd but valid upstream data: FathomNet's JSON as a real FathomNet may send it, through the HTTP API."""


import pytest

from cropper import create_app
from tests.fakeservers import JSONHandler, serving


@pytest.fixture
def fake():
    """A FathomNet API that answers what a test sets: fake.routes[(method, "/api/...")] = JSON or fn(sent)."""
    with serving(JSONHandler) as server:
        server.api_url = f"{server.url}/api"
        yield server


@pytest.fixture
def fake_client(settings, fake):
    """The service's test client with FathomNet played by `fake` (images still on the stand-in's host)."""
    return create_app(settings.replace(fathomnet_api_url=fake.api_url, upstream_retries=0)).test_client()


def image_json(standin, name="framegrab", **changes):
    return {**standin.image_json(name), **changes}


def serve_image(fake, doc, uuid=None):
    fake.routes[("GET", f"/api/images/{uuid or doc['uuid']}")] = doc


def crop_of(uuid, box=(100, 100, 405, 400), **extra):
    x1, y1, x2, y2 = box
    return {"uuid": uuid, "x1": x1, "y1": y1, "x2": x2, "y2": y2, **extra}


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    assert response.json["error"]["code"] == code
    return response.json["error"]


# -- image urls


def test_an_image_url_that_does_not_parse_is_a_502_and_is_not_remembered(fake, fake_client, standin):
    doc = image_json(standin, url="http://[not-ipv6/x.png")
    serve_image(fake, doc)
    assert_error(fake_client.post("/cropper/", json=crop_of(doc["uuid"])), 502, "upstream_error")
    serve_image(fake, image_json(standin))  # FathomNet mends it: the metadata that led nowhere was forgotten
    assert fake_client.post("/cropper/", json=crop_of(doc["uuid"])).status_code == 200


def test_a_backslash_in_an_image_url_cannot_reach_a_host_off_the_allowlist(fake, fake_client, standin, tiny):
    record = standin.image("framegrab")
    allowed = record.url.split("//", 1)[1].split("/", 1)[0]
    tiny.routes[f"/%5C@{allowed}/x.png"] = (200, {"Content-Type": "image/png"}, record.data)
    # urlsplit reads the allowed host after the @; requests connects to the one before the backslash
    doc = image_json(standin, url=f"http://{tiny.url.removeprefix('http://')}\\@{allowed}/x.png")
    serve_image(fake, doc)
    error = assert_error(fake_client.post("/cropper/", json=crop_of(doc["uuid"])), 502, "upstream_error")
    assert error["details"]["port"] == tiny.server_address[1]
    assert tiny.hits == []


# -- answers about something else


def test_an_image_answer_about_another_image_is_a_502_not_its_pixels(fake, fake_client, standin):
    asked, other = image_json(standin, "framegrab"), image_json(standin, "jpeg")
    serve_image(fake, other, uuid=asked["uuid"])
    assert_error(fake_client.post("/cropper/", json=crop_of(asked["uuid"])), 502, "upstream_error")
    assert fake_client.get(f"/images/{asked['uuid']}/boxes").status_code == 502
    serve_image(fake, asked)  # nothing of the other image was remembered under this one's uuid
    assert fake_client.post("/cropper/", json=crop_of(asked["uuid"])).status_code == 200


def test_a_box_answer_about_another_box_is_a_502_and_is_not_remembered(fake, fake_client, standin):
    doc = image_json(standin)
    serve_image(fake, doc)
    asked, other = doc["boundingBoxes"][0], doc["boundingBoxes"][1]
    fake.routes[("GET", f"/api/boundingboxes/{asked['uuid']}")] = {**asked, "uuid": other["uuid"]}
    assert_error(fake_client.post("/cropper/", json={"box_uuid": asked["uuid"]}), 502, "upstream_error")
    fake.routes[("GET", f"/api/boundingboxes/{other['uuid']}")] = other
    answer = fake_client.post("/cropper/", json={"box_uuid": other["uuid"]}).json
    assert answer["box"] == [other["x"], other["y"], other["x"] + other["width"], other["y"] + other["height"]]


def test_query_answers_name_their_images_in_any_uuid_spelling(fake, fake_client, standin):
    doc = image_json(standin)
    fake.routes[("POST", "/api/images/query/uuids")] = [{**doc, "uuid": doc["uuid"].upper().replace("-", "")}]
    answer = fake_client.post("/cropper-list/", json=[crop_of(doc["uuid"])]).json
    assert "url" in answer[0], answer


# -- concept pages


def concept_page(fake, standin, content, total):
    doc = image_json(standin)
    serve_image(fake, doc)
    fake.routes[("POST", "/api/images/query/uuids")] = [doc]
    fake.routes[("POST", "/api/boundingboxes/query")] = {"content": content(doc["boundingBoxes"]), "totalSize": total}
    fake.routes[("POST", "/api/boundingboxes/query/count")] = {"count": 3}
    return doc["boundingBoxes"]


def test_a_concept_page_longer_than_asked_is_cut_to_the_limit(fake, fake_client, standin):
    boxes = concept_page(fake, standin, lambda boxes: boxes * 40, 500)
    answer = fake_client.post("/cropper-concept/", json={"concept": "Aurelia aurita", "limit": 2}).json
    assert [crop["box_uuid"] for crop in answer["crops"]] == [box["uuid"] for box in boxes[:2]]
    assert answer["next_offset"] == 2 and answer["total"] == 500


def test_a_concept_page_with_boxes_is_never_concept_not_found_whatever_its_total(fake, fake_client, standin):
    boxes = concept_page(fake, standin, lambda boxes: boxes, 0)
    answer = fake_client.post("/cropper-concept/", json={"concept": "Aurelia aurita", "offset": 7})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert len(answer.json["crops"]) == len(boxes)
    assert answer.json["total"] == 7 + len(boxes) and answer.json["next_offset"] is None


def test_a_boolean_total_is_no_count(fake, fake_client, standin):
    concept_page(fake, standin, lambda boxes: boxes, True)
    answer = fake_client.post("/cropper-concept/", json={"concept": "Aurelia aurita"}).json
    assert answer["total"] == 3  # from the count query
