"""IIIF Presentation manifests and concept collections over real nginx and Gunicorn, FathomNet played by the
stand-in: valid documents whose ids are nginx's URLs, what they cost FathomNet, what nginx keeps, and the
forwarded headers no client can write into them."""

from urllib.parse import quote

import pytest
import requests

from cropper.iiif import presentation
from devtools.servers import Gunicorn, NginxServer, find_nginx_or_skip, read_log
from devtools.standin import MULTIPAGE_CONCEPT, boxes, concept_boxes, uuid_for
from tests.integration.conftest import service_env
from tests.presentation import assert_valid_presentation

UNKNOWN = "00000000-0000-4000-8000-000000000000"
SPOOFED = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "gopher", "X-Forwarded-Port": "666",
           "X-Forwarded-Prefix": "/evil", "X-Forwarded-For": "6.6.6.6"}


def get(server, path, **headers):
    return requests.get(f"{server.url}{path}", headers=headers, timeout=30)


def manifest(server, standin, name, base=None, **headers):
    answer = get(server, f"{presentation.MANIFESTS}/{uuid_for(name)}", **headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == presentation.MEDIA_TYPE
    assert_valid_presentation(answer.json(), base or server.url, elsewhere=[f"{standin.api_url}/images/"])
    return answer


def served_by_app(nginx, uri, times):
    """Of the access log's `times` entries for uri, which reached the app (an upstream status) and which not."""
    entries = read_log(nginx.access_log, until=lambda es: sum(e["uri"] == uri for e in es) >= times)
    return [e["upstream_status"] != "" for e in entries if e["uri"] == uri][-times:]


def test_a_manifest_through_nginx_is_valid_with_ids_on_nginx_and_the_boxes_as_annotations(nginx, standin):
    name = "framegrab-3"
    answer = manifest(nginx, standin, name, Origin="https://viewer.example")
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    document = answer.json()
    assert document["id"] == f"{nginx.url}{presentation.MANIFESTS}/{uuid_for(name)}"
    page = document["items"][0]["annotations"][0]["items"]
    assert sorted(a["body"][0]["value"] for a in page) == sorted(b["concept"] for b in boxes(name))


def test_the_image_service_answers_the_info_json_the_iiif_validator_checks(nginx, standin):
    """The manifest's image service is the Image API base URI test_iiif.py's validator run passes at level 2."""
    document = manifest(nginx, standin, "iiif-validator").json()
    [service] = document["items"][0]["items"][0]["items"][0]["body"]["service"]
    assert service["id"] == f"{nginx.url}/iiif/3/{uuid_for('iiif-validator')}"  # what the validator is run on
    info = get(nginx, service["id"].removeprefix(nginx.url) + "/info.json")
    assert info.status_code == 200
    assert (info.json()["id"], info.json()["type"], info.json()["profile"]) == (service["id"], service["type"],
                                                                               service["profile"])
    assert (info.json()["width"], info.json()["height"]) == (document["items"][0]["width"],
                                                             document["items"][0]["height"])


def test_a_cold_manifest_costs_one_fathomnet_lookup_and_a_warm_one_none(nginx, standin):
    name = "framegrab-9"
    standin.reset()
    first = manifest(nginx, standin, name)
    assert standin.api_calls() == 1 and standin.count(f"/api/images/{uuid_for(name)}") == 1
    again = manifest(nginx, standin, name)
    assert again.json() == first.json() and standin.api_calls() == 1 and standin.downloads() == 0


def test_without_public_url_no_manifest_is_kept_nor_carries_forwarded_headers(nginx, standin):
    """Its URLs are the request's: nginx's own X-Forwarded-* win over a client's, and nginx keeps none of them."""
    name = "framegrab-4"
    path = f"{presentation.MANIFESTS}/{uuid_for(name)}"
    spoofed = manifest(nginx, standin, name, **SPOOFED)  # every id is nginx's, as assert_valid_presentation checks
    assert spoofed.headers["Cache-Control"] == "max-age=3600, private"
    assert not [value for value in SPOOFED.values() if value in spoofed.text]
    other_host = get(nginx, path, Host="evil.example")  # the host this client asked for: in its answer only
    assert other_host.json()["id"] == f"http://evil.example{path}"
    honest = manifest(nginx, standin, name)
    assert "evil" not in honest.text
    assert served_by_app(nginx, path, 3) == [True, True, True]  # none of them from nginx's cache


@pytest.mark.parametrize("spelling", ["/iiif//manifests/{uuid}", "/iiif/x/../manifests/{uuid}",
                                      "/iiif/manifests/./{uuid}"])
def test_a_manifest_path_nginx_normalises_is_the_manifest_of_its_image(nginx, standin, spelling):
    """The app reads the path nginx normalised (what nginx's store keys it by), not the one the client spelled."""
    uuid = uuid_for("framegrab-6")
    session = requests.Session()
    prepared = session.prepare_request(requests.Request("GET", nginx.url + spelling.format(uuid=uuid)))
    prepared.url = nginx.url + spelling.format(uuid=uuid)  # kept as written
    answer = session.send(prepared, timeout=30, allow_redirects=False)
    assert answer.status_code == 200, answer.text[:200]
    assert answer.json() == get(nginx, f"{presentation.MANIFESTS}/{uuid}").json()


def test_an_unknown_image_or_concept_is_a_json_404_open_to_every_origin(nginx):
    origin = {"Origin": "https://viewer.example"}
    for path, code in ((f"{presentation.MANIFESTS}/{UNKNOWN}", "image_not_found"),
                       (f"{presentation.MANIFESTS}/not-a-uuid", "image_not_found"),
                       (f"{presentation.CONCEPT_COLLECTION}?name=No%20such%20concept", "concept_not_found")):
        answer = get(nginx, path, **origin)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == code
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert get(nginx, "/iiif/manifests/x/y").json()["error"]["code"] == "not_found"  # nginx's own


def test_an_image_whose_boxes_are_all_deleted_has_an_empty_annotation_page(nginx, standin):
    name = "jpeg"  # no other test here asks for it: FathomNet's record is read after the deletions
    for box in boxes(name):
        standin.delete_box(box["uuid"])
    document = manifest(nginx, standin, name).json()
    assert document["items"][0]["annotations"][0]["items"] == []


def test_a_concepts_collection_is_followed_page_by_page_through_nginx(gunicorn, standin, tmp_path):
    find_nginx_or_skip()
    env = service_env(standin, tmp_path / "cache", CONCEPT_PAGE_MAX="10")
    with Gunicorn(env, cwd=tmp_path, workers=1) as app, NginxServer(app, tmp_path / "cache", tmp_path) as nginx:
        url, pages = f"{nginx.url}{presentation.CONCEPT_COLLECTION}?name={quote(MULTIPAGE_CONCEPT)}", []
        while url:
            answer = requests.get(url, timeout=30, headers={"Origin": "https://viewer.example"})
            assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == "*"
            assert_valid_presentation(answer.json(), nginx.url)
            pages.append(answer.json())
            url = next((i["id"] for i in answer.json()["items"] if i["type"] == "Collection"), None)
        listed = [[i["id"].rsplit("/", 1)[1] for i in page["items"] if i["type"] == "Manifest"] for page in pages]
        every = concept_boxes(MULTIPAGE_CONCEPT)
        assert listed == [list(dict.fromkeys(b["imageUuid"] for b in every[n:n + 10])) for n in range(0, 32, 10)]


@pytest.fixture(scope="module")
def public(standin, tmp_path_factory):
    """Gunicorn and nginx with PUBLIC_URL set (a name for nginx's address, as DNS would give it)."""
    find_nginx_or_skip()
    run = tmp_path_factory.mktemp("public")
    env = service_env(standin, run / "cache")
    with Gunicorn({**env, "PUBLIC_URL": "http://crops.test"}, cwd=run, workers=2) as app, \
            NginxServer(app, run / "cache", run / "nginx") as nginx:
        yield nginx


def test_with_public_url_nginx_keeps_a_manifest_built_on_it_whatever_the_first_request_said(public, standin):
    name = "framegrab-5"
    path = f"{presentation.MANIFESTS}/{uuid_for(name)}"
    first = manifest(public, standin, name, base="http://crops.test", Host="evil.example", **SPOOFED)
    assert first.headers["Cache-Control"] == "max-age=3600, public"
    assert "evil" not in first.text and "gopher" not in first.text
    standin.reset()
    again = manifest(public, standin, name, base="http://crops.test")
    assert again.content == first.content and standin.api_calls() == 0
    assert served_by_app(public, path, 2) == [True, False]  # the second from nginx's own store


def test_with_public_url_a_collection_page_is_kept_by_its_whole_query_and_no_error_is(public, standin):
    path = f"{presentation.CONCEPT_COLLECTION}?name={quote(MULTIPAGE_CONCEPT)}&page=1"
    first, again = get(public, path), get(public, path)
    assert (first.status_code, again.status_code) == (200, 200) and again.content == first.content
    assert_valid_presentation(again.json(), "http://crops.test")
    assert served_by_app(public, path, 2) == [True, False]
    other_path = path.replace(quote(MULTIPAGE_CONCEPT), quote("Chiroteuthis calyx"))  # another concept
    other = get(public, other_path)
    assert other.status_code == 200 and "Chiroteuthis calyx" in other.json()["label"]["en"][0]
    assert served_by_app(public, other_path, 1) == [True]
    unknown = f"{presentation.CONCEPT_COLLECTION}?name=Nemo"
    assert get(public, unknown).status_code == get(public, unknown).status_code == 404
    assert served_by_app(public, unknown, 2) == [True, True]
