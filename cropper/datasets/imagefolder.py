"""A finished data set as one zip in Hugging Face's `imagefolder` layout.

    README.md                       the data-set card: the request, the date, the source, counts, how to load it
    labels.txt                      the labels, one a line (a label's index is its line, from 0)
    manifest.csv                    one row per crop: every provenance column
    failures.csv                    every box that could not be cropped, with the service's error
    train/metadata.jsonl            file_name and the provenance columns, per split
    train/<label>/<box uuid>.webp   the crops, a folder per label
    validation/..., test/...

`datasets.load_dataset("imagefolder", data_dir=...)` reads it with its splits and a label column.
Its metadata files must agree on each column's type in every split (it compares them), and it
infers types from the values: numbers are written as floats always, and a column that is empty in
some split (no depth in any of its images, say) is left out of every metadata.jsonl (it stays in
manifest.csv), so no split reads as a column of nulls where another reads numbers.
"""

import json
import re
import zipfile

from ..spreadsheets import csv_text

# The provenance of a crop, in manifest.csv's order; metadata.jsonl has file_name first, then these.
COLUMNS = ("box_uuid", "image_uuid", "concept", "label", "split", "region", "box", "crop", "image_url",
           "image_sha256", "review_state", "occluded", "truncated", "depth", "latitude", "longitude",
           "timestamp", "imaging_type")
CONTRIBUTORS = "contributors"  # only when the request asks for them
NULLABLE = ("image_sha256", "occluded", "truncated", "depth", "latitude", "longitude", "timestamp",
            "imaging_type", CONTRIBUTORS)
FAILURE_COLUMNS = ("box_uuid", "image_uuid", "concept", "label", "split", "code", "message")


def folder_name(label, taken):
    """A label's folder: the label, with what a path cannot hold replaced; distinct from the names taken."""
    name = re.sub(r"[\x00-\x1f/\\:*?\"<>|]", "_", label).strip().lstrip(".") or "_"
    name = name[:100]
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}-{number}", number + 1
    return candidate


def write_zip(out, rows, failures, labels, card, crop_bytes, extension):
    """Write the data set's zip into out (a path, or a seekable binary file).

    rows: provenance dicts (COLUMNS, and CONTRIBUTORS when asked), in split then label order;
    failures: dicts of FAILURE_COLUMNS; crop_bytes(row): the crop's bytes.
    """
    folders = {}
    for label in labels:
        folders[label] = folder_name(label, set(folders.values()))
    columns = columns_of(rows)
    splits = list(dict.fromkeys(row["split"] for row in rows))
    kept = [column for column in columns
            if column not in NULLABLE or all(any(row[column] is not None for row in rows if row["split"] == split)
                                             for split in splits)]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        # Images are compressed already: stored, not deflated (as fast to write as to read).
        archive.writestr("README.md", card)
        archive.writestr("labels.txt", "".join(f"{label}\n" for label in labels))
        archive.writestr("manifest.csv", manifest_csv(rows))
        archive.writestr("failures.csv", failures_csv(failures))
        for split in splits:
            in_split = [row for row in rows if row["split"] == split]
            lines = []
            for row in _witnesses_first(in_split, kept):
                file_name = f"{folders[row['label']]}/{row['box_uuid']}.{extension}"
                lines.append(json.dumps({"file_name": file_name, **{c: _typed(c, row[c]) for c in kept}}))
            archive.writestr(f"{split}/metadata.jsonl", "".join(line + "\n" for line in lines))
            for row in in_split:
                name = f"{split}/{folders[row['label']]}/{row['box_uuid']}.{extension}"
                archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), crop_bytes(row))
    return kept


def columns_of(rows):
    """The provenance columns of rows: COLUMNS, and CONTRIBUTORS when the request asked for them."""
    return [*COLUMNS, *([CONTRIBUTORS] if rows and CONTRIBUTORS in rows[0] else [])]


def manifest_csv(rows):
    columns = columns_of(rows)
    return csv_text(columns, ([_cell(row[column]) for column in columns] for row in rows))


def failures_csv(failures):
    return csv_text(FAILURE_COLUMNS, ([failure.get(column) for column in FAILURE_COLUMNS] for failure in failures))


def _witnesses_first(rows, columns):
    """The rows with, first, one that has a value in each nullable column: the loader infers a column's
    type from the first rows it reads, and must see a number (or a text) there, not only nulls."""
    first = []
    for column in columns:
        if column in NULLABLE:
            witness = next((row for row in rows if row[column] is not None), None)
            if witness is not None and witness not in first:
                first.append(witness)
    return first + [row for row in rows if row not in first]


def _typed(column, value):
    """A value as metadata.jsonl holds it: the float columns' numbers always floats, the crop options as one
    JSON text (their nulls would read as columns of no type)."""
    if column in ("depth", "latitude", "longitude") and value is not None:
        return float(value)
    if column == "crop":
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return value


def _cell(value):
    """A value as a CSV cell: lists and objects as JSON, booleans as true/false."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
