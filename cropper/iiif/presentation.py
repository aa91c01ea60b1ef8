"""IIIF Presentation API 3.0: an image's manifest, with FathomNet's boxes as annotations, and a concept's collections.

Pure: records in (upstream.ImageInfo and BoxInfo), JSON out; no Flask and no I/O. A manifest has one
canvas at the size FathomNet gives, painted with the image through this service's Image API (image.py),
and one annotation page under the canvas's `annotations` (where Mirador reads them): each box a
W3C Web Annotation, motivation `tagging`, its concept a TextualBody, its target the canvas's
`#xywh=` region clamped to the canvas as crops are (a box wholly outside the image is left out, as
its crop is refused). A concept's collection lists the manifests of the images of one page of
FathomNet's boxes of that concept, with the next page as a collection in its items while there are more.

Sources: the specification (https://iiif.io/api/presentation/3.0/), the navPlace extension
(https://iiif.io/api/extension/navplace/), the W3C Web Annotation Data Model, and the IIIF
consortium's presentation validator's JSON schema, which every document made here passes.
Text from FathomNet stays text: it is only ever a JSON string, and no IIIF language-map value made
here both starts with "<" and ends with ">", which clients take for HTML (spec 4.4).
"""

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from .. import crops, formats
from ..errors import BoxOutsideImageError
from . import image

CONTEXT = "http://iiif.io/api/presentation/3/context.json"
NAVPLACE_CONTEXT = "http://iiif.io/api/extension/navplace/context.json"  # extensions come before CONTEXT
MEDIA_TYPE = f'application/ld+json;profile="{CONTEXT}"'
MANIFESTS = "/iiif/manifests"  # an image's manifest: MANIFESTS/<uuid>
CONCEPT_COLLECTION = "/iiif/collections/concept"  # ?name=<concept>&page=<n>, pages from 1
PAINTED_FORMAT = "jpeg"  # the canvas's image as a whole (viewers take its tiles from the service instead)
CROP_FORMAT = "webp"  # each annotation's seeAlso: its box's crop, /boxes/<box uuid>.webp
LABELLED_CONCEPTS = 5  # a manifest's label names at most this many concepts, then says how many more
SOURCE = {"label": {"en": ["Source"]},
          "value": {"en": ["FathomNet (fathomnet.org), MBARI's open database of annotated ocean images"]}}


@dataclass(frozen=True)
class Links:
    """Where a document's links go: this service (every id is below it) and FathomNet's API."""

    base: str  # this service's base URL, absolute, without a trailing slash
    fathomnet_api: str  # FathomNet's API base URL (an image's record is at /images/<uuid> below it)

    def manifest(self, uuid):
        return f"{self.base}{MANIFESTS}/{uuid}"

    def concept_collection(self, concept, page):
        return f"{self.base}{CONCEPT_COLLECTION}?{urlencode({'name': concept, 'page': page}, quote_via=quote)}"


def manifest(info, links):
    """The manifest of an image (an upstream.ImageInfo with its boxes)."""
    url = links.manifest(info.uuid)
    document = {
        "@context": [NAVPLACE_CONTEXT, CONTEXT] if _has_position(info) else CONTEXT,
        "id": url,
        "type": "Manifest",
        "label": {"en": [_label(info)]},
        "summary": {"en": [_summary(info)]},
        "metadata": _metadata(info),
        "requiredStatement": SOURCE,
        "homepage": [{"id": f"{links.base}/?image={info.uuid}", "type": "Text", "format": "text/html",
                      "label": {"en": ["This image and its boxes on the FathomNet Cropper page"]}}],
        "seeAlso": [{"id": f"{links.fathomnet_api.rstrip('/')}/images/{info.uuid}", "type": "Dataset",
                     "format": "application/json", "label": {"en": ["FathomNet's record of this image"]}}],
    }
    if _has_position(info):
        document["navPlace"] = {"id": f"{url}/place", "type": "FeatureCollection", "features": [{
            "id": f"{url}/place/point", "type": "Feature",
            "properties": {"label": {"en": ["Where FathomNet says the image was taken"]}},
            "geometry": {"type": "Point", "coordinates": [info.longitude, info.latitude]}}]}
    document["items"] = [_canvas(info, url, links)]
    return document


def concept_collection(concept, page, first, boxes, total, more, links):
    """A page of FathomNet's boxes of a concept as a collection of their images' manifests.

    page: its number (from 1); first: the offset of its first box; boxes: the page's BoxInfos, in
    FathomNet's order; total: the concept's boxes in all; more: whether FathomNet has a next page.
    Each image is listed once, in the order of its first box here.
    """
    counts = {}
    for box in boxes:
        counts[box.image_uuid] = counts.get(box.image_uuid, 0) + 1
    items = [{"id": links.manifest(uuid), "type": "Manifest",
              "label": {"en": [f"FathomNet image {uuid}: {_count(n, 'box')} of {concept}"]}}
             for uuid, n in counts.items()]
    if more:
        items.append({"id": links.concept_collection(concept, page + 1), "type": "Collection",
                      "label": {"en": [f"Next page ({page + 1}) of FathomNet's boxes of {concept}"]}})
    shown = f"boxes {first + 1} to {first + len(boxes)}" if boxes else "no boxes"
    return {
        "@context": CONTEXT,
        "id": links.concept_collection(concept, page),
        "type": "Collection",
        "label": {"en": [f"FathomNet images of {concept}, page {page}"]},
        "summary": {"en": [f"The images of {shown} of FathomNet's {total} boxes of {concept}."]},
        "requiredStatement": SOURCE,
        "items": items,
    }


def _canvas(info, url, links):
    canvas = f"{url}/canvas"
    service = image.base_uri(links.base, info.uuid)
    painting = {"id": f"{canvas}/image", "type": "Annotation", "motivation": "painting", "target": canvas, "body": {
        "id": f"{service}/full/max/0/default.{image.extension_of(PAINTED_FORMAT)}", "type": "Image",
        "format": formats.get(PAINTED_FORMAT).media_type,
        "width": info.width, "height": info.height,
        "service": [{"id": service, "type": "ImageService3", "profile": "level2"}]}}
    return {"id": canvas, "type": "Canvas", "label": {"en": ["FathomNet image"]},
            "width": info.width, "height": info.height,
            "items": [{"id": f"{canvas}/page", "type": "AnnotationPage", "items": [painting]}],
            "annotations": [{"id": f"{url}/annotations", "type": "AnnotationPage",
                             "items": [a for a in (_annotation(box, info, url, canvas, links) for box in _boxes(info))
                                       if a]}]}


def _annotation(box, info, url, canvas, links):
    """A box as a tagging annotation of its region of the canvas; None for a box wholly outside the image."""
    try:
        region = crops.region_of(box.box, info.size, clamp_box=True)
    except BoxOutsideImageError:
        return None
    body = [{"type": "TextualBody", "value": box.concept, "format": "text/plain", "purpose": "tagging"}]
    described = [f"review state: {box.review}"] if box.review else []
    described += [flag for flag in ("occluded", "truncated") if getattr(box, flag)]
    if described:
        body.append({"type": "TextualBody", "value": "; ".join(described), "format": "text/plain",
                     "purpose": "describing"})
    return {"id": f"{url}/annotations/{box.uuid}", "type": "Annotation", "motivation": "tagging", "body": body,
            "target": f"{canvas}#xywh={region.x1},{region.y1},{region.width},{region.height}",
            "seeAlso": [{"id": f"{links.base}/boxes/{box.uuid}.{CROP_FORMAT}", "type": "Image",
                         "format": formats.get(CROP_FORMAT).media_type, "label": {"en": ["The crop of this box"]}}]}


def _boxes(info):
    """The image's boxes, each once (a record naming a box twice would give two annotations one id)."""
    unique = {}
    for box in info.boxes or ():
        unique.setdefault(box.uuid, box)
    return tuple(unique.values())


def _concepts(info):
    """Each concept of the image's boxes once, with its count, in the order of its first box."""
    counts = {}
    for box in _boxes(info):
        counts[box.concept] = counts.get(box.concept, 0) + 1
    return counts


def _label(info):
    concepts = list(_concepts(info))
    if not concepts:
        return f"FathomNet image {info.uuid}"
    named = ", ".join(concepts[:LABELLED_CONCEPTS])
    more = len(concepts) - LABELLED_CONCEPTS
    return f"FathomNet image of {named}" + (f" and {more} more" if more > 0 else "")


def _summary(info):
    boxes = _boxes(info)
    concepts = ", ".join(f"{concept} ({n})" for concept, n in _concepts(info).items())
    sentences = [f"{_count(len(boxes), 'box')}: {concepts}." if boxes else "No boxes."]
    if info.imaging_type and info.depth is not None:
        sentences.append(f"Taken by {info.imaging_type} at {_number(info.depth)} m.")
    elif info.imaging_type:
        sentences.append(f"Taken by {info.imaging_type}.")
    elif info.depth is not None:
        sentences.append(f"Taken at {_number(info.depth)} m.")
    return " ".join(sentences)


def _metadata(info):
    """Label and value pairs for what FathomNet gives of the image (values from FathomNet are language-neutral)."""
    pairs = [("FathomNet image", info.uuid),
             ("Depth", None if info.depth is None else f"{_number(info.depth)} m"),
             ("Latitude", None if info.latitude is None else _number(info.latitude)),
             ("Longitude", None if info.longitude is None else _number(info.longitude)),
             ("Time", info.timestamp),
             ("Imaging type", info.imaging_type)]
    return [{"label": {"en": [label]}, "value": {"none": [_text(value)]}} for label, value in pairs
            if value is not None]


def _text(value):
    """A value clients show as text: one that starts with "<" and ends with ">" they take for HTML (spec 4.4)."""
    return f"{value} " if value.startswith("<") and value.endswith(">") else value


def _has_position(info):
    return info.latitude is not None and info.longitude is not None


def _number(value):
    """A number as FathomNet gives it, without a float's trailing ".0"."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _count(n, noun):
    return f"{n} {noun}{'' if n == 1 else 'es' if noun.endswith('x') else 's'}"
