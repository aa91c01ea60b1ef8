"""Data-set jobs over HTTP (blueprint "datasets"): start one, follow it, cancel or remove it.

The files of a finished data set are served by nginx from the data-set store; the route here
serves them when Gunicorn runs alone.
"""

import re
from datetime import datetime, timezone

from flask import Blueprint, current_app, request, send_file
from marshmallow import ValidationError

from ..datasets.request import read_request
from ..errors import DatasetNotFoundError, InvalidRequestError
from .crops import base_url, schema, settings

bp = Blueprint("datasets", __name__)

MEDIA_TYPES = {"zip": "application/zip", "tar": "application/x-tar", "csv": "text/csv", "txt": "text/plain",
               "md": "text/markdown"}


def datasets():
    return current_app.extensions["cropper.datasets"]


@bp.post("/datasets")
@bp.post("/datasets/")
def create_dataset():
    """Start a data-set job (202), or answer the identical one already queued, running or done (200)."""
    try:
        asked = read_request(request.json_body(), schema("options"), settings().dataset_max_boxes)
    except ValidationError as error:
        raise InvalidRequestError.from_validation_error(error, "The data-set request is not valid.") from None
    job, created = datasets().submit(asked)
    answer = job_answer(job)
    if not created:
        return answer, 200
    return {"id": job.id, "url": answer["url"], "status": job.status}, 202, {"Location": answer["url"]}


@bp.get("/datasets/<job_id>")
def get_dataset(job_id):
    """A job: its status and progress, the request as understood, and once done its files."""
    return job_answer(datasets().get(job_id))


@bp.delete("/datasets/<job_id>")
def delete_dataset(job_id):
    """Cancel a queued or running job (its partial files go; crops made stay cached), or remove a finished one."""
    return job_answer(datasets().cancel(job_id))


@bp.get("/datasets/<job_id>/files/<name>")
def dataset_file(job_id, name):
    """A finished data set's file (nginx serves these itself; this is for Gunicorn alone)."""
    job = datasets().get(job_id)
    known = next((file for file in job.files if file["name"] == name), None)
    stored = datasets().store.open_file(job_id, name) if known else None
    if stored is None:
        raise DatasetNotFoundError("This data set has no such file.")
    file, size = stored
    response = send_file(file, mimetype=MEDIA_TYPES.get(name.rpartition(".")[2], "application/octet-stream"),
                         as_attachment=True, download_name=name, conditional=False, max_age=3600,
                         etag=known["sha256"])
    response.content_length = size
    return response.make_conditional(request.environ, accept_ranges=True, complete_length=size)


def job_answer(job):
    """What a client hears of a job."""
    base = base_url()
    answer = {
        "id": job.id, "url": f"{base}/datasets/{job.id}", "status": job.status, "progress": job.progress,
        "request": job.request, "created": _when(job.created), "started": _when(job.started),
        "finished": _when(job.finished),
    }
    if job.error:
        answer["error"] = job.error
    if job.status == "done":
        answer["files"] = [{"name": file["name"], "format": file["format"], "url": f"{base}{file['path']}",
                            "size": file["size"], "sha256": file["sha256"],
                            **{key: file[key] for key in ("split", "samples") if key in file}} for file in job.files]
        answer["counts"] = job.counts
    return answer


def _when(timestamp):
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


CONCEPTS_LIMIT = 1000


@bp.get("/concepts")
def concept_names():
    """FathomNet's concept names (remembered an hour): all of them, or those starting with ?prefix= (any case),
    at most ?limit= (default and most CONCEPTS_LIMIT), in FathomNet's order."""
    prefix = request.args.get("prefix", "")
    if len(prefix) > 256:
        raise InvalidRequestError("The prefix is too long.", prefix=["At most 256 characters."])
    raw_limit = request.args.get("limit", str(CONCEPTS_LIMIT))
    if not re.fullmatch(r"[1-9][0-9]{0,2}|1000", raw_limit):  # 1 to CONCEPTS_LIMIT, one spelling each
        raise InvalidRequestError("The limit is not valid.", limit=[f"Must be a whole number from 1 to "
                                                                    f"{CONCEPTS_LIMIT}."])
    names = datasets().sources.concepts()
    folded = prefix.casefold()
    matching = [name for name in names if name.casefold().startswith(folded)]
    response = current_app.json.response({"concepts": matching[:int(raw_limit)], "total": len(matching)})
    response.cache_control.max_age = 300
    return response
