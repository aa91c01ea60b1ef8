"""The roles keep to their rooms: Flask only in the HTTP layer, no module in another's privates, one render
pipeline that every output goes through (docs/architecture.md, "Where a change goes")."""

import ast
import subprocess
import sys

from PIL import ImageOps

from cropper import imaging
from tests.images import open_bytes
from tests.modules import PACKAGE, package_sources

BELOW_HTTP = ("cropper.storage.files", "cropper.storage.s3", "cropper.storage.eviction", "cropper.upstream.fathomnet",
              "cropper.crops", "cropper.imaging", "cropper.iiif.image", "cropper.service", "cropper.sources",
              "cropper.batch", "cropper.wiring", "cropper.metrics", "cropper.errors", "cropper.schemas")


def test_importing_what_lies_below_the_http_layer_loads_no_flask():
    """Checked in a fresh interpreter: this one has Flask loaded by other tests."""
    script = (f"import sys\nfor name in {BELOW_HTTP!r}: __import__(name)\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug', 'flask_cors')))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_the_package_root_gives_create_app_without_loading_flask():
    script = "import sys, cropper\nprint(callable(cropper.create_app), 'flask' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.split() == ["True", "False"]


# Frameworks' documented entry points that happen to start with "_": Flask's way to the real app behind current_app.
DOCUMENTED = {"_get_current_object"}


def private_uses(tree):
    """(line, expression) of each use of a private attribute of something other than self, cls or super()."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                and node.attr not in DOCUMENTED:
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            yield node.lineno, ast.unparse(node)


def test_no_module_reaches_into_another_objects_private_attributes():
    """A role is spoken to through its interface: obj._thing from outside obj's class is refused."""
    found = [f"{name}:{line}: {expression}" for name, text in package_sources(but=())
             for line, expression in private_uses(ast.parse(text))]
    assert found == []


def test_the_privates_check_finds_what_it_looks_for():
    assert list(private_uses(ast.parse("store._root\nself._root\nsuper()._x()\nx.__class__"))) == [(1, "store._root")]


def test_a_render_step_added_to_the_pipeline_shapes_crops_and_iiif_images_alike(client, standin, monkeypatch):
    """A new crop option is a field and a step: the step list is the one pipeline both outputs go through."""
    def invert(image, crop):
        return ImageOps.invert(image.convert("RGB"))

    monkeypatch.setattr(imaging, "STEPS", [*imaging.STEPS, invert])
    record = standin.image("framegrab")
    url = client.post("/cropper/", json={"uuid": record.uuid, "x1": 0, "y1": 0, "x2": 64, "y2": 64,
                                         "format": "png"}).json["url"]
    crop = open_bytes(client.get(url.replace("http://crops.test", "")).data)
    tile = open_bytes(client.get(f"/iiif/3/{record.uuid}/0,0,64,64/64,64/0/default.png").data)
    plain = open_bytes(record.data).convert("RGB").crop((0, 0, 64, 64))
    assert crop.tobytes() == ImageOps.invert(plain).tobytes() == tile.convert("RGB").tobytes()


def test_every_module_of_the_package_lives_in_a_role_folder_or_is_a_documented_top_level_one():
    top_level = {path.name for path in PACKAGE.glob("*.py")}
    assert top_level == {"__init__.py", "__main__.py", "batch.py", "cluster.py", "config.py", "crops.py",
                         "errors.py", "formats.py", "imaging.py", "logstats.py", "metrics.py", "pages.py",
                         "purges.py", "schemas.py", "service.py", "sources.py", "spreadsheets.py", "wiring.py"}
    assert {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").exists()} == {
        "datasets", "http", "iiif", "ops", "storage", "upstream"}
