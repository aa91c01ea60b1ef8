"""The web page's screenshots in docs/, made again: `python -m devtools.screenshots` while
`python -m devtools.demo` runs (its stand-in draws deep-sea scenes; pass its ports if you moved them).
Start the demo on an empty --folder: a data set asked before is answered done at once, and crops
already made make a job too quick to be seen running.

Headless Debian Chromium at 1280x800, as the page's tests drive it. Writes page-annotations.png,
page-crop.png, page-dataset-running.png and page-dataset-done.png; look at each before committing.
"""

import argparse
import time
from pathlib import Path

import requests
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from devtools.servers import ROOT
from devtools.standin import BENCH_DATASET_CONCEPT, BENCH_NAMES, DATASET_GENUS, boxes, uuid_for

SCENE = "dataset-2"  # several kinds of animal in one picture


class Browser:
    def __init__(self, base):
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                    {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
        self.base = base

    def open(self, query):
        self.driver.get(f"{self.base}/{query}")

    def el(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def wait(self, condition, what, timeout=120):
        try:
            WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(lambda d: condition())
        except TimeoutException:
            raise SystemExit(f"timed out waiting for {what}") from None

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def tiles_drawn(self):
        return self.js("const i = window.cropperPage.viewer.world.getItemAt(0);"
                       "return Boolean(i && i.getFullyLoaded())")

    def save(self, path):
        time.sleep(0.5)  # the last paint
        self.driver.save_screenshot(str(path))
        print(f"wrote {path}")


def annotations(browser, out):
    """An image with its annotations, one of them focused (its details shown)."""
    browser.open(f"?image={uuid_for(SCENE)}")
    browser.wait(browser.tiles_drawn, "the image")
    largest = max(boxes(SCENE), key=lambda b: b["width"] * b["height"])
    browser.js("arguments[0].focus()", browser.el(f'.annotation[data-box="{largest["uuid"]}"]'))
    browser.save(out / "page-annotations.png")


def crop(browser, out):
    """A finished crop of an annotation, padded, squared and scaled."""
    chosen = max(boxes(SCENE), key=lambda b: b["width"] * b["height"])
    browser.open(f"?image={uuid_for(SCENE)}&box={chosen['uuid']}&pad=10%25&square=1&width=224&height=224")
    browser.wait(lambda: "bytes" in browser.el("#result-size").text, "the crop")
    browser.wait(browser.tiles_drawn, "the image")
    browser.save(out / "page-crop.png")


def start_in_panel(browser, concepts, width, descendants=False, split=None, formats=()):
    browser.open("?dataset=")
    browser.wait(lambda: browser.el("#ds-start-button").is_enabled(), "the data-set panel")
    for name in concepts:
        browser.el("#ds-concept").send_keys(name + "\n")
    if descendants:
        browser.el("#ds-descendants").click()
    for name, percent in (split or {}).items():
        browser.el(f"#ds-split-{name}").clear()
        browser.el(f"#ds-split-{name}").send_keys(str(percent))
    for field in ("#ds-width", "#ds-height"):
        browser.el(field).send_keys(str(width))
    browser.el("#ds-square").click()
    Select(browser.el("#ds-format")).select_by_value("png")
    for name in formats:  # besides the default
        browser.el(f'#ds-formats input[value="{name}"]').click()
    browser.el("#ds-start-button").click()


def dataset_running(browser, out):
    """The bench's 1,000 boxes on 100 images: long enough to be seen running, part done."""
    start_in_panel(browser, [BENCH_DATASET_CONCEPT], 128)
    browser.wait(lambda: browser.el("#ds-status").text == "Running: cropping." and
                 "left" in browser.el("#ds-progress-text").text, "the job part done")
    browser.js("document.getElementById('ds-job').scrollIntoView({block: 'end'})")
    browser.save(out / "page-dataset-running.png")


def dataset_done(browser, out):
    """A genus with its species and a family beside it: several labels over the three splits (60/20/20 puts
    some of the stand-in's dozen images in each), written as imagefolder and as WebDataset shards."""
    start_in_panel(browser, [DATASET_GENUS, "Myctophidae"], 96, descendants=True,
                   split={"train": 60, "validation": 20, "test": 20}, formats=["webdataset"])
    browser.wait(lambda: browser.el("#ds-status").text == "Done: the files are ready.", "the job done")
    browser.js("document.getElementById('ds-job').scrollIntoView({block: 'end'})")
    browser.save(out / "page-dataset-done.png")


def warm(standin):
    """Have the stand-in draw the bench's pictures before the job asks for them: drawn on first use, a hundred
    take longer than the service waits for FathomNet's answers."""
    catalog = {item["name"]: item for item in requests.get(f"{standin}/_standin/catalog", timeout=30).json()}
    for name in BENCH_NAMES:
        requests.get(catalog[name]["url"], timeout=120).raise_for_status()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the demo's page")
    parser.add_argument("--standin", default="http://127.0.0.1:8001", help="the demo's FathomNet stand-in")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    warm(args.standin)
    browser = Browser(args.url.rstrip("/"))
    try:
        for shot in (annotations, crop, dataset_running, dataset_done):
            shot(browser, args.out)
    finally:
        browser.driver.quit()


if __name__ == "__main__":
    main()
