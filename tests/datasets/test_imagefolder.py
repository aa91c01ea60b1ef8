"""The ImageFolder zip, loaded by Hugging Face's `datasets` whatever its provenance leaves empty."""

import csv
import io
import json
import os
import zipfile

import pytest
from PIL import Image

from cropper.datasets import imagefolder

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
datasets = pytest.importorskip("datasets")


def row(box, split, label, depth=None, timestamp=None, occluded=None):
    return {"box_uuid": box, "image_uuid": f"image-{box}", "concept": label, "label": label, "split": split,
            "region": [0, 0, 4, 4], "box": [0, 0, 4, 4], "crop": {"pad": None, "format": "png"},
            "image_url": "http://x/i.png", "image_sha256": None, "review_state": "VERIFIED", "occluded": occluded,
            "truncated": False, "depth": depth, "latitude": None, "longitude": None, "timestamp": timestamp,
            "imaging_type": "ROV"}


def png(colour):
    out = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(out, "PNG")
    return out.getvalue()


def test_a_column_empty_in_one_split_stays_in_the_manifest_and_the_rest_load(tmp_path):
    rows = [row("a", "train", "Atolla", depth=200, timestamp="2020-01-01T00:00:00.000Z", occluded=True),
            row("b", "train", "Atolla/x", depth=None, timestamp=None, occluded=False),
            row("c", "train", "=cmd|' /C calc'!A0", depth=300.5),
            row("d", "test", "Atolla", timestamp="2021-01-01T00:00:00.000Z", occluded=True)]
    rows[1], rows[0] = rows[0], rows[1]  # the first row of train has no depth: the loader must still see numbers
    path = tmp_path / "set.zip"
    labels = sorted({r["label"] for r in rows})
    kept = imagefolder.write_zip(path, rows, [], labels, "# card\n", lambda r: png((1, 2, 3)), "png")
    assert "depth" not in kept and "timestamp" in kept and "occluded" in kept  # no depth in any test image
    zipfile.ZipFile(path).extractall(tmp_path / "set")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "set"))
    assert loaded["train"].num_rows == 3 and loaded["test"].num_rows == 1
    assert sorted(loaded["train"]["label"]) == sorted(r["label"] for r in rows if r["split"] == "train")
    assert loaded["train"].features["occluded"].dtype == "bool"
    with open(tmp_path / "set" / "manifest.csv", newline="") as file:
        manifest = list(csv.DictReader(file))
    assert [m["depth"] for m in manifest] == ["", "200", "300.5", ""]
    assert manifest[2]["label"] == "'=cmd|' /C calc'!A0"  # a formula from outside is text in a spreadsheet
    folders = {name.split("/")[1] for name in zipfile.ZipFile(path).namelist() if name.count("/") == 2}
    assert "Atolla_x" in folders  # a label's "/" is no folder
    first = json.loads((tmp_path / "set" / "train" / "metadata.jsonl").read_text().splitlines()[0])
    assert first["occluded"] is not None
