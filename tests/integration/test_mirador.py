"""Mirador (vendored, cropper/static/vendor/mirador) on the service's IIIF manifests, in headless Debian
Chromium through real nginx and Gunicorn: the boxes Mirador holds for the canvas are the stand-in's, read
from Mirador's own state with its own selectors, and the image is drawn from this service's tiles.

The browser comes from test_page.py; as its pages, each test fails on any console error but Mirador's own
(React 19 tells Mirador 4.0.0 that `element.ref` is gone: a warning to Mirador's developers, logged as an error).
"""

import io
import re
import time
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image

from cropper.pages import mirador_policy
from devtools.standin import boxes, uuid_for
from tests.integration.test_page import browser, fresh_page  # noqa: F401 (browser: a fixture)

MIRADOR_JS = "/static/vendor/mirador/mirador.min.js"

# What Mirador holds of the first window's canvas, by Mirador's selectors over its Redux store; null until loaded.
HELD = """
const viewer = window.miradorViewer, M = window.Mirador;
if (!viewer) return null;
const state = viewer.store.getState(), [windowId] = M.getWindowIds(state);
if (!windowId) return null;
const held = M.getAnnotationResourcesByMotivation(state, {windowId});
if (!held.length) return null;
return {canvases: M.getVisibleCanvasIds(state, {windowId}),
        items: held.map((a) => ({id: a.id, tags: a.tags, xywh: a.fragmentSelector, target: a.targetId,
                                 motivations: a.motivations}))};
"""


@pytest.fixture
def page(browser, nginx, tmp_path):  # noqa: F811 (browser: test_page's fixture)
    yield from fresh_page(browser, nginx, tmp_path, tolerated=[MIRADOR_JS])


def clamped(box, width=1920, height=1080):
    x1, y1 = max(box["x"], 0), max(box["y"], 0)
    return [x1, y1, min(box["x"] + box["width"], width) - x1, min(box["y"] + box["height"], height) - y1]


def open_in_mirador(page, name):
    page.driver.get(f"{page.base}/mirador?image={uuid_for(name)}")
    return page.wait(lambda: page.js(HELD), timeout=30, message="Mirador's annotations")


def test_mirador_holds_exactly_the_images_boxes_and_draws_the_image_from_our_tiles(page, standin, nginx):
    name = "framegrab-0"  # five boxes: two concepts, one past the image's bottom edge
    held = open_in_mirador(page, name)
    canvas = f"{nginx.url}/iiif/manifests/{uuid_for(name)}/canvas"
    assert held["canvases"] == [canvas]
    assert all(item["target"] == canvas and item["motivations"] == ["tagging"] for item in held["items"])
    expected = sorted((b["concept"], clamped(b)) for b in boxes(name))
    assert len(held["items"]) == len(boxes(name)) == 5
    assert sorted((item["tags"][0], item["xywh"]) for item in held["items"]) == expected  # the concept, the box
    assert {item["id"].rsplit("/", 1)[1] for item in held["items"]} == {b["uuid"] for b in boxes(name)}
    # The annotations panel lists them; the image is drawn, from this service's tiles and nothing else.
    page.wait(lambda: len(page.all("li[annotationid]")) == 5, message="the annotations panel")
    page.wait(lambda: drawn_colours(page) > 1000, message="the image drawn")
    urls = page.requested()
    tiles = [u for u in urls if f"/iiif/3/{uuid_for(name)}/" in u and not u.endswith("info.json")]
    assert tiles, urls
    assert {urlsplit(u).netloc for u in urls if u.startswith("http")} == {urlsplit(nginx.url).netloc}


def drawn_colours(page):
    """How many colours OpenSeadragon's canvas shows (a blank viewer shows one or two)."""
    canvas = page.all(".openseadragon-canvas canvas")
    if not canvas:
        return 0
    image = Image.open(io.BytesIO(canvas[0].screenshot_as_png)).convert("RGB")
    return len(image.getcolors(1 << 20) or [])


def test_a_hostile_concept_is_shown_as_text_and_never_runs(page, standin, nginx):
    hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>Aurelia'
    standin.add_box("gray16", hostile, 40, 30, 200, 100)  # gray16: no other test here opens it
    held = open_in_mirador(page, "gray16")
    assert hostile in [item["tags"][0] for item in held["items"]]
    page.wait(lambda: [c for c in page.all(".MuiChip-label") if c.text == hostile], message="the hostile chip")
    time.sleep(0.5)  # an error event would have fired by now
    assert page.js("return window.pwned") is None
    assert page.js("return document.querySelectorAll('[onerror], script:not([src])').length") == 0
    titles = [heading.text for heading in page.all("h2")]  # the window's title: the manifest's label, as text
    assert any(hostile in title for title in titles), titles


def test_the_page_links_an_open_image_to_its_manifest_and_to_mirador(page, standin, nginx):
    name = "framegrab-1"
    page.open(f"?image={uuid_for(name)}")
    page.wait_for_image(len(boxes(name)))
    assert page.el("#manifest-link").get_attribute("href") == f"{nginx.url}/iiif/manifests/{uuid_for(name)}"
    page.el("#mirador-link").click()
    held = page.wait(lambda: page.js(HELD), timeout=30, message="Mirador's annotations")
    assert page.driver.current_url == f"{nginx.url}/mirador?image={uuid_for(name)}"
    assert len(held["items"]) == len(boxes(name))


def test_the_mirador_page_without_an_image_says_what_it_needs(page, nginx):
    page.driver.get(f"{nginx.url}/mirador?image=not-a-uuid")
    assert "Name an image" in page.error("#mirador-error")
    assert page.js("return window.miradorViewer") is None


def test_the_mirador_page_is_served_by_nginx_and_by_gunicorn_alone_with_no_inline_script(nginx, gunicorn):
    """A content security policy that allows no inline script (Mirador's inline styles it needs) holds it."""
    for base in (nginx.url, gunicorn.url):
        answer = requests.get(f"{base}/mirador?image={uuid_for('framegrab-0')}", timeout=10)
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/html")
        assert answer.headers["Content-Security-Policy"] == mirador_policy()  # PUBLIC_URL is empty here
        assert re.findall(r"<script\b[^>]*>", answer.text) == [
            '<script src="/static/vendor/mirador/mirador.min.js" defer>', '<script src="/static/js/mirador.js" defer>']
        assert not re.search(r"<[^>]*\son\w+\s*=", answer.text)  # no inline event handler
        bundle = requests.get(f"{base}{MIRADOR_JS}", timeout=10)
        assert bundle.status_code == 200 and "javascript" in bundle.headers["Content-Type"]
        assert b"G.Mirador={}" in bundle.content[:400]
