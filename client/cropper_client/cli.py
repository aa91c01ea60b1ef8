"""The command line: cropper-client (or python -m cropper_client) crop | crop-list | crop-concept | boxes | url."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .client import DEFAULT_URL, OPTIONS, CropFailure, Cropper, CropperError, CropResult
from .progress import progress
from .urls import FITS, FORMATS, crop_url

CSV_COLUMNS = ("url", "label", "box_uuid", "image_uuid", "x1", "y1", "x2", "y2", "file")  # the service's, + file
REQUEST_FIELDS = ("uuid", "x1", "y1", "x2", "y2", "box_uuid", *sorted(OPTIONS))
EXTENSIONS = {".webp": "webp", ".jpeg": "jpeg", ".jpg": "jpeg", ".png": "png"}
SPLITS = ("train", "validation", "test")  # the data-set request's split names, in --split's order

USAGE = """\
cropper-client [--url URL] [--timeout S] [--retries N] COMMAND ...

  crop UUID X1 Y1 X2 Y2 [options] [--out FILE]
  crop --box BOX_UUID [options] [--out FILE]
  crop-list FILE.csv|FILE.json [options] [--out DIR]
  crop-concept NAME --limit N [--offset M] [--page-size P] --out DIR [options]
  boxes UUID
  url UUID X1 Y1 X2 Y2 [options] [--image-size WxH]
  dataset create --concept NAME [--concept ...] [--descendants] [--label concept|asked]
                 [--split 80/10/10] [--seed N] [--format imagefolder|webdataset] [--filter NAME=VALUE]
                 [options] --out DIR
  dataset status ID
  dataset cancel ID

options: [--pad PX|N%%] [--square] [--width W] [--height H] [--fit contain|cover|fill|letterbox]
         [--no-enlarge] [--background #rrggbb] [--quality 1-100] [--format webp|jpeg|png]
The service's URL: --url, else $CROPPER_URL, else http://127.0.0.1:8080."""

DATASET_USAGE = """\
cropper-client dataset create --concept NAME [--concept ...] [options] --out DIR
       cropper-client dataset status ID
       cropper-client dataset cancel ID"""


def parser() -> argparse.ArgumentParser:
    # Connection options are accepted before or after the command; SUPPRESS keeps a subcommand's
    # unset default from overwriting a value given before it.
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--url", default=argparse.SUPPRESS, help="the service (default: $CROPPER_URL or "
                                                                     f"{DEFAULT_URL})")
    connection.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="seconds per request (30)")
    connection.add_argument("--retries", type=int, default=argparse.SUPPRESS, help="retries on 429/503 (3)")

    options = crop_options(image_format=True)

    main = argparse.ArgumentParser(prog="cropper-client", usage=USAGE, parents=[connection],
                                   description="Crops of FathomNet images from a FathomNet Cropper service.")
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    crop = commands.add_parser("crop", parents=[connection, options], help="one crop; prints its answer as JSON",
                               usage="cropper-client crop (UUID X1 Y1 X2 Y2 | --box BOX_UUID) [options] [--out FILE]")
    crop.add_argument("target", nargs="*", metavar="UUID X1 Y1 X2 Y2")
    crop.add_argument("--box", metavar="BOX_UUID", help="a FathomNet bounding box uuid instead of a uuid and box")
    crop.add_argument("--out", type=Path, help="save the crop here (a file, or a folder); its extension sets "
                                               "the format when --format is not given")
    crop.set_defaults(run=run_crop)

    crop_list = commands.add_parser("crop-list", parents=[connection, options],
                                    help="many crops from a CSV (uuid,x1,y1,x2,y2 or box_uuid) or JSON list")
    crop_list.add_argument("file", type=Path, metavar="FILE.csv|FILE.json")
    crop_list.add_argument("--out", type=Path, metavar="DIR", help="save the crops in this folder")
    crop_list.set_defaults(run=run_crop_list)

    concept = commands.add_parser("crop-concept", parents=[connection, options],
                                  help="every crop of a concept, up to --limit boxes, into a folder with crops.csv "
                                  "(a progress bar with the [progress] extra)")
    concept.add_argument("concept", metavar="NAME")
    concept.add_argument("--limit", type=int, required=True, metavar="N", help="at most this many boxes")
    concept.add_argument("--offset", type=int, default=0, metavar="M", help="skip the concept's first M boxes")
    concept.add_argument("--page-size", type=int, default=100, metavar="P", help="boxes per request (100)")
    concept.add_argument("--out", type=Path, required=True, metavar="DIR")
    concept.set_defaults(run=run_crop_concept)

    boxes = commands.add_parser("boxes", parents=[connection], help="an image's FathomNet boxes, as JSON")
    boxes.add_argument("uuid", metavar="UUID")
    boxes.set_defaults(run=run_boxes)

    url = commands.add_parser("url", parents=[connection, options],
                              help="a crop's URL computed locally, without a request")
    url.add_argument("uuid", metavar="UUID")
    url.add_argument("box", nargs=4, type=int, metavar=("X1", "Y1", "X2", "Y2"))
    url.add_argument("--image-size", metavar="WxH", help="the image's size; needed by --pad and --square")
    url.set_defaults(run=run_url)

    add_dataset_commands(commands, connection)
    return main


def crop_options(image_format: bool) -> argparse.ArgumentParser:
    """The crop options, as a parent parser; without --format for `dataset create`, whose --format says both."""
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("crop options (left out: the service's defaults)")
    group.add_argument("--pad", help='context on each side: pixels, or a percentage of the box ("10%%")')
    group.add_argument("--square", action="store_true", default=None, help="widen the region to a square")
    group.add_argument("--width", type=int, help="output width")
    group.add_argument("--height", type=int, help="output height")
    group.add_argument("--fit", choices=FITS, help="with width and height: contain (the default) keeps the aspect "
                       "inside them (224x224 of a 305x300 box is 224x220); cover and fill give exactly that size")
    group.add_argument("--no-enlarge", dest="enlarge", action="store_false", default=None,
                       help="never scale up")
    group.add_argument("--background", help="letterbox colour, #rrggbb (default black)")
    group.add_argument("--quality", type=int, help="1-100, for webp and jpeg")
    if image_format:
        group.add_argument("--format", help="webp (default), jpeg (jpg) or png")
    return options


def add_dataset_commands(commands: Any, connection: argparse.ArgumentParser) -> None:
    dataset = commands.add_parser("dataset", help="training sets: dataset create | status ID | cancel ID",
                                  usage=DATASET_USAGE)
    actions = dataset.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[connection, crop_options(image_format=False)],
                                usage=DATASET_USAGE.splitlines()[0],
                                help="start a data-set job, wait for it with a progress bar, fetch and unpack it")
    create.add_argument("--concept", action="append", required=True, metavar="NAME",
                        help="a FathomNet concept (again for more)")
    create.add_argument("--descendants", action="store_true", default=None,
                        help="also every concept below them in FathomNet's taxonomy")
    create.add_argument("--taxa-provider", metavar="NAME", help="whose taxonomy: fathomnet (default) or mbari")
    create.add_argument("--label", metavar="concept|asked",
                        help="each crop's label: its own concept (default) or the concept asked it came under")
    create.add_argument("--split", type=split_of, metavar="TRAIN/VALIDATION/TEST",
                        help="percentages, such as 80/10/10 (the default); a 0 leaves that split out")
    create.add_argument("--seed", type=int, help="the split's seed (0)")
    create.add_argument("--max-boxes", type=int, metavar="N", help="at most N boxes")
    create.add_argument("--contributors", dest="include_contributors", action="store_true", default=None,
                        help="add the images' contributors' e-mail addresses to the provenance")
    create.add_argument("--filter", dest="filters", action="append", type=filter_of, metavar="NAME=VALUE",
                        help="a filter of docs/datasets.md, such as minDepth=1000, exclude_occluded=true or "
                             "startTimestamp=2020-01-01 (again for more)")
    create.add_argument("--format", dest="formats", action="append", metavar="FORMAT",
                        help="what to write: imagefolder (default) or webdataset; or the crops' image format: "
                             "webp (default), jpeg, png (again for both)")
    create.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="fetch the files here, checked, and unpack imagefolder.zip")
    create.set_defaults(run=run_dataset_create)
    for name, run, about in (("status", run_dataset_status, "a job's status and progress, as JSON"),
                             ("cancel", run_dataset_cancel, "cancel a job, or remove a finished one's files")):
        action = actions.add_parser(name, parents=[connection], help=about)
        action.add_argument("id", metavar="ID")
        action.set_defaults(run=run)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except CropperError as error:
        return fail(one_line(error))
    except (ValueError, OSError) as error:  # a local check (crop_url, a file): its message says it all
        return fail(str(error))
    except KeyboardInterrupt:
        return 130


def fail(message: str, status: int = 1) -> int:
    print(f"cropper-client: {message}", file=sys.stderr)
    return status


def one_line(error: CropperError | CropFailure) -> str:
    text = f"{error.code}: {' '.join(error.message.split())}"
    return f"{text} {json.dumps(error.details, separators=(',', ':'))}" if error.details else text


def client_of(args: argparse.Namespace) -> Cropper:
    url = getattr(args, "url", None) or os.environ.get("CROPPER_URL") or DEFAULT_URL
    return Cropper(url, timeout=getattr(args, "timeout", 30), retries=getattr(args, "retries", 3))


def options_of(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in OPTIONS if getattr(args, name, None) is not None}


def print_json(data: Any) -> None:
    print(json.dumps(data), flush=True)


# -- commands


def run_crop(args: argparse.Namespace) -> int:
    options = options_of(args)
    if args.out is not None and "format" not in options and args.out.suffix.lower() in EXTENSIONS:
        options["format"] = EXTENSIONS[args.out.suffix.lower()]
    with client_of(args) as client:
        if args.box:
            if args.target:
                return fail("crop takes --box BOX_UUID, or UUID X1 Y1 X2 Y2: not both")
            result = client.crop_box(args.box, **options)
        else:
            if len(args.target) != 5:
                return fail("crop needs UUID X1 Y1 X2 Y2 (or --box BOX_UUID)")
            uuid, *box = args.target
            try:
                x1, y1, x2, y2 = map(int, box)
            except ValueError:
                return fail(f"X1 Y1 X2 Y2 must be whole numbers, not {' '.join(box)}")
            result = client.crop(uuid, x1, y1, x2, y2, **options)
        answer = asdict(result)
        if args.out is not None:
            path = args.out / result.filename if args.out.is_dir() else args.out
            answer["file"] = str(client.download(result, path))
    print_json(answer)
    return 0


def read_items(path: Path) -> list[dict[str, Any]]:
    """A CSV's rows (columns uuid,x1,y1,x2,y2 or box_uuid, and any option), or a JSON list of request objects."""
    if path.suffix.lower() == ".json":
        items = json.loads(path.read_text())
        if isinstance(items, dict) and isinstance(items.get("crops"), list):  # the batch's object form
            items = [{**{k: v for k, v in items.items() if k in OPTIONS}, **item} for item in items["crops"]]
        if not isinstance(items, list):
            raise ValueError(f"{path}: expected a JSON list of crop requests")
        return items
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        ignored = [name for name in reader.fieldnames or () if name not in REQUEST_FIELDS]
        if ignored:  # a lab's CSV often has notes or labels; say so, since a misspelt option lands here too
            print(f"cropper-client: ignoring column(s) {', '.join(ignored)}", file=sys.stderr)
        # Values go as the CSV has them: the service reads "100" as 100, and checks every item itself.
        return [{name: value for name, value in row.items() if name in REQUEST_FIELDS and value not in (None, "")}
                for row in reader]


def run_crop_list(args: argparse.Namespace) -> int:
    items = read_items(args.file)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    with client_of(args) as client:
        for number, result in enumerate(client.crop_many(items, **options_of(args)), 1):
            answer = asdict(result)
            if isinstance(result, CropFailure):
                failed += 1
                print(f"cropper-client: item {number}: {one_line(result)}", file=sys.stderr)
            elif args.out is not None:
                answer["file"] = str(client.download(result, args.out / f"{result.uuid}_{result.filename}"))
            print_json(answer)
    return 1 if failed else 0


def csv_row(values: Sequence[Any]) -> str:
    """A line of crops.csv, written as the service writes its CSV (cropper/spreadsheets.py; tests/test_client_csv.py
    holds the two together): text a spreadsheet would run as a formula (=, +, -, @, tab or CR first, from a
    concept FathomNet names so) gets a leading ', numbers stay numbers, and a cell with a comma, a quote, a CR
    or an LF is quoted (csv.writer leaves a lone CR bare, and a spreadsheet would start a row there)."""
    cells = []
    for value in values:
        text = "" if value is None else str(value)
        if not isinstance(value, (int, float)) and text.startswith(("=", "+", "-", "@", "\t", "\r")):
            text = "'" + text
        cells.append('"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text)
    return ",".join(cells) + "\n"


def run_crop_concept(args: argparse.Namespace) -> int:
    if args.limit < 1 or args.page_size < 1:
        return fail("--limit and --page-size must be 1 or more")
    args.out.mkdir(parents=True, exist_ok=True)
    failed = saved = 0
    with client_of(args) as client, (args.out / "crops.csv").open("w", newline="") as handle, \
            progress(sys.stderr.isatty(), "crop") as bar:
        handle.write(csv_row(CSV_COLUMNS))
        pages = client.iter_concept(args.concept, page_size=min(args.page_size, 100), offset=args.offset,
                                    limit=args.limit, **options_of(args))
        for page in pages:
            bar.total(min(args.limit, max(page.total - args.offset, 0)))
            for crop in page.crops:
                if isinstance(crop, CropResult):
                    name = f"{crop.box_uuid}.{crop.format}"  # one file per annotation
                    client.download(crop, args.out / name)
                    handle.write(csv_row([crop.url, crop.concept, crop.box_uuid, crop.uuid, *crop.region, name]))
                    saved += 1
                else:
                    failed += 1
                    print(f"cropper-client: box {crop.box_uuid}: {one_line(crop)}", file=sys.stderr)
                bar.update()
    print(f"{saved} crops of {args.concept!r} in {args.out}" + (f", {failed} failed" if failed else ""),
          file=sys.stderr)
    return 1 if failed else 0


def run_boxes(args: argparse.Namespace) -> int:
    with client_of(args) as client:
        print_json(asdict(client.image_boxes(args.uuid)))
    return 0


def run_url(args: argparse.Namespace) -> int:
    image_size = None
    if args.image_size:
        try:
            image_size = tuple(int(side) for side in args.image_size.lower().split("x", 1))
        except ValueError:
            return fail(f"--image-size must be WxH, such as 1920x1080, not {args.image_size}")
    base = getattr(args, "url", None) or os.environ.get("CROPPER_URL") or DEFAULT_URL
    defaults = {"fit": "contain", "enlarge": True, "format": "webp", "square": False}
    print(crop_url(base, args.uuid, *args.box, image_size=image_size, **{**defaults, **options_of(args)}))
    return 0


# -- data sets


def split_of(text: str) -> dict[str, float]:
    """--split 80/10/10: percentages of train, validation and test, as the request's fractions (0: left out)."""
    try:
        percents = [float(part) for part in text.split("/")]
    except ValueError:
        percents = []
    if len(percents) != len(SPLITS) or not all(0 <= percent <= 100 for percent in percents):
        raise argparse.ArgumentTypeError(f"must be three percentages TRAIN/VALIDATION/TEST, such as 80/10/10, "
                                         f"not {text!r}")
    return {name: percent / 100 for name, percent in zip(SPLITS, percents, strict=True) if percent}


def filter_of(text: str) -> tuple[str, Any]:
    """--filter NAME=VALUE: the value as JSON (1000, true), else as text (a timestamp such as 2020-01-01)."""
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"must be NAME=VALUE, such as minDepth=1000, not {text!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def run_dataset_create(args: argparse.Namespace) -> int:
    # --format names what to write (imagefolder, webdataset) and the crops' image format (webp, jpeg, png):
    # the two sets of names are apart, so one option serves as the crop command's --format and the request's.
    formats = args.formats or []
    image_formats = [name for name in formats if name.lower() in FORMATS]
    if len(image_formats) > 1:
        return fail(f"--format: one image format for the crops, not {' and '.join(image_formats)}")
    crop = {**options_of(args), **({"format": image_formats[0]} if image_formats else {})}
    outputs = [name for name in formats if name.lower() not in FORMATS] or None
    tty = sys.stderr.isatty()
    with client_of(args) as client:
        job = client.dataset(args.concept, descendants=args.descendants, taxa_provider=args.taxa_provider,
                             label=args.label, filters=dict(args.filters) if args.filters else None, split=args.split,
                             seed=args.seed, max_boxes=args.max_boxes, include_contributors=args.include_contributors,
                             formats=outputs, **crop)
        try:  # from here on, a Ctrl-C leaves a job behind: say how to follow it
            print(f"cropper-client: data set {job.id} {job.status}", file=sys.stderr, flush=True)
            job.wait(progress_bar=tty)
        except KeyboardInterrupt:
            url = ["--url", client.base_url] if getattr(args, "url", None) else []
            follow = " ".join(["cropper-client", *url, "dataset", "status", job.id])
            return fail(f"stopped waiting; data set {job.id} goes on: follow it with {follow}", status=130)
        if job.status == "failed":
            return fail(f"data set {job.id} failed: {job.error['code']}: {job.error['message']}" if job.error
                        else f"data set {job.id} failed")
        if job.status != "done":
            return fail(f"data set {job.id} was {job.status}")
        try:
            folder = job.download(args.out, progress_bar=tty)
        except KeyboardInterrupt:
            return fail(f"stopped fetching data set {job.id}: the same command again resumes it", status=130)
    crops = sum(count for labels in job.counts.values() for count in labels.values())
    failed = job.progress.get("crops_failed", 0)
    print(f"cropper-client: {crops} crops in {folder}" + (f"; {failed} of its boxes failed (failures.csv)"
                                                           if failed else ""), file=sys.stderr)
    print_json({**job.answer, "folder": str(folder)})
    return 0


def run_dataset_status(args: argparse.Namespace) -> int:
    with client_of(args) as client:
        print_json(client.dataset_job(args.id).answer)
    return 0


def run_dataset_cancel(args: argparse.Namespace) -> int:
    with client_of(args) as client:
        job = client.dataset_job(args.id).cancel()
    print(f"cropper-client: data set {job.id} " + ("cancelled" if job.status == "cancelled" else "removed"),
          file=sys.stderr)
    print_json(job.answer)
    return 0
