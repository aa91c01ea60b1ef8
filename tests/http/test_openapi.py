"""/openapi.json against the app's real answers (Flask's test client and the stand-in): what the service
accepts is valid under the description, and what it answers has the shape described."""

import jsonschema_rs
import pytest

from devtools.standin import CATALOG_NAMES

FRAMEGRAB = CATALOG_NAMES["framegrab"]


@pytest.fixture
def components(client):
    return client.get("/openapi.json").get_json()["components"]


def validator(components, name):
    return jsonschema_rs.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": components})


def test_a_batchs_fit_completed_by_its_items_sizes_is_a_valid_batch_request(client, standin, components):
    # README: a batch's "fit": "cover" takes its items' width and height; the service accepts it, so
    # the description must too (it required width and height beside the batch's own fit).
    for body in ({"crops": [{"uuid": FRAMEGRAB, "x1": 0, "y1": 0, "x2": 100, "y2": 50, "width": 20, "height": 20}],
                  "fit": "cover"},
                 {"crops": [{"uuid": FRAMEGRAB, "x1": 0, "y1": 0, "x2": 100, "y2": 50, "width": 20, "height": 20,
                             "fit": "letterbox"}], "background": "#ffffff"}):
        answer = client.post("/cropper-list/", json=body)
        assert answer.status_code == 200 and "url" in answer.get_json()[0], answer.get_json()
        assert validator(components, "BatchRequest").is_valid(body)


def test_failed_batch_items_have_the_described_shape(client, standin, components):
    items = [{"uuid": 123, "x1": 0, "y1": 0, "x2": 10, "y2": 10}, {"uuid": 1.5, "x1": 0, "y1": 0, "x2": 10, "y2": 10},
             {"uuid": True, "x1": 0, "y1": 0, "x2": 10, "y2": 10},
             {"uuid": "not a uuid", "x1": "1", "y1": [], "x2": 10}, None, 5, {"box_uuid": "nope"},
             {"uuid": FRAMEGRAB, "x1": 0, "y1": 0, "x2": 5000, "y2": 10}]
    answer = client.post("/cropper-list/", json=items)
    assert answer.status_code == 200
    failed = answer.get_json()
    assert len(failed) == len(items) and all("error" in item for item in failed)
    for item in failed:
        errors = [str(error) for error in validator(components, "FailedItem").iter_errors(item)]
        assert errors == [], (item, errors)
    assert failed[3]["uuid"] == "not a uuid"  # a short string is still echoed


def test_the_data_set_requests_split_and_formats_defaults_are_the_ones_a_job_takes(client, standin, components):
    """The page fills its form from them (no copy of the defaults in the page)."""
    described = components["schemas"]["DatasetRequest"]["properties"]
    job = client.post("/datasets", json={"concepts": ["Aurelia aurita"]}).get_json()
    understood = client.get(f"/datasets/{job['id']}").get_json()["request"]
    assert described["split"]["default"] == understood["split"] == {"train": 0.8, "validation": 0.1, "test": 0.1}
    assert described["formats"]["default"] == understood["formats"]
    assert validator(components, "DatasetRequest").is_valid({"concepts": ["Aurelia aurita"],
                                                             **{k: described[k]["default"] for k in ("split",
                                                                                                     "formats")}})
