"""Purges: what the service made or remembers of an image, a box or a concept, removed on every host.

- An image: every crop of it (any size, format, padding; IIIF tiles too) from the crop store, and on
  each host its record, its boxes' records, its pixels and nginx's copies of its crops. Withdrawn
  (FathomNet no longer has it): each host also remembers that, and its URLs answer 410.
- A box, or every box of a concept: the records each host remembers of them, so they are asked for
  again; the records of the images that list them are asked for again at their next use. Their crops
  are crops of their images' regions and stay (purge the image for those).

A purge is first added to the crop store's purge list, then made in the store, on this host and
(CLUSTER_HOSTS) on every other, each asked with the cluster's key. A host that cannot be reached, or
cannot apply it now, applies it from the list when it starts and at its pruner's next pass. Purges are idempotent:
made again, they remove nothing more. Each answers what it removed, per host.
"""

import logging
import time
import uuid as uuidlib
from dataclasses import asdict, dataclass, field

from . import metrics
from .crops import canonical_uuid
from .errors import CropperError
from .storage import PURGE_ID, Removed

log = logging.getLogger(__name__)

KINDS = ("image", "box", "concept")
MAX_CONCEPT = 256  # as FathomNet's box answers are read (upstream/fathomnet.py)


def _new_id():
    """Ids sort as the purges were made: nanoseconds, then random (two hosts purging at once)."""
    return f"{time.time_ns():020d}-{uuidlib.uuid4().hex}"


@dataclass(frozen=True)
class Purge:
    """What to purge: an image's uuid, a box's uuid, or a concept's name."""

    kind: str
    target: str
    withdrawn: bool = False  # an image FathomNet no longer has: its URLs answer 410 from then on
    id: str = field(default_factory=_new_id)

    @classmethod
    def of(cls, data):
        """A Purge from what another host sent or the purge list holds; ValueError if it is not one."""
        if not isinstance(data, dict) or data.get("kind") not in KINDS:
            raise ValueError("a purge names its kind: image, box or concept")
        kind, target, withdrawn = data["kind"], data.get("target"), data.get("withdrawn", False)
        if kind == "concept":
            if not isinstance(target, str) or not 0 < len(target) <= MAX_CONCEPT:
                raise ValueError(f"a concept is a name of 1 to {MAX_CONCEPT} characters")
        else:
            target = canonical_uuid(target)  # ValueError if not a uuid
        if not isinstance(withdrawn, bool) or (withdrawn and kind != "image"):
            raise ValueError("only an image is withdrawn")
        if not isinstance(data.get("id"), str) or not PURGE_ID.fullmatch(data["id"]):
            raise ValueError("a purge's id is lower-case letters, digits and dashes")
        return cls(kind, target, withdrawn, data["id"])

    def to_dict(self):
        return asdict(self)

    def matches(self, box):
        """Whether a box purge (or a concept purge) names this box."""
        return box.uuid == self.target if self.kind == "box" else box.concept == self.target


class Purges:
    """Purges made from this host (the operator's, FathomNet's withdrawals) and applied here (any host's)."""

    def __init__(self, sources, crop_store, nginx_cache, cluster, host):
        self.sources = sources  # an ImageSources: this host's records and pixels
        self.crop_store = crop_store  # a storage.CropStore: the crops, and the purge list
        self.nginx_cache = nginx_cache  # a storage.nginx_cache.NginxCache (CACHE_BACKEND=s3), or None
        self.cluster = cluster  # the other hosts to tell
        self.host = host  # this host's name in answers: CLUSTER_SELF, else the machine's

    def image(self, uuid, withdrawn=False):
        return self.run(Purge("image", canonical_uuid(uuid), withdrawn))

    def box(self, box_uuid):
        return self.run(Purge("box", canonical_uuid(box_uuid)))

    def concept(self, name):
        return self.run(Purge.of({"kind": "concept", "target": name, "id": _new_id()}))

    def withdrawn(self, uuid):
        """FathomNet no longer has an image this host had (ImageSources found it so): purge it everywhere."""
        self.image(uuid, withdrawn=True)

    def run(self, purge):
        """Make a purge everywhere and answer what it removed: in the store, and on each host."""
        self.crop_store.record_purge(purge.to_dict())  # first: a host that misses the rest finds it there
        store = self.crop_store.remove_image(purge.target) if purge.kind == "image" else Removed()
        hosts = [self._applied_here(purge), *self.cluster.purge_elsewhere(purge.to_dict())]
        if purge.kind == "image":  # crops that cuts under way when their host purged stored since the first pass
            store += self.crop_store.remove_image(purge.target)
        metrics.purged_from_store(purge.kind, store.bytes)
        reached = [host for host in hosts if "error" not in host]
        report = {"purge": purge.to_dict(), "files": store.files + sum(host["files"] for host in reached),
                  "bytes": store.bytes + sum(host["bytes"] for host in reached),
                  "store": {"name": self.crop_store.name, **store.to_dict()}, "hosts": hosts}
        log.info("purged %s %s%s: %d files, %d bytes (the %s %d files; %s)", purge.kind, purge.target,
                 " (withdrawn)" if purge.withdrawn else "", report["files"], report["bytes"], self.crop_store.name,
                 store.files, ", ".join(f"{host['host']} {host.get('files', 'not reached: applies it when it starts')}"
                                        for host in hosts))
        return report

    def _applied_here(self, purge):
        """apply(purge), or why not: then this host's pruner applies it at its next pass (it is in the list)."""
        try:
            return self.apply(purge)
        except CropperError as error:  # busy (an image fetched for longer than LOCK_TIMEOUT), a disk that refuses
            log.warning("could not apply purge %s here now (%s): it is applied later", purge.id, error.message)
            return {"host": self.host, "error": error.message, "pending": True}

    def apply(self, purge):
        """Apply a purge to what this host keeps, and note it applied: what was removed here."""
        if purge.kind == "image":
            removed = self.sources.forget_image(purge.target, withdrawn=purge.withdrawn)
            answer = {"host": self.host}
            if self.nginx_cache is not None:
                cached = self.nginx_cache.remove_image(purge.target)
                answer["nginx_cache"] = cached.to_dict() if cached else "not reachable here: nginx asks the store " \
                                                                        "again within STORE_CACHE_VALID"
                removed += cached or Removed()
        else:
            removed, asked_again = self.sources.forget_boxes(purge.matches)
            answer = {"host": self.host, "image_records_asked_again": asked_again}
        self.sources.store.note_purge_applied(purge.id)
        metrics.purge_applied(purge.kind, removed.bytes)
        log.info("applied purge %s of %s %s: %d files, %d bytes", purge.id, purge.kind, purge.target,
                 removed.files, removed.bytes)
        return {**answer, **removed.to_dict()}

    def catch_up(self):
        """Apply the purges this host missed (it was down, or not reached), oldest first; return them."""
        missed = []
        for data in self.crop_store.purges(known=frozenset(self.sources.store.purges_applied())):
            try:
                missed.append(Purge.of(data))
            except ValueError:
                log.warning("ignoring an unreadable entry of the purge list: %.200r", data)
        for purge in missed:
            self.apply(purge)
        return missed
