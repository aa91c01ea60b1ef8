"""The operator endpoints over the app: there only with ADMIN_TOKEN, the token compared and the networks checked
(nginx checks the networks first: tests/integration/test_freshness.py), answers in the one error shape; and the
cluster's purge call, for the hosts' key only."""

import pytest

from cropper import create_app
from cropper.cluster import KEY_HEADER
from devtools.standin import boxes

TOKEN = "an-operators-long-random-token"
IMAGE = "00000000-0000-4000-8000-000000000000"
ROUTES = [("DELETE", f"/admin/images/{IMAGE}"), ("DELETE", f"/admin/boxes/{IMAGE}"),
          ("DELETE", "/admin/concepts?name=Aurelia"), ("GET", f"/admin/images/{IMAGE}"), ("POST", "/admin/")]


@pytest.fixture
def admin(settings):
    return create_app(settings.replace(admin_token=TOKEN)).test_client()


def bearer(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def error_code(answer):
    return answer.status_code, answer.json["error"]["code"]


@pytest.mark.parametrize("method, path", ROUTES)
def test_without_admin_token_the_operator_endpoints_do_not_exist(client, method, path):
    assert error_code(client.open(path, method=method, headers=bearer())) == (404, "not_found")


@pytest.mark.parametrize("headers", [{}, bearer("wrong"), bearer(TOKEN + "x"), bearer(""), {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}, bearer("é" * 8)])
def test_a_missing_or_wrong_token_is_401(admin, headers):
    answer = admin.delete(f"/admin/images/{IMAGE}", headers=headers)
    assert error_code(answer) == (401, "unauthorized")
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert TOKEN not in answer.get_data(as_text=True)


def test_outside_admin_allow_the_app_refuses_too(settings):
    behind = create_app(settings.replace(admin_token=TOKEN, admin_allow=("10.0.0.0/8",))).test_client()
    answer = behind.delete(f"/admin/images/{IMAGE}", headers=bearer())
    assert error_code(answer) == (403, "forbidden")
    # ProxyFix takes the client from the one proxy in front (TRUSTED_PROXIES=1): its last X-Forwarded-For entry.
    inside = behind.delete(f"/admin/images/{IMAGE}", headers={**bearer(), "X-Forwarded-For": "10.1.2.3"})
    assert inside.status_code == 200


def test_an_operator_purges_an_image_a_box_and_a_concept(admin, standin):
    record = standin.image("framegrab-2")
    made = admin.post("/cropper/", json={"uuid": record.uuid, "x1": 0, "y1": 0, "x2": 32, "y2": 32})
    box = boxes("framegrab-2")[0]
    admin.post("/cropper/", json={"box_uuid": box["uuid"]})

    image = admin.delete(f"/admin/images/{record.uuid.upper()}", headers=bearer())
    assert image.status_code == 200 and image.json["purge"] == {**image.json["purge"], "kind": "image",
                                                                 "target": record.uuid, "withdrawn": False}
    assert image.json["store"]["files"] == 2 and image.json["files"] >= 2
    assert admin.post("/cropper/", json={"uuid": record.uuid, "x1": 0, "y1": 0, "x2": 32, "y2": 32}).json["url"] == \
        made.json["url"]  # made again, at the same URL
    assert admin.delete(f"/admin/boxes/{box['uuid']}", headers=bearer()).json["purge"]["kind"] == "box"
    concept = admin.delete("/admin/concepts", query_string={"name": box["concept"]}, headers=bearer())
    assert concept.status_code == 200 and concept.json["purge"]["target"] == box["concept"]


@pytest.mark.parametrize("path, code", [("/admin/images/not-a-uuid", "image_not_found"),
                                        ("/admin/boxes/not-a-uuid", "box_not_found"),
                                        ("/admin/concepts", "validation_error"),
                                        ("/admin/concepts?name=" + "x" * 257, "validation_error")])
def test_what_names_nothing_is_refused_in_the_one_error_shape(admin, path, code):
    answer = admin.delete(path, headers=bearer())
    assert answer.json["error"]["code"] == code and answer.status_code in (404, 422)


def test_the_clusters_purge_call_is_for_the_hosts_key_only(settings, standin):
    hosts = ("127.0.0.1:1", "127.0.0.1:2")
    host = create_app(settings.replace(cache_backend="s3", cluster_hosts=hosts, cluster_self=hosts[0],
                                       cluster_key="the-key")).test_client()
    purge = {"kind": "box", "target": IMAGE, "withdrawn": False, "id": "0001-ab"}
    for headers in ({}, {KEY_HEADER: "not the key"}):
        assert error_code(host.post("/_cluster/purge", json=purge, headers=headers)) == (404, "not_found")
    applied = host.post("/_cluster/purge", json=purge, headers={KEY_HEADER: "the-key"})
    assert applied.status_code == 200 and (applied.json["host"], applied.json["files"]) == (hosts[0], 0)
    refused = host.post("/_cluster/purge", json={**purge, "id": "../x"}, headers={KEY_HEADER: "the-key"})
    assert error_code(refused) == (422, "validation_error")

