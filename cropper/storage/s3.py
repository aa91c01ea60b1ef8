"""The crop store in an S3-compatible bucket (AWS S3, SeaweedFS, ...): a `storage.CropStore` every host shares.

A crop is the object <prefix><Crop.store_path> (crops/... or iiif/..., the paths the file store
uses and nginx is asked for), written once with its content type and a one-year immutable
Cache-Control, and readable without credentials through a bucket policy on those keys (so nginx,
a CDN or the client can fetch `public_url(crop)` straight from the bucket). Nothing else in the
bucket is touched: a key that is not a crop's is never listed or removed, but the purge list
(<prefix>purges/<id>, JSON: the purges every host applies, kept private by the bucket's policy). Finished
data sets' files are objects under datasets/ (`S3DatasetStore`), readable alike.

A store that cannot be reached or answers with an error is a StoreUnavailableError (503): the
client hears that in words, the log gets botocore's own text. Once a call has found it unreachable
(a timeout, or no connection), the host's breaker (breaker.py) opens: every later call, a retry of
that one included, fails at once until a probe reaches the store again.
"""

import io
import json
import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from .. import crops
from ..errors import BusyError, StoreUnavailableError
from . import PURGE_ID, Listing, NewFile, OpenedCrop, Removed, check_uuid, checked_purge_id, read_purge
from .breaker import StoreBreaker
from .disk import scratch, storing
from .files import size_and_sha256
from .locks import crop_lock, eviction_lock

log = logging.getLogger(__name__)

CACHE_CONTROL = "public, max-age=31536000, immutable"  # a crop's key names its bytes, which never change
TIMEOUTS = (ConnectTimeoutError, ReadTimeoutError)
# What says the store cannot be reached at all (a connection closed or reset is tried again, as usual).
UNREACHABLE = (*TIMEOUTS, EndpointConnectionError)



def _delete_under(client, bucket, prefix):
    """Delete every object whose key starts with prefix, a listing page (at most 1,000 keys, as many as one
    DeleteObjects takes) at a time: what was removed (a key the store refused to delete is kept, and logged)."""
    removed = Removed()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        sizes = {item["Key"]: item["Size"] for item in page.get("Contents", [])}
        if not sizes:
            continue
        answer = client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in sizes],
                                                              "Quiet": True})
        for error in answer.get("Errors", []):
            log.warning("store %s did not remove %s: %s", bucket, error.get("Key"), error.get("Code"))
            sizes.pop(error.get("Key"), None)
        removed += Removed(len(sizes), sum(sizes.values()))
    return removed

class S3CropStore:
    """Crops as objects <prefix><store path> in one bucket, shared by every host."""

    name = "crop store"
    shared = True  # by every host: only the designated pruner evicts from it

    def __init__(self, bucket, endpoint_url, locks, prefix="", connect_timeout=3.05, read_timeout=10.0,
                 region="us-east-1", access_key=None, secret_key=None, ready_timeout=2.0, breaker_file=None):
        self.bucket = bucket
        self.prefix = prefix
        # Work on one image stays on one host, so this host's lock files are enough to make each
        # crop once and to keep the pruner from removing a crop being made.
        self.locks = locks
        # Without keys, boto3 finds its own (AWS_* variables, an instance role, ...).
        session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key)

        def client(connect, read, attempts):
            return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=Config(
                s3={"addressing_style": "path"}, signature_version="s3v4", connect_timeout=connect,
                read_timeout=read, retries={"mode": "standard", "total_max_attempts": attempts}))

        # One retry: a request waits on this while the client waits on us.
        self.client = client(connect_timeout, read_timeout, 2)
        # /readyz's and the breaker's: one try within ready_timeout, made at its first use (not at every
        # worker's start)
        self._probe_client = lambda: client(ready_timeout, ready_timeout, 1)
        self._probe, self._probe_lock = None, threading.Lock()
        self.endpoint_url = self.client.meta.endpoint_url
        # breaker_file: shared by every process of this host (in its cache folder); None: no breaker
        self.breaker = StoreBreaker(breaker_file, self._unreachable_now, locks) if breaker_file else None
        if self.breaker:
            # Checked before each try (the retry of a call that timed out included), opened by any try
            # that found the store unreachable: a request waits one timeout at most, and the next none.
            self.client.meta.events.register("before-send.s3", self._refuse_while_unreachable)
            self.client.meta.events.register("needs-retry.s3", self._open_if_unreachable)

    def key(self, crop):
        return f"{self.prefix}{crop.store_path}"

    def public_url(self, crop):
        """The crop's URL for anyone, without credentials (path-style, as the bucket policy allows)."""
        return f"{self.endpoint_url.rstrip('/')}/{quote(self.bucket)}/{quote(self.key(crop))}"

    def find(self, crop):
        """True if the crop is stored."""
        with self._reaching("find", crop):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self.key(crop))
            except ClientError as error:
                if _status(error) == 404:
                    return False
                raise
        return True

    def open(self, crop):
        """The stored crop, read whole, or None if it is not there.

        Read whole (a crop is at most a few MB) so the response has a length and ranges, and a
        store that fails mid-body is a 503 now rather than a cut response later.
        """
        with self._reaching("read", crop):
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=self.key(crop))
            except ClientError as error:
                if _status(error) == 404:
                    return None
                raise
            with answer["Body"] as body:
                data = body.read()
        return OpenedCrop(io.BytesIO(data), len(data), answer["LastModified"].timestamp(),
                                answer.get("ETag", "").strip('"') or None)

    def put(self, crop, data):
        """Store the crop once: if another host stored it first, theirs stays (it has the same pixels)."""
        with self._reaching("store", crop):
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=self.key(crop), Body=data, ContentType=crop.media_type,
                    CacheControl=CACHE_CONTROL, IfNoneMatch="*",
                )
            except ClientError as error:
                if _status(error) != 412:
                    raise

    def lock(self, crop, timeout=None):
        """Held while the crop is made (or removed) on this host: work on one image stays on one host."""
        return crop_lock(self.locks, crop, timeout)

    def count(self, nbytes):
        """Nothing is counted here: a count on one host's disk would miss every other host's writes, so
        writers do not keep the bucket within its budget (make_room never evicts for a write); one
        designated pruner does, by listing it."""
        return 0

    def evicting(self):
        return eviction_lock(self.locks, self.name)

    def remove_temp_file(self, temp):
        pass  # a PUT is whole or absent: the bucket has no temp files

    def listing(self):
        """Every stored crop (and one an earlier version named otherwise), measured; last_used is when it was
        stored (objects have no access time)."""
        listing = Listing()
        with self._reaching("list"):
            for family in crops.FAMILIES:
                pages = self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=f"{self.prefix}{family}/")
                for page in pages:
                    for item in page.get("Contents", []):
                        listing.add_crop(item["Key"][len(self.prefix):], [item["Key"]], item["Size"],
                                         item["LastModified"].timestamp())
        return listing

    def remove(self, entry):
        """Remove a crop unless it is being made right now; True if it is gone."""
        try:
            with self.lock(entry.key, timeout=0), self._reaching("remove", entry.key):
                self.client.delete_object(Bucket=self.bucket, Key=entry.paths[0])
        except BusyError:
            return False
        return True

    def remove_image(self, uuid):
        """Remove every crop of an image (both families), whoever made them; what was removed."""
        check_uuid(uuid)
        removed = Removed()
        with self._reaching("remove the crops of an image from"):
            for family in crops.FAMILIES:
                removed += _delete_under(self.client, self.bucket, f"{self.prefix}{family}/{uuid[:2]}/{uuid}/")
        return removed

    def record_purge(self, purge):
        """Add a purge to the list in the bucket, where every host (one down now, when it starts) finds it."""
        key = f"{self.prefix}purges/{checked_purge_id(purge)}"
        with self._reaching("record a purge in"):
            self.client.put_object(Bucket=self.bucket, Key=key,
                                   Body=json.dumps(purge).encode(), ContentType="application/json")

    def purges(self, known=frozenset()):
        """Every purge in the bucket's list but those known, oldest first (their ids sort by time)."""
        found = []
        with self._reaching("read the purge list in"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}purges/")
            keys = sorted(item["Key"] for page in pages for item in page.get("Contents", []))
            for key in keys:
                name = key[len(self.prefix) + len("purges/"):]
                if name in known or not PURGE_ID.fullmatch(name):
                    continue
                try:
                    answer = self.client.get_object(Bucket=self.bucket, Key=key)
                except ClientError as error:
                    if _status(error) == 404:  # removed meanwhile
                        continue
                    raise
                with answer["Body"] as body:
                    purge = read_purge(body)
                if purge:
                    found.append(purge)
        return found

    def readiness_problem(self):
        """None if the bucket answers within ready_timeout (one try), else what is wrong (for /readyz).

        /readyz answers within READY_TIMEOUT: a store that hangs must not hold it for the crops'
        timeouts (a connect and two reads of READ_TIMEOUT); one known to be unreachable, at once.
        """
        outage = self.breaker.outage() if self.breaker else None
        if outage:
            return self._unavailable(outage).message
        error = self._ask_bucket()
        if error is None:
            return None
        log.warning("crop store %s at %s failed to answer /readyz: %r", self.bucket, self.endpoint_url, error)
        if self.breaker and isinstance(error, UNREACHABLE):
            self.breaker.trip(_reason(error))
        return self._failed(error).message

    def unreachable(self, why):
        """This host's nginx could not reach the store either: fail at once from now on, as if we had not."""
        if self.breaker:
            self.breaker.trip(why)

    def _ask_bucket(self):
        """Ask the bucket once, within ready_timeout: None if it answered, else botocore's error."""
        with self._probe_lock:  # a boto3 session is not safe to make clients from in several threads at once
            if self._probe is None:
                self._probe = self._probe_client()
        try:
            self._probe.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as error:
            return error
        return None

    def _unreachable_now(self):
        """The breaker's probe: None if the store answers at all (an error is an answer), else why not."""
        error = self._ask_bucket()
        return _reason(error) if isinstance(error, UNREACHABLE) else None

    def _refuse_while_unreachable(self, **_):
        outage = self.breaker.outage()
        if outage:
            raise self._unavailable(outage)

    def _open_if_unreachable(self, caught_exception=None, **_):
        if isinstance(caught_exception, UNREACHABLE):
            self.breaker.trip(_reason(caught_exception))

    def _failed(self, error):
        """A failure of botocore's as the client hears it: no credentials (ours to fix: waiting won't), else
        the store out of reach."""
        if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
            return StoreUnavailableError(
                f"The crop store (S3 bucket {self.bucket} at {self.endpoint_url}) cannot be used: this host has no "
                "credentials for it. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or another source boto3 "
                "reads).", store=self.name)
        return self._cannot_reach(_reason(error))

    def _cannot_reach(self, reason):
        return StoreUnavailableError(
            f"The crop store (S3 bucket {self.bucket} at {self.endpoint_url}) cannot be reached: {reason}. "
            "Try again shortly.", store=self.name)

    def _unavailable(self, outage):
        """The error of a call refused at once: the store was found unreachable and has not answered since."""
        return self._cannot_reach(f"{outage.why} ({time.time() - outage.since:.0f} s ago; this host tries it again "
                                  f"every {self.breaker.every} s)")

    def ensure_bucket(self):
        """Create the bucket if missing, and let anyone read (only) the crops in it. Safe to repeat.

        The bucket's policy becomes this one, replacing any other: give the store a bucket of its own.
        An operator's command: it tries the store itself, whatever the breaker last found.
        """
        if self.breaker and self.breaker.recorded():
            problem = self.breaker.probe_now()
            if problem:
                raise self._cannot_reach(problem)
        with self._reaching("create the bucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as error:
                if _status(error) != 404:
                    raise
                try:
                    self.client.create_bucket(Bucket=self.bucket)
                except ClientError as error:  # made meanwhile by another host
                    if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                        raise
            # Object ACLs are not honoured everywhere (SeaweedFS ignores them); a bucket policy is.
            self.client.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
                    "Resource": [f"arn:aws:s3:::{self.bucket}/{self.prefix}{family}/*"
                                 for family in (*crops.FAMILIES, DATASETS)],
                }],
            }))

    @contextmanager
    def _reaching(self, doing, crop=None):
        """Turn botocore's failures (the store down, slow, refusing or failing) into StoreUnavailableError."""
        try:
            yield
        except (BotoCoreError, ClientError) as error:
            log.warning("crop store %s at %s failed to %s %s: %r", self.bucket, self.endpoint_url, doing,
                        crop.store_path if crop else "", error)
            raise self._failed(error) from None


def _reason(error):
    """What a failure of botocore's says of the store, in words."""
    if isinstance(error, ClientError):
        return f"it answered HTTP {_status(error)}"
    if isinstance(error, TIMEOUTS):
        return "it did not answer in time"
    return "it could not be connected to or broke off"


def _status(error):
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


DATASETS = "datasets"  # the key prefix of finished data sets' files, beside crops/ and iiif/
DATASET_CACHE_CONTROL = "private, max-age=3600"  # a data set may be removed: its files are not immutable
MEDIA_TYPES = {"zip": "application/zip", "tar": "application/x-tar", "csv": "text/csv", "txt": "text/plain",
               "md": "text/markdown"}


class S3DatasetStore:
    """Finished data sets' files as objects <prefix>datasets/<job id>/<name> in the crop store's bucket, which
    every host shares: any host's worker writes them, every host's nginx serves them (storage.DatasetStore)."""

    shared = True

    def __init__(self, crops, scratch_folder):
        self.client, self.bucket, self.prefix = crops.client, crops.bucket, crops.prefix
        self.endpoint_url = crops.endpoint_url
        self.scratch_folder = Path(scratch_folder).resolve() / "datasets" / "scratch"

    def _key(self, job_id, name=""):
        return f"{self.prefix}{DATASETS}/{job_id}/{name}"

    @contextmanager
    def new_file(self, job_id, name):
        """A NewFile (a local temp file) uploaded whole, with its type and name, when the block ends: an object
        appears whole or not at all."""
        with storing("data-set store"), scratch(self.scratch_folder) as file:
            new = NewFile(file)
            yield new
            file.flush()
            new.size, new.sha256 = size_and_sha256(file)
            file.seek(0)
            with self._reaching("store a data set's file"):
                self.client.upload_fileobj(file, self.bucket, self._key(job_id, name), ExtraArgs={
                    "ContentType": MEDIA_TYPES.get(name.rpartition(".")[2], "application/octet-stream"),
                    "ContentDisposition": f'attachment; filename="{name}"', "CacheControl": DATASET_CACHE_CONTROL})

    def remove(self, job_id):
        with self._reaching("remove a data set"):
            return _delete_under(self.client, self.bucket, self._key(job_id)).bytes

    @staticmethod
    def url_path(job_id, name):
        return f"/{DATASETS}/{job_id}/files/{name}"

    def open_file(self, job_id, name):
        with self._reaching("read a data set's file"):
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=self._key(job_id, name))
            except ClientError as error:
                if _status(error) in (403, 404):
                    return None
                raise
        return answer["Body"], answer["ContentLength"]

    @contextmanager
    def _reaching(self, doing):
        try:
            yield
        except (BotoCoreError, ClientError) as error:
            log.warning("data-set store %s at %s failed to %s: %r", self.bucket, self.endpoint_url, doing, error)
            raise StoreUnavailableError(
                f"The data-set store (S3 bucket {self.bucket} at {self.endpoint_url}) cannot be reached. "
                "Try again shortly.", store="data-set store") from None
