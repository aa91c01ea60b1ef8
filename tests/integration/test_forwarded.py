"""Forwarded headers a client makes up, through real nginx and Gunicorn: no answer's URL follows them.

nginx sets X-Forwarded-For, -Proto and -Host itself and clears -Port, -Prefix and Forwarded; the app
trusts For, Proto and Host only (docs/operations.md, "Forwarded headers"). Every answer that carries a
URL is asked with each spoofed header: the URL in its body, its Location and its Link stay nginx's own.
"""

import re
from urllib.parse import quote

import pytest
import requests

from devtools.standin import boxes, uuid_for

IMAGE = "framegrab-1"
SPOOFED = {
    "prefix": {"X-Forwarded-Prefix": "evil.example"},
    "prefix with @": {"X-Forwarded-Prefix": "@evil.example"},
    "port": {"X-Forwarded-Port": "x", "X-Forwarded-Prefix": "evil.example"},
    "numeric port": {"X-Forwarded-Port": "4444"},
    "host": {"X-Forwarded-Host": "evil.example"},
    "proto": {"X-Forwarded-Proto": "https"},
    "for": {"X-Forwarded-For": "203.0.113.9"},
    "rfc 7239": {"Forwarded": "for=203.0.113.9;host=evil.example;proto=https"},
}
SPOOFED["all at once"] = {name: value for headers in SPOOFED.values() for name, value in headers.items()}


def urls_in(answer, fathomnet_api="-"):
    """Every absolute URL of this service an answer hands out: in its JSON body, its Location and its Link
    headers. Not IIIF's own profiles and contexts, nor a manifest's link to FathomNet's record (fathomnet_api)."""
    found = re.findall(r'https?://[^"\s,]*', answer.text) if "json" in answer.headers.get("Content-Type", "") else []
    found += [answer.headers["Location"]] if "Location" in answer.headers else []
    found += re.findall(r"<([^>]+)>", answer.headers.get("Link", ""))
    return [url for url in found if not url.startswith(("http://iiif.io/", f"{fathomnet_api}/"))]


def url_answers(base, headers, serial):
    """The ten answers that carry this service's URLs; serial makes each crop and tile new (made by the app)."""
    image, box, concept = uuid_for(IMAGE), boxes(IMAGE)[0]["uuid"], boxes(IMAGE)[0]["concept"]
    corner = 10 + serial
    crop = {"uuid": image, "x1": corner, "y1": 10, "x2": corner + 30, "y2": 40}

    def post(path, body):
        return requests.post(f"{base}{path}", json=body, headers=headers, timeout=60)

    def get(path):
        return requests.get(f"{base}{path}", headers=headers, timeout=60, allow_redirects=False)

    return {
        "crop": post("/cropper/", crop),
        "batch": post("/cropper-list/", [crop, {"box_uuid": box}]),
        "concept": post("/cropper-concept/", {"concept": boxes(IMAGE)[0]["concept"], "limit": 2}),
        "an image's boxes": get(f"/images/{image}/boxes"),
        "a box's crop (302)": get(f"/boxes/{box}.webp?width={100 + serial}"),
        "info.json": get(f"/iiif/3/{image}/info.json"),
        "IIIF base URI (303)": get(f"/iiif/3/{image}"),
        "IIIF image (Link)": get(f"/iiif/3/{image}/{corner},0,64,64/32,32/0/default.jpg"),
        "IIIF manifest": get(f"/iiif/manifests/{image}"),
        "IIIF collection": get(f"/iiif/collections/concept?name={quote(concept)}"),
    }


@pytest.mark.parametrize("spoof", SPOOFED, ids=list(SPOOFED))
def test_no_answer_hands_out_a_url_a_client_made_up(nginx, standin, spoof):
    serial = list(SPOOFED).index(spoof)
    answers = url_answers(nginx.url, SPOOFED[spoof], serial)
    for name, answer in answers.items():
        assert answer.status_code < 400, (name, answer.status_code, answer.text[:200])
        urls = urls_in(answer, standin.api_url)
        assert urls, name  # each of these hands out at least one URL
        for url in urls:
            assert url.startswith(f"{nginx.url}/"), (name, url)
    assert answers["a box's crop (302)"].status_code == 302 and answers["IIIF base URI (303)"].status_code == 303


def test_gunicorn_alone_trusts_only_for_proto_and_host_from_its_one_proxy(gunicorn):
    """Behind a proxy that sets them (TRUSTED_PROXIES=1), Host and Proto are taken; Port and Prefix never are."""
    image = uuid_for(IMAGE)
    answer = requests.get(f"{gunicorn.url}/iiif/3/{image}", allow_redirects=False, timeout=30, headers={
        "X-Forwarded-Host": "crops.example", "X-Forwarded-Proto": "https",
        "X-Forwarded-Port": "4444", "X-Forwarded-Prefix": "/evil"})
    assert answer.headers["Location"] == f"https://crops.example/iiif/3/{image}/info.json"
