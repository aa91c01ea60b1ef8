"""A data-set request read and normalised: equal data sets, equal requests (and one job)."""

import pytest
from marshmallow import ValidationError

from cropper.datasets import check_concepts
from cropper.datasets.build import split_of
from cropper.datasets.request import DEFAULT_SPLIT, DatasetRequest, read_request
from cropper.errors import UnknownConceptError
from cropper.schemas import OptionsSchema

OPTIONS = OptionsSchema(max_side=8192, max_pixels=16_777_216, default_format="webp")


def read(**body):
    return read_request(body, OPTIONS, 10_000)


def test_defaults_are_filled_in_and_names_put_in_order():
    request = read(concepts=["Nanomia bijuga", "Atolla", "Atolla"])
    assert request.concepts == ("Atolla", "Nanomia bijuga")
    assert (request.descendants, request.taxa_provider, request.label, request.seed) == (False, "fathomnet",
                                                                                      "concept", 0)
    assert request.split == DEFAULT_SPLIT and request.max_boxes == 10_000 and request.formats == ("imagefolder",)
    assert request.crop["format"] == "webp" and request.crop["fit"] == "contain"
    assert request.filters["minDepth"] is None and request.filters["exclude_occluded"] is False


def test_bodies_that_ask_for_the_same_data_set_have_one_key():
    a = read(concepts=["B", "A"], crop={"pad": "10%"})
    b = read(concepts=["A", "B"], seed=0, label="concept", split={"test": 0.1, "train": 0.8, "validation": 0.1},
             filters={"exclude_truncated": False}, crop={"pad": "10.0%", "format": "webp"})
    assert a == b and a.key == b.key
    assert read(concepts=["A"], seed=1).key != read(concepts=["A"]).key


def test_a_request_survives_its_record():
    request = read(concepts=["A"], crop={"pad": "12.5%", "width": 224, "height": 224, "fit": "cover"},
                   filters={"minDepth": 100, "includeRejected": True})
    again = DatasetRequest.from_dict(request.to_dict())
    assert again == request and again.key == request.key
    assert request.to_dict()["crop"]["pad"] == "12.5%"


@pytest.mark.parametrize("body, field", [
    ({"concepts": ["A"], "split": {"train": 0.7, "test": 0.2}}, "split"),
    ({"concepts": ["A"], "split": {"train": 1.0, "dev": 0.0}}, "split"),
    ({"concepts": ["A"], "split": {"train": float("nan")}}, "split"),
    ({"concepts": ["A"], "filters": {"minDepth": 10, "maxDepth": 5}}, "filters"),
    ({"concepts": ["A"], "filters": {"startTimestamp": "yesterday"}}, "filters"),
    ({"concepts": ["A"], "filters": {"minLatitude": 91}}, "filters"),
    ({"concepts": ["A"], "taxa_provider": "../etc"}, "taxa_provider"),
    ({"concepts": ["A"], "seed": -1}, "seed"),
    ({"concepts": ["A"], "max_boxes": 0}, "max_boxes"),
    ({"concepts": ["A"], "formats": ["coco"]}, "formats"),
    ({"concepts": ["x" * 257]}, "concepts"),
])
def test_what_is_wrong_is_named(body, field):
    with pytest.raises(ValidationError) as error:
        read_request(body, OPTIONS, 10_000)
    assert field in error.value.messages


def test_the_split_is_a_pure_function_of_the_image_and_the_seed_and_follows_the_fractions():
    uuids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(4000)]
    fractions = {"train": 0.7, "validation": 0.2, "test": 0.1}
    splits = [split_of(uuid, fractions, seed=3) for uuid in uuids]
    assert splits == [split_of(uuid, fractions, seed=3) for uuid in uuids]
    assert splits != [split_of(uuid, fractions, seed=4) for uuid in uuids]
    for name, fraction in fractions.items():
        assert abs(splits.count(name) / len(uuids) - fraction) < 0.03
    assert {split_of(uuid, {"train": 1.0}, 0) for uuid in uuids} == {"train"}


def test_unknown_concepts_are_refused_with_close_names_and_the_exact_spelling_first():
    known = ["Atolla", "Atolla wyvillei", "Bathochordaeus mcnutti"]
    check_concepts(["Atolla"], known)
    with pytest.raises(UnknownConceptError) as error:
        check_concepts(["atolla", "Bathochordeus mcnutti", "zzz"], known)
    assert error.value.status == 422 and error.value.details["unknown"] == ["atolla", "Bathochordeus mcnutti", "zzz"]
    assert error.value.details["suggestions"]["atolla"][0] == "Atolla"
    assert error.value.details["suggestions"]["Bathochordeus mcnutti"] == ["Bathochordaeus mcnutti"]
    assert error.value.details["suggestions"]["zzz"] == []
