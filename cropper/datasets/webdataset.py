"""A finished data set as WebDataset shards: tar files per split, for training runs that stream.

    train-000000.tar, train-000001.tar, ..., validation-000000.tar, test-000000.tar

Each sample is three members named by its key (the box's uuid): `<key>.<format>` (the crop),
`<key>.json` (its provenance record, as manifest.csv's row) and `<key>.cls` (its label's index in
labels.txt, as text), which is what the `webdataset` package reads as one sample. A shard holds at
most DATASET_SHARD_BYTES (a single image's samples larger than that get a shard of their own), and
an image's samples are never split across shards: they come one after another, so a shard holds
whole images, as the split does.
"""

import io
import json
import tarfile

BLOCK = 512  # a tar member is a header block, then its data padded to whole blocks
TAR_END = 2 * BLOCK + tarfile.RECORDSIZE  # the archive's closing blocks, and its padding to a whole record


def shard_name(split, number):
    return f"{split}-{number:06d}.tar"


def write_shards(new_file, rows, labels, crop_bytes, extension, shard_bytes):
    """Write the rows (split, then image, order) as shards; return one file entry per shard.

    new_file(name): a storage.NewFile context to write a shard into; crop_bytes(row): the crop's bytes.
    """
    index = {label: number for number, label in enumerate(labels)}
    shards = []
    for split in dict.fromkeys(row["split"] for row in rows):
        images = _by_image([row for row in rows if row["split"] == split])
        for group in _packed(images, shard_bytes, lambda row: _sample(row, crop_bytes(row), extension, index)):
            name = shard_name(split, sum(1 for shard in shards if shard["split"] == split))
            with new_file(name) as new:
                with tarfile.open(fileobj=new.file, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                    for members in group:
                        for member_name, data in members:
                            _add(tar, member_name, data)
            shards.append({"name": name, "format": "webdataset", "split": split, "samples": len(group),
                           "size": new.size, "sha256": new.sha256})
    return shards


def _by_image(rows):
    images = {}
    for row in rows:
        images.setdefault(row["image_uuid"], []).append(row)
    return list(images.values())


def _sample(row, crop, extension, index):
    """A sample's members: (name, bytes) of the crop, its record and its class."""
    key = row["box_uuid"]
    return [(f"{key}.{extension}", crop), (f"{key}.json", json.dumps(row, separators=(",", ":")).encode()),
            (f"{key}.cls", str(index[row["label"]]).encode())]


def _packed(images, shard_bytes, sample):
    """Groups of samples (lists of members), whole images each, each group's tar at most shard_bytes unless one
    image's samples alone are more."""
    group, size = [], TAR_END
    for image_rows in images:
        samples = [sample(row) for row in image_rows]
        image_size = sum(BLOCK + -(-len(data) // BLOCK) * BLOCK for members in samples for _, data in members)
        if group and size + image_size > shard_bytes:
            yield group
            group, size = [], TAR_END
        group += samples
        size += image_size
    if group:
        yield group


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1577836800, 0o644  # one fixed time: the same sample, the same bytes
    tar.addfile(info, io.BytesIO(data))
