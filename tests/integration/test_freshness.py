"""Fresh annotations and withdrawn images over real Gunicorn and nginx (one host, crops on disk; several hosts:
test_purge_cluster.py).

METADATA_TTL is a few seconds here: a corrected box is followed once it passes and not before, a deleted
one is a 404, an image FathomNet withdrew is gone from the cache folder and nginx and answers 410, and
FathomNet unreachable serves what is remembered, marked stale. The operator endpoints are there only
with ADMIN_TOKEN, want it, and nginx lets only ADMIN_ALLOW reach them.
"""

import http.client
import json
import time
from urllib.parse import urlsplit

import pytest
import requests

from devtools.servers import Gunicorn, NginxServer, StandInProcess, find_nginx_or_skip, service_env, wait_until
from devtools.standin import boxes
from tests.cachefolder import files_under

TTL = 3  # seconds: long enough for the "not before" checks on a loaded machine, short enough to wait out
TOKEN = "an-operators-long-random-token"
OPERATOR = "127.0.0.2"  # the one address ADMIN_ALLOW lets in; the tests' own 127.0.0.1 is outside
TIMEOUT = 30


@pytest.fixture(scope="module")
def host(standin, tmp_path_factory):
    """Gunicorn (METADATA_TTL, ADMIN_TOKEN, ADMIN_ALLOW) and nginx in front of it."""
    find_nginx_or_skip()
    folder = tmp_path_factory.mktemp("fresh")
    env = service_env(standin, folder / "cache", METADATA_TTL=str(TTL), ADMIN_TOKEN=TOKEN,
                      ADMIN_ALLOW=f"{OPERATOR}/32")
    with Gunicorn(env, cwd=folder, workers=2) as app, \
            NginxServer(app, folder / "cache", folder / "nginx", admin_allow=(f"{OPERATOR}/32",)) as front:
        front.cache_dir = folder / "cache"
        yield front


def crop_by_box(host, box_uuid, **options):
    answer = requests.post(f"{host.url}/cropper/", json={"box_uuid": box_uuid, **options}, timeout=TIMEOUT)
    return answer


def redirect_of(host, box_uuid):
    answer = requests.get(f"{host.url}/boxes/{box_uuid}.webp", allow_redirects=False, timeout=TIMEOUT)
    assert answer.status_code == 302, answer.text
    return urlsplit(answer.headers["Location"]).path


def region_path(region):
    return "_".join(map(str, region))


def files_of(cache_dir, uuid):
    return [path for path in files_under(cache_dir) if uuid in str(path)]


def ask_from(source, method, url, headers=None):
    """(status, JSON body) of a request sent from the loopback address source, as a client elsewhere would."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT, source_address=(source, 0))
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers or {})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read() or b"null")
    finally:
        connection.close()


def test_a_corrected_box_is_followed_once_the_ttl_passes_and_not_before(host, standin):
    annotation = boxes("framegrab-1")[0]
    first = crop_by_box(host, annotation["uuid"]).json()
    fetched_by = time.monotonic()  # at most this: the box was remembered as of its first crop
    assert region_path(first["region"]) in redirect_of(host, annotation["uuid"])

    standin.edit_box(annotation["uuid"], x=annotation["x"] + 10, width=annotation["width"] - 4)
    new_region = [annotation["x"] + 10, annotation["y"], annotation["x"] + annotation["width"] + 6,
                  annotation["y"] + annotation["height"]]
    again, redirected = crop_by_box(host, annotation["uuid"]).json(), redirect_of(host, annotation["uuid"])
    assert time.monotonic() - fetched_by < TTL, "the machine is too slow for the 'not before' check"
    assert again["region"] == first["region"] and again["url"] == first["url"]
    assert region_path(first["region"]) in redirected

    time.sleep(TTL)
    corrected = crop_by_box(host, annotation["uuid"])
    assert corrected.status_code == 200 and corrected.json()["region"] == new_region
    assert corrected.json()["url"] != first["url"]  # a new region, a new URL; the old one still names its crop
    assert region_path(new_region) in redirect_of(host, annotation["uuid"])
    assert requests.get(first["url"], timeout=TIMEOUT).status_code == 200


def test_a_box_deleted_in_fathomnet_is_a_404_once_the_ttl_passes(host, standin):
    annotation = boxes("framegrab-2")[0]
    assert crop_by_box(host, annotation["uuid"]).status_code == 200
    standin.delete_box(annotation["uuid"])
    assert crop_by_box(host, annotation["uuid"]).status_code == 200  # not before
    time.sleep(TTL)
    for answer in (crop_by_box(host, annotation["uuid"]),
                   requests.get(f"{host.url}/boxes/{annotation['uuid']}.webp", allow_redirects=False, timeout=TIMEOUT)):
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "box_not_found"
    listed = requests.get(f"{host.url}/images/{annotation['imageUuid']}/boxes", timeout=TIMEOUT).json()["boxes"]
    assert annotation["uuid"] not in [entry["box_uuid"] for entry in listed]


def test_a_withdrawn_images_crops_tiles_and_pixels_are_gone_and_its_urls_answer_410(host, standin):
    record, other = standin.image("framegrab-3"), standin.image("framegrab-4")
    urls = []
    for image in (record, other):
        urls.append(requests.post(f"{host.url}/cropper/", json={"uuid": image.uuid, "x1": 0, "y1": 0, "x2": 64,
                                                                 "y2": 64}, timeout=TIMEOUT).json()["url"])
        urls.append(requests.post(f"{host.url}/cropper/", json={"box_uuid": boxes(image.name)[0]["uuid"], "pad": 4},
                                  timeout=TIMEOUT).json()["url"])
        urls.append(f"{host.url}/iiif/3/{image.uuid}/0,0,512,512/256,256/0/default.jpg")  # as stored: nginx serves it
        assert requests.get(f"{host.url}/images/{image.uuid}/boxes", timeout=TIMEOUT).status_code == 200
    for url in urls:  # each served once more by nginx from disk (so its open_file_cache holds it)
        assert requests.get(url, timeout=TIMEOUT).status_code == 200
        assert requests.get(url, timeout=TIMEOUT).headers["X-Cropper-Cache"] == "hit"
    assert wait_until(lambda: any(path.suffix == ".pix" for path in files_of(host.cache_dir, record.uuid)))
    others_files = files_of(host.cache_dir, other.uuid)

    standin.withdraw_image(record.uuid)
    time.sleep(TTL)
    listed = requests.get(f"{host.url}/images/{record.uuid}/boxes", timeout=TIMEOUT)
    assert listed.status_code == 410 and listed.json()["error"]["code"] == "image_withdrawn"

    # Purged in the background: nothing of it is left on disk but the note that it is withdrawn.
    assert wait_until(lambda: [path.name for path in files_of(host.cache_dir, record.uuid)] == [f"{record.uuid}.gone"])
    assert files_of(host.cache_dir, other.uuid) == others_files
    # nginx's open files of it close within open_file_cache_valid (1 s): then every URL of it is a 410.
    for url in urls[:3]:
        assert wait_until(lambda: requests.get(url, timeout=TIMEOUT).status_code == 410, timeout=3), url
        assert requests.get(url, timeout=TIMEOUT).json()["error"]["code"] == "image_withdrawn"
    for path in (f"/iiif/3/{record.uuid}/info.json", f"/iiif/3/{record.uuid}/full/max/0/default.jpg"):
        assert requests.get(f"{host.url}{path}", timeout=TIMEOUT).status_code == 410
    again = requests.post(f"{host.url}/cropper/", json={"uuid": record.uuid, "x1": 0, "y1": 0, "x2": 64, "y2": 64},
                          timeout=TIMEOUT)
    assert again.status_code == 410
    assert all(requests.get(url, timeout=TIMEOUT).status_code == 200 for url in urls[3:])


def test_fathomnet_unreachable_during_revalidation_serves_the_remembered_answer_marked_stale(tmp_path):
    """FathomNet's API really unreachable: the stand-in's process stopped, its port refusing connections."""
    find_nginx_or_skip()
    with StandInProcess() as fathomnet:
        catalog = fathomnet.catalog()
        env = service_env(fathomnet, tmp_path / "cache", METADATA_TTL=str(TTL))
        env["ALLOWED_IMAGE_HOSTS"] = f"127.0.0.1:{fathomnet.port}"
        with Gunicorn(env, cwd=tmp_path, workers=1) as app, NginxServer(app, tmp_path / "cache",
                                                                          tmp_path / "nginx") as front:
            annotation = boxes("framegrab-5")[0]
            first = crop_by_box(front, annotation["uuid"])
            listed = requests.get(f"{front.url}/images/{annotation['imageUuid']}/boxes", timeout=TIMEOUT)
            assert first.status_code == listed.status_code == 200 and "X-Cropper-Stale" not in first.headers
            fathomnet.stop()
            time.sleep(TTL)
            answers = [crop_by_box(front, annotation["uuid"]),
                       requests.get(f"{front.url}/boxes/{annotation['uuid']}.webp", allow_redirects=False,
                                    timeout=TIMEOUT),
                       requests.get(f"{front.url}/images/{annotation['imageUuid']}/boxes", timeout=TIMEOUT)]
            assert [answer.status_code for answer in answers] == [200, 302, 200]
            assert all(answer.headers.get("X-Cropper-Stale") == "1" for answer in answers)
            assert answers[0].json()["url"] == first.json()["url"] and answers[2].json() == listed.json()
            assert catalog  # the stand-in was reached before it went


def test_purges_by_image_box_and_concept_remove_exactly_what_they_name(host, standin):
    purged, kept = standin.image("framegrab-6"), standin.image("framegrab-7")
    urls = {}
    for image in (purged, kept):
        urls[image.uuid] = requests.post(f"{host.url}/cropper/", json={"uuid": image.uuid, "x1": 8, "y1": 8, "x2": 72,
                                                                        "y2": 72}, timeout=TIMEOUT).json()["url"]
        for annotation in boxes(image.name):
            assert crop_by_box(host, annotation["uuid"]).status_code == 200
        assert requests.get(urls[image.uuid], timeout=TIMEOUT).status_code == 200
    assert wait_until(lambda: all(any(path.suffix == ".pix" for path in files_of(host.cache_dir, image.uuid))
                                  for image in (purged, kept)))
    kept_files = files_of(host.cache_dir, kept.uuid)
    admin = {"Authorization": f"Bearer {TOKEN}"}

    status, report = ask_from(OPERATOR, "DELETE", f"{host.url}/admin/images/{purged.uuid}", admin)
    assert status == 200 and report["store"]["files"] == 1 + len(boxes(purged.name))
    assert files_of(host.cache_dir, purged.uuid) == [] and files_of(host.cache_dir, kept.uuid) == kept_files
    assert wait_until(lambda: requests.get(urls[purged.uuid], timeout=TIMEOUT).headers.get("X-Cropper-Cache") ==
                      "regenerated", timeout=3)  # not withdrawn: made again, from FathomNet

    box_uuid, *other_boxes = [annotation["uuid"] for annotation in boxes(kept.name)]
    status, report = ask_from(OPERATOR, "DELETE", f"{host.url}/admin/boxes/{box_uuid}", admin)
    assert status == 200 and report["files"] == 1
    assert files_of(host.cache_dir, box_uuid) == [] and all(files_of(host.cache_dir, uuid) for uuid in other_boxes)
    assert [path for path in files_of(host.cache_dir, kept.uuid) if "crops" in path.parts] == \
        [path for path in kept_files if "crops" in path.parts]  # its crops are its image's: they stay

    concept = boxes(kept.name)[1]["concept"]
    of_concept = [annotation["uuid"] for annotation in boxes(kept.name) if annotation["concept"] == concept]
    status, report = ask_from(OPERATOR, "DELETE", f"{host.url}/admin/concepts?name={requests.utils.quote(concept)}",
                              admin)
    assert status == 200 and report["purge"]["target"] == concept
    assert all(files_of(host.cache_dir, uuid) == [] for uuid in of_concept)
    assert all(files_of(host.cache_dir, uuid) for uuid in other_boxes if uuid not in of_concept)


def test_the_operator_endpoints_want_the_token_and_nginx_lets_only_admin_allow_reach_them(host, nginx):
    path = "/admin/images/00000000-0000-4000-8000-000000000000"
    admin = {"Authorization": f"Bearer {TOKEN}"}
    # Without ADMIN_TOKEN (the shared service of the other tests) they do not exist.
    without = requests.delete(f"{nginx.url}{path}", headers=admin, timeout=TIMEOUT)
    assert without.status_code == 404 and without.json()["error"]["code"] == "not_found"
    # With it: from outside ADMIN_ALLOW, nginx refuses in the service's shape, whatever the token.
    for headers in (admin, {}):
        status, body = ask_from("127.0.0.1", "DELETE", f"{host.url}{path}", headers)
        assert (status, body["error"]["code"]) == (403, "forbidden")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        status, body = ask_from(OPERATOR, "DELETE", f"{host.url}{path}", headers)
        assert (status, body["error"]["code"]) == (401, "unauthorized")
    status, body = ask_from(OPERATOR, "DELETE", f"{host.url}{path}", admin)
    assert status == 200 and body["files"] == 0
