"""Several hosts, one owner per image: work on an image goes to the host that owns it.

Every host and the front nginx place the hosts on the same ring, nginx's own `hash ... consistent`
(ketama) ring over CLUSTER_HOSTS, and an image belongs to the first host at or after the crc32 of its
UUID. The front routes requests whose path names the image (`/crops/<2hex>/<uuid>/...`,
`/iiif/3/<uuid>/...`) straight to its owner; a POST names its images in its body, which nginx cannot
read, so the host that receives it hands each image's crops to their owner (`POST /_cluster/make`,
with the cluster's key) and answers when they are made. The owner makes them as it makes its own:
one download and one decode per image across the cluster, and the crop in the shared store.

A host that cannot be reached is passed over for FAILED_HOST_SECONDS, as nginx passes over a failed
server: its images go to the next host on the ring, which every host and the front agree on.

The hosts must share one CLUSTER_KEY: a host refuses another's key as if the route were not there
(a 404), so a host whose key differs cannot have its peers make any crop. Each host checks its key
with every other at start (`cropper cluster check`, which Gunicorn runs) and in /readyz, and both
sides of a refusal say so in their logs.
"""

import logging
import re
import threading
import time
import zlib
from bisect import bisect_left
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from . import crops
from .errors import ClusterUnavailableError, CropperError

log = logging.getLogger(__name__)

POINTS_PER_HOST = 160  # nginx's, for a server of weight 1
REFUSED_LOG_SECONDS = 60  # a refused key is logged at most this often per asker (peers ask at every /readyz)
FAILED_HOST_SECONDS = 10
CONNECT_SECONDS = 2  # as the front's proxy_connect_timeout: a host that does not take a connection is down
RETRY_PAUSE_SECONDS = 0.05
KEY_HEADER = "X-Cropper-Cluster-Key"
FROM_HEADER = "X-Cropper-Cluster-From"  # the asker's CLUSTER_SELF, for the refusing host's log (never trusted)
# What a host's nginx answers when its app does not (errors.NGINX_ERRORS): that host is down too.
HOST_DOWN = (502, "service_unavailable")
# What an owner answers for all the crops asked at once that is about making them, not about the cluster:
# passed on to the client as it said it.
OWNER_STATES = {(503, "busy"), (507, "insufficient_storage")}


class Ring:
    """nginx's consistent hash ring (ngx_http_upstream_hash_module), point for point."""

    def __init__(self, hosts):
        points = {}
        for host in hosts:
            name, colon, port = host.rpartition(":")
            if not colon or not re.fullmatch("[0-9]*", port):  # nginx's reading: a port is digits after the last ":"
                name, port = host, ""
            base = name.encode() + b"\0" + port.encode()
            previous = 0
            for _ in range(POINTS_PER_HOST):
                point = zlib.crc32(base + previous.to_bytes(4, "little"))
                points.setdefault(point, host)  # nginx keeps the first of equal points
                previous = point
        self.hashes = sorted(points)
        self.hosts = [points[h] for h in self.hashes]

    def owners(self, key):
        """The hosts in the order nginx tries them for key: its owner first, then the next on the ring."""
        start = bisect_left(self.hashes, zlib.crc32(key.encode()))
        seen = []
        for i in range(len(self.hosts)):
            host = self.hosts[(start + i) % len(self.hosts)]
            if host not in seen:
                seen.append(host)
                yield host


class RemoteError(CropperError):
    """An error another host answered for a crop it was asked to make: passed on as it said it."""

    def __init__(self, status, body):
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        details = error.get("details")
        super().__init__(error.get("message", "Another host of the cluster failed to make this crop."))
        self.details = details if isinstance(details, dict) else {}
        self.status, self.code = status, error.get("code", "internal_error")
        self.retry_after = body.get("retry_after") if isinstance(body, dict) else None


@dataclass(frozen=True)
class Made:
    """A crop another host made (or found made)."""

    cached: bool


@dataclass(frozen=True)
class KeyCheck:
    """What the other hosts made of this host's CLUSTER_KEY: took it, refused it, or could not be asked."""

    took: tuple = ()
    refused: tuple = ()
    unreachable: tuple = ()  # (host, why): down or starting, which says nothing of keys

    @property
    def problem(self):
        """Why this host cannot work with the others (every host asked refused its key), or None."""
        if not self.refused or self.took:
            return None
        return (f"This host's CLUSTER_KEY is not the other hosts': {_listed(self.refused)} refused it and none took "
                f"it. Give every host of CLUSTER_HOSTS the same CLUSTER_KEY and restart this one.")

    @property
    def warning(self):
        """What is wrong elsewhere, for a host whose key the others take (or that none could check), or None."""
        said = []
        if self.refused and self.took:
            said.append(f"{_listed(self.refused)} refused this host's CLUSTER_KEY, which {_listed(self.took)} took: "
                        f"{'that host has' if len(self.refused) == 1 else 'those hosts have'} another CLUSTER_KEY; "
                        "give every host the same one")
        said += [f"{host} could not be asked ({why})" for host, why in self.unreachable]
        return "; ".join(said) + "." if said else None


def _listed(hosts):
    return ", ".join(hosts[:-1]) + " and " + hosts[-1] if len(hosts) > 1 else hosts[0]


class Cluster:
    """This host's view of the cluster: who owns an image, and asking the owner to make crops."""

    def __init__(self, hosts, me, key, timeout, most_per_request=1000):
        self.ring, self.me, self.key, self.timeout = Ring(hosts), me, key, timeout
        self.others = tuple(host for host in hosts if host != me)
        self.most_per_request = most_per_request  # the owner's BATCH_MAX_CROPS: more in one request is a 400
        self.session = requests.Session()
        # One kept-alive connection per thread that may be asking a host at once (Gunicorn's threads).
        self.session.mount("http://", HTTPAdapter(pool_connections=max(1, len(hosts)), pool_maxsize=64))
        self._failed = {}  # host -> when it may be tried again
        self._lock = threading.Lock()

    def owner(self, uuid):
        """The host that makes this image's crops: the first on its ring not failed lately."""
        now = time.monotonic()
        with self._lock:
            for host in self.ring.owners(uuid):
                if host == self.me or self._failed.get(host, 0) <= now:
                    return host
        return self.me

    def is_mine(self, uuid):
        return self.owner(uuid) == self.me

    def make_elsewhere(self, crops_wanted):
        """Have each crop made by its image's owner; a Made or a CropperError per crop, in order.

        None in place of those this host owns (also when an owner cannot be reached: the next on the
        ring, maybe this one, takes its images).
        """
        results = [None] * len(crops_wanted)
        pending = list(range(len(crops_wanted)))
        while pending:
            by_owner = {}
            for index in pending:
                owner = self.owner(crops_wanted[index].uuid)
                if owner != self.me:
                    by_owner.setdefault(owner, []).append(index)
            pending = []
            # Requests of at most most_per_request crops; each owner's one after another, the owners side by side.
            asks = [(owner, indexes[start:start + self.most_per_request]) for owner, indexes in by_owner.items()
                    for start in range(0, len(indexes), self.most_per_request)]
            with ThreadPoolExecutor(max(1, len(by_owner))) as pool:
                asked = {owner: pool.submit(self._ask_in_turn, owner, [[crops_wanted[i] for i in chunk]
                                                                        for o, chunk in asks if o == owner])
                         for owner in by_owner}
            for owner, indexes in by_owner.items():
                answers = asked[owner].result()
                if answers is None:
                    pending += indexes  # the owner is down: ask again along the ring
                else:
                    for index, answer in zip(indexes, answers):
                        results[index] = answer
        return results

    def _ask_in_turn(self, host, chunks):
        """The answers to every chunk asked of host, in order; None as soon as host is down."""
        answers = []
        for chunk in chunks:
            answer = self._ask(host, chunk)
            if answer is None:
                return None
            answers += answer
        return answers

    def purge_elsewhere(self, purge):
        """Have every other host apply a purge (a Purge's dict): each one's answer, or why it was not reached (then
        it applies the purge from the store's list when it starts)."""
        return self._each_other(lambda host: self._purge_at(host, purge))

    def _each_other(self, ask):
        """ask(host) of every other host, side by side: the answers in their order."""
        with ThreadPoolExecutor(max(1, len(self.others))) as pool:
            return list(pool.map(ask, self.others))

    def _purge_at(self, host, purge):
        answer, body, why, _ = self._post(host, "purge", purge)
        if answer is None:
            return {"host": host, "error": f"not reached ({why})", "pending": True}
        if answer.status_code != 200 or not isinstance(body, dict) or \
                not all(type(body.get(count)) is int for count in ("files", "bytes")):
            log.warning("cluster host %s answered HTTP %s when asked to apply purge %s", host, answer.status_code,
                        purge.get("id"))
            return {"host": host, "error": f"answered HTTP {answer.status_code}", "pending": True}
        return {**body, "host": host}

    def _ask(self, host, crops_wanted):
        """One Made or CropperError per crop from host; None if host is down (then it is passed over a while)."""
        for attempt in range(2):
            # A failure that looks like a host down is tried once more, a moment later: a kept-alive
            # connection closed just as this was sent (here, or between its nginx and its app, where
            # every idle one is closed at once) looks the same, and making crops twice is harmless.
            # A host that is down fails again as fast.
            if attempt:
                time.sleep(RETRY_PAUSE_SECONDS)  # for the closes under way to be seen, by us and by its nginx
            answer, body, why, again = self._post(host, "make", self._paths(crops_wanted))
            if why is None or not again:
                break
        if why is not None:
            return self._down(host, why)
        code = body.get("error", {}).get("code") if isinstance(body, dict) and isinstance(body.get("error"), dict) \
            else None
        if (answer.status_code, code) in OWNER_STATES:
            retry_after = answer.headers.get("Retry-After", "")
            error = RemoteError(answer.status_code, {**body, "retry_after": int(retry_after) if retry_after.isdigit()
                                                      else None})
            return [error] * len(crops_wanted)
        if answer.status_code == 404:  # what a host answers a key that is not its own (or no route there at all)
            log.warning("cluster host %s refused this host's CLUSTER_KEY when asked to make %d crops (a 404, as "
                        "to anyone without its key): give every host the same CLUSTER_KEY", host, len(crops_wanted))
            error = ClusterUnavailableError(
                f"The hosts of this cluster do not share one CLUSTER_KEY: {host}, which makes this image's crops, "
                f"refused the key of {self.me}, which took this request. The operator must give every host the same "
                "CLUSTER_KEY.", host=host)
            return [error] * len(crops_wanted)
        if answer.status_code != 200 or not isinstance(body, list) or len(body) != len(crops_wanted):
            # Not an answer about the crops: the cluster is misconfigured or failing, which the client must
            # not take for something about its crop.
            log.warning("cluster host %s answered HTTP %s (%s) when asked to make %d crops", host,
                        answer.status_code, code or "no JSON error", len(crops_wanted))
            error = ClusterUnavailableError(
                f"Cluster host {host}, which makes this image's crops, answered HTTP {answer.status_code}"
                f"{f' ({code})' if code else ''} when asked to.", host=host)
            return [error] * len(crops_wanted)
        return [Made(bool(item.get("cached"))) if "error" not in item else RemoteError(item.get("status", 500), item)
                for item in body]

    def check_key(self, timeout):
        """Ask every other host, side by side, whether it takes this host's CLUSTER_KEY: a KeyCheck.

        The question is an empty /_cluster/make, which a host answers [] with the key and 404 without.
        """
        answers = self._each_other(lambda host: self._post(host, "make", self._paths([]), timeout))
        took, refused, unreachable = [], [], []
        for host, (answer, body, why, _) in zip(self.others, answers):
            if why is None and answer.status_code == 200 and body == []:
                took.append(host)
            elif why is None and answer.status_code == 404:
                refused.append(host)
            else:
                unreachable.append((host, why or f"it answered HTTP {answer.status_code}"))
        return KeyCheck(tuple(took), tuple(refused), tuple(unreachable))

    @staticmethod
    def _paths(crops_wanted):
        return {"paths": [crop.store_path for crop in crops_wanted]}

    def _post(self, host, route, body, timeout=None):
        """POST body to host's /_cluster/<route>: (answer, its JSON or None, why host looks down or None, whether
        to try again at once)."""
        timeout = timeout or self.timeout
        try:
            answer = self.session.post(
                f"http://{host}/_cluster/{route}", json=body, headers={KEY_HEADER: self.key, FROM_HEADER: self.me},
                timeout=(min(CONNECT_SECONDS, timeout), timeout))
        except requests.RequestException as error:  # a timeout is not tried again: it would wait as long again
            return None, None, type(error).__name__, not isinstance(error, requests.Timeout)
        try:
            body = answer.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if (answer.status_code, error.get("code") if isinstance(error, dict) else None) == HOST_DOWN:
            return answer, body, "its nginx answered 502: its app is not answering", True  # dead, or restarting
        return answer, body, None, False

    def _down(self, host, why):
        log.warning("cluster host %s cannot be reached (%s): its images go to the next host for %d s",
                    host, why, FAILED_HOST_SECONDS)
        with self._lock:
            self._failed[host] = time.monotonic() + FAILED_HOST_SECONDS
        return None


class SingleHost:
    """No cluster: this host owns every image."""

    def is_mine(self, uuid):
        return True

    def check_key(self, timeout):
        return None  # no other host to share a key with

    def make_elsewhere(self, crops_wanted):
        return [None] * len(crops_wanted)

    def purge_elsewhere(self, purge):
        return []


_refusals_logged = {}  # (address, claimed) -> when its refused key was last logged, in this process
_refusals_lock = threading.Lock()


def log_refused_key(asker, claimed):
    """Another host asked with a key that is not this host's: say so, at most every REFUSED_LOG_SECONDS per asker.

    claimed: the CLUSTER_SELF it says it is (its word only, for the operator reading the log; hosts on one
    machine all ask from one address).
    """
    claimed = claimed[:100] if claimed[:100].isprintable() else ""
    now = time.monotonic()
    with _refusals_lock:
        if now - _refusals_logged.get((asker, claimed), -REFUSED_LOG_SECONDS) < REFUSED_LOG_SECONDS:
            return
        if len(_refusals_logged) > 1000:  # many askers: a scan, not a cluster; keep the memory bounded
            _refusals_logged.clear()
        _refusals_logged[asker, claimed] = now
    log.warning("a host at %s%s asked this one to make crops with a CLUSTER_KEY that is not this host's: refused "
                "(a 404); give every host the same CLUSTER_KEY", asker, f" (as {claimed!r})" if claimed else "")


def check_key_at_start(cluster, wait, timeout):
    """Check this host's CLUSTER_KEY with the others and log what they made of it; the KeyCheck.

    Hosts start together: one that cannot be asked yet is asked again every second for up to wait s.
    """
    deadline = time.monotonic() + wait
    found = cluster.check_key(timeout)
    while found.unreachable and time.monotonic() < deadline:
        time.sleep(1)
        found = cluster.check_key(timeout)
    if found.problem:
        log.error("cluster: %s", found.problem)
    if found.warning:
        log.warning("cluster: %s", found.warning)
    if found.took:
        log.info("cluster: CLUSTER_KEY taken by %s", _listed(found.took))
    return found


def cluster_of(settings):
    if not settings.cluster_hosts:
        return SingleHost()
    return Cluster(settings.cluster_hosts, settings.cluster_self, settings.cluster_key, settings.cluster_timeout,
                   settings.batch_max_crops)


def crops_of_paths(paths):
    """The Crops named by store paths another host sent; None for a path no request would make."""
    return [crops.parse_store_path(path) if isinstance(path, str) else None for path in paths]
