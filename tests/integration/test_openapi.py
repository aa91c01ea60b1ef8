"""The OpenAPI description (GET /openapi.json): it validates, it lists every route, and the live service keeps it.

Schemathesis (its command line, `st run --checks all`) generates requests from the description, valid and
invalid, and sends them to real Gunicorn behind real nginx with the FathomNet stand-in behind both; every
answer must be one the description declares, in the declared type and shape, valid requests accepted and
invalid ones refused. Examples and time are capped for CI.

This module is also Schemathesis' hooks module (SCHEMATHESIS_HOOKS names it in the run): the description
cannot know which images exist or how large they are, so a request Schemathesis generates as valid is
pointed at the stand-in's images, annotations and concept, its box moved inside the image and its output
kept small (x2 > x1, a box inside its image, an output within MAX_CROP_PIXELS are no JSON Schema's to say).
IIIF image requests valid by their syntax are checked against their image with the service's own parser.
Invalid requests are sent as generated.
"""

import json
import os
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path

import jsonschema_rs
import pytest
import requests
import schemathesis
from werkzeug.exceptions import MethodNotAllowed, NotFound

from devtools.servers import NginxServer, find_nginx_or_skip
from devtools.standin import CATALOG_NAMES, DATASET_CONCEPTS, EDGE_BOXES, MULTIPAGE_CONCEPT, boxes

ROOT = Path(__file__).resolve().parents[2]
HOOKS = "tests.integration.test_openapi"  # this module, as Schemathesis imports it
MAX_EXAMPLES = 30
WALL_CLOCK = 150  # seconds for the whole Schemathesis run (it takes about 50)
SEED = 20240521  # the same requests each run; set SCHEMATHESIS_SEED to explore others
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

# The stand-in's images with their sizes (the ones that crop: not huge, the bomb or the off-host one).
IMAGES = {CATALOG_NAMES[name]: size for name, size in (
    ("framegrab", (1920, 1080)), ("framegrab-3", (1920, 1080)), ("jpeg", (1920, 1080)), ("rgba", (800, 600)),
    ("gray", (640, 480)), ("palette-transparent", (640, 480)), ("gray16", (640, 480)),
    ("iiif-validator", (1000, 1000)))}
BOXES = sorted(EDGE_BOXES.values()) + [box["uuid"] for box in boxes("framegrab")]
ANNOTATED = sorted(CATALOG_NAMES[f"framegrab-{i}"] for i in range(10))
OUTPUT_SIDE = 512  # a positive request's width and height are kept at most this


@pytest.fixture(scope="module")
def nginx_fast(gunicorn, tmp_path_factory):
    """nginx in front of the module's Gunicorn with rate limits high enough that 429 does not swamp the run."""
    find_nginx_or_skip()
    limits = {"api_rate": "5000r/s", "api_burst": 5000, "regen_rate": "5000r/s", "regen_burst": 5000,
              "iiif_rate": "5000r/s", "iiif_burst": 5000}
    with NginxServer(gunicorn, gunicorn.cache_dir, tmp_path_factory.mktemp("nginx-openapi"), **limits) as server:
        yield server


@pytest.fixture(scope="module")
def description(gunicorn):
    answer = requests.get(f"{gunicorn.url}/openapi.json", timeout=30)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/json")
    return answer.json()


def schemas_in(node, where="#"):
    """Every schema object in the description (components, parameters, headers, bodies), with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" and isinstance(value, dict):
                yield f"{where}/{key}", value
            elif key == "schemas" and where == "#/components":
                yield from ((f"{where}/schemas/{name}", schema) for name, schema in value.items())
            else:
                yield from schemas_in(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from schemas_in(value, f"{where}/{i}")


def test_the_description_validates(description):
    assert description["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(description).validate()  # against the OpenAPI 3.1 meta-schema
    found = list(schemas_in(description))
    assert len(found) > 50
    for where, schema in found:
        jsonschema_rs.meta.validate(schema)  # a valid JSON Schema 2020-12 (OpenAPI 3.1's dialect)
        # Every reference resolves and every pattern compiles (as ECMA 262 regexes).
        jsonschema_rs.Draft202012Validator({**schema, "components": description["components"]})


def test_the_examples_are_valid(description):
    schemas = description["components"]["schemas"]
    for name in ("CropRequest", "ConceptRequest"):
        validator = jsonschema_rs.Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                                        "components": description["components"]})
        for example in schemas[name]["examples"]:
            validator.validate(example)


def test_the_description_lists_every_route(description, gunicorn):
    """Each Flask route is a documented path, for the same methods, and each path is a route.

    Not /static/, nor /_cluster/make and /_cluster/purge: the hosts of a cluster ask each other with them,
    with their key; to anyone else they are not there (a 404). The operator endpoints (/admin/) exist only
    with ADMIN_TOKEN: the next test.
    """
    from cropper import create_app
    from cropper.config import Settings

    documented, routes = documented_and_routes(description, create_app(Settings(cache_dir=gunicorn.cache_dir)))
    assert documented == routes and not any(path.startswith("/admin/") for path in description["paths"])


def test_with_admin_token_the_operator_endpoints_are_described_too(tmp_path):
    from cropper import create_app
    from cropper.config import Settings

    app = create_app(Settings(cache_dir=tmp_path, admin_token="t" * 40))
    with app.test_client() as client:
        description = client.get("/openapi.json").get_json()
    schemathesis.openapi.from_dict(description).validate()
    documented, routes = documented_and_routes(description, app)
    assert documented == routes and {"admin.purge_image", "admin.purge_box", "admin.purge_concept"} <= set(routes)
    assert description["paths"]["/admin/images/{uuid}"]["delete"]["security"] == [{"adminToken": []}]


def documented_and_routes(description, app):
    """(endpoint: methods) the description documents, and (endpoint: methods) the app routes."""
    adapter = app.url_map.bind("cropper.test")
    documented = {}
    for path, item in description["paths"].items():
        sample = re.sub(r"\{(\w+)\}", lambda m: {"name": "0_0_1_1.webp", "format": "png"}.get(m[1], "x"), path)
        for method in set(item) & HTTP_METHODS:
            try:
                endpoint, _ = adapter.match(sample, method=method.upper())
            except (NotFound, MethodNotAllowed) as error:
                pytest.fail(f"{method.upper()} {path} is documented but no route answers it: {error!r}")
            documented.setdefault(endpoint, set()).add(method.upper())
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint not in ("static", "cropper.make_for_another_host", "cropper.purge_for_another_host"):
            routes.setdefault(rule.endpoint, set()).update(rule.methods - {"HEAD", "OPTIONS"})
    return documented, routes


def test_the_reference_page_is_served(nginx, gunicorn):
    for base in (nginx.url, gunicorn.url):
        page = requests.get(f"{base}/docs", timeout=10)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert 'spec-url="/openapi.json"' in page.text
        policy = page.headers["Content-Security-Policy"]
        assert "img-src 'self' data:;" in policy and "connect-src 'self'" in policy  # no CDN logo
        assert "frame-ancestors 'none'" in policy
        scripts = re.findall(r'src="([^"]+)"', page.text)
        assert scripts == ["/static/vendor/redoc/redoc.standalone.js"]
        assert "http" not in re.sub(r"<!--.*?-->", "", page.text, flags=re.S)
        bundle = requests.get(f"{base}{scripts[0]}", timeout=10)
        assert bundle.status_code == 200 and "javascript" in bundle.headers["Content-Type"]
        assert b"e.Redoc=" in bundle.content[:400]
    assert requests.get(f"{nginx.url}/openapi.json", timeout=10).json()["info"]["title"] == "FathomNet Cropper"


@pytest.mark.timeout(WALL_CLOCK + 60)
def test_schemathesis_finds_nothing(nginx_fast, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    log = tmp_path / "schemathesis.log"
    command = [
        str(Path(sys.executable).parent / "st"), "--config-file", str(config), "run", f"{nginx_fast.url}/openapi.json",
        "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--request-timeout", "20", "--workers", "1",
        "--seed", os.environ.get("SCHEMATHESIS_SEED", str(SEED)), "--generation-database", "none", "--no-color",
        "--suppress-health-check", "all", "--output-truncate", "true",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    started = time.monotonic()
    try:
        run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=WALL_CLOCK)
    except subprocess.TimeoutExpired as expired:
        log.write_text((expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes)
                       else expired.stdout or "")
        pytest.fail(f"Schemathesis took more than {WALL_CLOCK} s (its output so far: {log})")
    took = time.monotonic() - started
    output = run.stdout + run.stderr
    log.write_text(output)
    summary = readable(output)
    print(f"Schemathesis: {took:.0f} s, exit {run.returncode}, full output in {log}\n{summary}")
    assert run.returncode == 0, f"Schemathesis found failures (full output in {log}):\n{summary}"


def readable(output, lines=60):
    """The run's summary (and failures) without the progress lines."""
    kept = [line for line in output.splitlines() if line.strip() and not re.match(r"^\s*[⠀-⣿]", line)]
    start = next((i for i, line in enumerate(kept) if re.search(r"FAILURES|SUMMARY|ERRORS", line)), None)
    kept = kept[start:] if start is not None else kept[-lines:]
    return "\n".join(kept[-400:])


SCHEMATHESIS_CONFIG = """\
# A batch of more than BATCH_MAX_CROPS (the description's maxItems) is refused with 413 too_many_crops.
[[operations]]
include-path-regex = "^/cropper-list/?$"
checks.negative_data_rejection.expected-statuses = ["400", "404", "405", "406", "409", "413", "415", "422", "429",
                                                   "5xx"]

# A data set deleted earlier in a stateful sequence (POST, DELETE, then GET) is 410 Gone: it was, and is no more.
[[operations]]
include-path-regex = "^/datasets/\\\\{job_id\\\\}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "410", "429", "5xx"]

# IIIF asks for 501 Not Implemented for a valid request the server does not do (a rotation by other than
# 90 degrees, spec 7.3): the description declares it, and it is no crash.
[[operations]]
include-path-regex = "^/iiif/3/\\\\{identifier\\\\}/\\\\{region\\\\}"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "501"]
"""


# -- Schemathesis' hooks: valid requests pointed at what the stand-in knows (see the module's docstring)


def pick(choices, *seeds):
    """One of choices, chosen by the generated values (so the run stays varied and reproducible)."""
    return choices[zlib.crc32(json.dumps(seeds, sort_keys=True, default=str).encode()) % len(choices)]


def whole(value):
    return int(value) if isinstance(value, (int, float)) else int(str(value).strip())


def same_kind(original, number):
    """number spelled as the generated value was: a JSON number or a numeric string."""
    return str(number) if isinstance(original, str) else number


def small_output(options):
    """Width and height kept at most OUTPUT_SIDE, so no output is over MAX_CROP_SIDE or MAX_CROP_PIXELS."""
    for name in ("width", "height"):
        if name in options:
            options[name] = same_kind(options[name], 1 + (whole(options[name]) - 1) % OUTPUT_SIDE)


def inside(a, b, size):
    """A span of at least an eighth of the image (so no aspect is extreme), from two generated numbers."""
    least = max(1, size // 8)
    start = a % (size - least + 1)
    return start, start + least + b % (size - start - least + 1)


def fit_crop(body):
    """A crop request that the service can make of a stand-in image: known uuid, box inside, small output."""
    if not isinstance(body, dict):
        return
    small_output(body)
    if "box_uuid" in body:
        body["box_uuid"] = pick(BOXES, body)
    elif {"uuid", "x1", "y1", "x2", "y2"} <= set(body):
        uuid = pick(sorted(IMAGES), body)
        width, height = IMAGES[uuid]
        x1, x2 = inside(whole(body["x1"]), whole(body["x2"]), width)
        y1, y2 = inside(whole(body["y1"]), whole(body["y2"]), height)
        body.update(uuid=uuid, x1=same_kind(body["x1"], x1), x2=same_kind(body["x2"], x2),
                    y1=same_kind(body["y1"], y1), y2=same_kind(body["y2"], y2))


def fit_batch(body):
    items = body if isinstance(body, list) else body.get("crops", []) if isinstance(body, dict) else []
    if isinstance(body, dict):
        small_output(body)
    for item in items:
        fit_crop(item)


def fit_concept(body):
    if isinstance(body, dict):
        body["concept"] = MULTIPAGE_CONCEPT
        small_output(body)


def fit_iiif_image(case):
    from cropper.iiif import image as iiif

    params = case.path_parameters
    params["identifier"] = uuid = pick(sorted(IMAGES), params)
    width, height = IMAGES[uuid]
    for fix in ({}, {"rotation": "0"}, {"region": "full"}, {"size": "max"}, {"size": "^max"}):
        params.update(fix)
        try:
            iiif.parse_image_request(params["region"], params["size"], params["rotation"],
                                     f"{params['quality']}.{params['format']}", width, height,
                                     max_width=8192, max_height=None, max_area=16_777_216)
            return
        except iiif.IIIFNotImplementedError:
            params["rotation"] = "!0" if params["rotation"].startswith("!") else "0"
        except iiif.IIIFError:
            continue


def fit_query_options(case):
    """What the body's schemas say of the options and query parameters cannot: background needs fit
    letterbox, and a fit needs width and height."""
    query = case.query if isinstance(case.query, dict) else {}
    if "background" in query:
        query["fit"] = "letterbox"
    if "fit" in query:
        query.setdefault("width", 64)
        query.setdefault("height", 64)
    small_output(query)
    case.query = query


def fit_dataset(body):
    """A data-set request the service can run, small: known concepts, splits adding up to 1, ranges the right
    way round, dates that exist, a few boxes."""
    if not isinstance(body, dict):
        return
    body["concepts"] = [pick(DATASET_CONCEPTS, body)]
    body["max_boxes"] = 1 + whole(body.get("max_boxes", 0)) % 20
    if isinstance(body.get("split"), dict) and body["split"]:
        share = 1 / len(body["split"])
        body["split"] = {name: share for name in body["split"]}
    filters = body.get("filters") if isinstance(body.get("filters"), dict) else {}
    for low, high in (("minDepth", "maxDepth"), ("minLatitude", "maxLatitude"), ("minLongitude", "maxLongitude")):
        if low in filters and high in filters and filters[low] > filters[high]:
            filters[low], filters[high] = filters[high], filters[low]
    for name in ("startTimestamp", "endTimestamp"):
        if name in filters:
            filters[name] = pick(["2019-01-01", "2021-06-01T00:00:00Z", "2022-02-28T12:30:00.5+02:00"], filters)
    crop = body.get("crop") if isinstance(body.get("crop"), dict) else None
    if crop is not None:
        small_output(crop)
        if "background" in crop:
            crop["fit"] = "letterbox"
        if "fit" in crop:
            crop.setdefault("width", 64)
            crop.setdefault("height", 64)


FIT_BODY = {"/cropper/": fit_crop, "/cropper": fit_crop, "/cropper-list/": fit_batch, "/cropper-list": fit_batch,
            "/cropper-concept/": fit_concept, "/cropper-concept": fit_concept, "/datasets/": fit_dataset,
            "/datasets": fit_dataset}


def fit_positive(case):
    path, params = case.operation.path, case.path_parameters or {}
    if path in FIT_BODY:
        FIT_BODY[path](case.body)
    elif path == "/images/{uuid}/boxes":
        params["uuid"] = pick(ANNOTATED + sorted(IMAGES), params)
    elif path == "/boxes/{box_uuid}.{format}":
        params["box_uuid"] = pick(BOXES, params, case.query)
        fit_query_options(case)
    elif path == "/crops/{shard}/{uuid}/{name}":
        params["uuid"] = pick(sorted(IMAGES), params)
        params["shard"] = params["uuid"][:2]
    elif path == "/iiif/manifests/{uuid}":
        params["uuid"] = pick(ANNOTATED + sorted(IMAGES), params)
    elif path == "/iiif/collections/concept" and isinstance(case.query, dict):
        case.query["name"] = MULTIPAGE_CONCEPT
    elif path in ("/iiif/3/{identifier}", "/iiif/3/{identifier}/info.json"):
        params["identifier"] = pick(sorted(IMAGES), params)
    elif path.startswith("/iiif/3/{identifier}/{region}"):
        fit_iiif_image(case)


if os.environ.get("SCHEMATHESIS_HOOKS") == HOOKS:

    @schemathesis.hook
    def before_call(context, case, kwargs):
        if case.meta is not None and case.meta.generation.mode.is_positive:
            fit_positive(case)
            # Still valid, by construction: keep the label (Schemathesis' own recheck would read the path
            # parameters percent-encoded, as they are by now, and call them invalid).
            case._sync_validated_hashes()
